"""Rendering of results: the model card (Markdown), metric tables, and the PNG report of
``postergenre evaluate --report`` (drawn with Pillow only, its built-in scalable font)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from postergenre.ensemble.metrics import METRIC_TITLES, pr_curve


def library_versions() -> dict[str, str]:
    """Versions of the libraries a trained model depends on (recorded in cards)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("postergenre", "numpy", "scikit-learn", "xgboost", "torch", "safetensors"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def metrics_table_md(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """name -> overall metrics, as a Markdown table."""
    keys = list(METRIC_TITLES)
    out = ["| predictor | " + " | ".join(METRIC_TITLES[k] for k in keys) + " |"]
    out.append("|---" * (len(keys) + 1) + "|")
    for name, m in rows.items():
        out.append(f"| {name} | " + " | ".join(_fmt(m.get(k)) for k in keys) + " |")
    return out


def model_card_markdown(card: Mapping[str, Any]) -> str:
    """The model card for people; ``card`` is what ``card.json`` holds."""
    lines = [f"# {card.get('name', 'postergenre model')}", ""]
    lines.append(card.get("summary", "Stacked multi-label genre classifier for movie posters."))
    lines.append("")
    data = card.get("data", {})
    lines += ["## Data", ""]
    for key in ("store", "labels", "split_column", "train_split", "val_split", "min_count"):
        if key in data:
            lines.append(f"- {key.replace('_', ' ')}: `{data[key]}`")
    if "n_train" in data:
        lines.append(
            f"- training posters: {data['n_train']}; validation posters: {data.get('n_val', 0)}"
        )
    if card.get("refit"):
        lines.append(f"- refit: {card['refit']['note']}")
    for line in data.get("join_summary", []):
        lines.append(f"- {line}")
    lines.append("")
    genres = card.get("genres", [])
    counts = data.get("train_genre_counts", {})
    thresholds = card.get("thresholds", {})
    lines += [f"## Genres ({len(genres)})", ""]
    lines.append(
        f"Thresholds tuned on: {thresholds.get('source', 'n/a')} (per genre, maximising F1)."
    )
    lines.append("")
    lines += ["| genre | training posters | threshold |", "|---|---|---|"]
    values = thresholds.get("values", {})
    for g in genres:
        lines.append(f"| {g} | {counts.get(g, 'n/a')} | {_fmt(values.get(g))} |")
    lines.append("")
    metrics = card.get("metrics", {})
    if metrics:
        lines += ["## Validation metrics", ""]
        if metrics.get("note"):
            lines += [metrics["note"], ""]
        rows = {k: v for k, v in metrics.get("overall", {}).items()}
        lines += metrics_table_md(rows)
        lines.append("")
        per = metrics.get("per_genre", [])
        if per:
            lines += [
                "| genre | support | AP | F1 | precision | recall |",
                "|---|---|---|---|---|---|",
            ]
            for p in per:
                lines.append(
                    f"| {p['genre']} | {p['support']} | {_fmt(p['ap'])} | {_fmt(p['f1'])} | "
                    f"{_fmt(p['precision'])} | {_fmt(p['recall'])} |"
                )
            lines.append("")
    weights = card.get("label_weights")
    if weights:
        lines += ["## Label weights by collection", ""]
        lines += [f"- {line.strip()}" for line in weights.get("summary", [])]
        lines.append("")
        if weights.get("markdown"):
            lines += [weights["markdown"], ""]
    projection = card.get("collection_projection")
    if projection:
        acc = projection["accuracy"]
        lines += [
            "## Collection directions",
            "",
            f"{projection['directions']} directions of the {projection['embedding_columns']}-"
            "value embedding that told the collections apart among posters of the same genres "
            "were projected out before the bases read it (a logistic regression's accuracy "
            f"on balanced posters: {acc[0]:.2f} before the first, {acc[-1]:.2f} before the "
            "last; 0.50 = not at all).",
            "",
        ]
    sets = card.get("genre_sets")
    if sets:
        lines += [
            "## Genre combinations",
            "",
            f"Probabilities are conditioned on the {sets['sets']} combinations of the model's "
            f"genres that at least {sets['min_count']} films have (counted on "
            f"{sets['source'] or 'the table'}; at most {sets['max_genres']} genres each, "
            f"{sets['films_covered']} of {sets['n_films']} films): a poster's genres must form "
            "one of them. Offsets fitted "
            "on the training rows keep each genre's mean probability the stack's own.",
            "",
        ]
    model = card.get("model", {})
    if model:
        lines += ["## Model", ""]
        for key, value in model.items():
            if key == "params":
                continue
            lines.append(f"- {key.replace('_', ' ')}: {value}")
        if "params" in model:
            params = ", ".join(f"{k}={v}" for k, v in sorted(model["params"].items()))
            lines.append(f"- parameters: {params}")
        lines.append("")
    lines += ["## Reproducibility", ""]
    for key in ("training_seconds", "seeds", "created"):
        if key in card:
            lines.append(f"- {key.replace('_', ' ')}: {card[key]}")
    libs = card.get("libraries", {})
    if libs:
        lines.append("- libraries: " + ", ".join(f"{k} {v}" for k, v in libs.items()))
    extractors = card.get("extractors", [])
    if extractors:
        lines.append(
            "- extractors: "
            + ", ".join(
                f"{e['extractor']} v{e['version']} {e.get('config', {})}" for e in extractors
            )
        )
    lines.append("")
    limits = card.get("limitations")
    if limits:
        lines += ["## Limitations", ""] + [f"- {x}" for x in limits] + [""]
    return "\n".join(lines)


# -- PNG report --------------------------------------------------------------------------
MODEL_COLOUR = (38, 98, 196)
PRIOR_COLOUR = (150, 150, 150)
GRID_COLOUR = (225, 225, 225)
TEXT = (25, 25, 25)


def draw_report(
    path: str | Path,
    Y: np.ndarray,
    S: np.ndarray,
    genres: Sequence[str],
    prevalence: np.ndarray,
    title: str,
    summary: Sequence[str] = (),
) -> Path:
    """Per-genre AP bars (with the prior's AP) and a precision-recall curve per genre.

    ``Y`` (n, G) truth and ``S`` (n, G) scores on the evaluated rows; ``prevalence`` (G,)
    the training rate of each genre (the constant predictor's precision).
    """
    from PIL import Image, ImageDraw, ImageFont

    from postergenre.ensemble.metrics import average_precision

    Y = np.asarray(Y) > 0
    S = np.asarray(S, dtype=np.float64)
    G = len(genres)
    ap = np.array([average_precision(Y[:, g], S[:, g]) for g in range(G)])
    eval_prev = Y.mean(0) if len(Y) else np.zeros(G)
    font_t = ImageFont.load_default(size=26)
    font = ImageFont.load_default(size=17)
    font_s = ImageFont.load_default(size=14)

    margin, line_h = 24, 24
    header_h = margin + 34 + line_h * len(summary) + 16
    bar_row, bar_w, label_w = 26, 360, 130
    bars_h = 40 + bar_row * G + 40
    cols = 4
    cell_w, cell_h = 250, 215
    grid_rows = math.ceil(G / cols)
    grid_h = 30 + grid_rows * cell_h
    width = margin * 3 + label_w + bar_w + 70 + cols * cell_w
    height = header_h + max(bars_h, grid_h) + margin
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    d.text((margin, margin), title, fill=TEXT, font=font_t)
    y = margin + 38
    for line in summary:
        d.text((margin, y), line, fill=TEXT, font=font)
        y += line_h

    # Left: AP per genre, best first; a grey tick marks the prior (AP of a constant score
    # equals the genre's rate among the evaluated rows).
    x0, y0 = margin, header_h
    d.text((x0, y0), "average precision per genre", fill=TEXT, font=font)
    d.text((x0, y0 + 20), "blue: model   grey tick: constant prior", fill=PRIOR_COLOUR, font=font_s)
    order = sorted(range(G), key=lambda g: -(ap[g] if math.isfinite(ap[g]) else -1))
    bx = x0 + label_w
    top = y0 + 44
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = bx + t * bar_w
        d.line([(x, top - 4), (x, top + bar_row * G)], fill=GRID_COLOUR, width=1)
        d.text((x - 10, top + bar_row * G + 4), f"{t:.2f}", fill=TEXT, font=font_s)
    for i, g in enumerate(order):
        yy = top + i * bar_row
        d.text((x0, yy + 3), genres[g][:14], fill=TEXT, font=font_s)
        if math.isfinite(ap[g]):
            d.rectangle([bx, yy + 4, bx + ap[g] * bar_w, yy + bar_row - 4], fill=MODEL_COLOUR)
            d.text((bx + ap[g] * bar_w + 6, yy + 4), f"{ap[g]:.2f}", fill=TEXT, font=font_s)
            px = bx + eval_prev[g] * bar_w
            d.line([(px, yy + 1), (px, yy + bar_row - 1)], fill=PRIOR_COLOUR, width=3)
        else:
            d.text((bx + 4, yy + 4), "no positives", fill=PRIOR_COLOUR, font=font_s)

    # Right: precision-recall curve per genre.
    gx0 = bx + bar_w + 70
    d.text(
        (gx0, y0),
        "precision (y) vs recall (x) per genre; dashed: constant prior",
        fill=TEXT,
        font=font,
    )
    for i, g in enumerate(order):
        cx = gx0 + (i % cols) * cell_w
        cy = y0 + 30 + (i // cols) * cell_h
        _pr_cell(
            d,
            cx,
            cy,
            cell_w - 24,
            cell_h - 50,
            Y[:, g],
            S[:, g],
            genres[g],
            ap[g],
            eval_prev[g],
            font_s,
        )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, format="PNG", optimize=True)
    return out


def _pr_cell(
    d: Any,
    x: int,
    y: int,
    w: int,
    h: int,
    yt: np.ndarray,
    s: np.ndarray,
    name: str,
    ap: float,
    prev: float,
    font: Any,
) -> None:
    label = f"{name}  AP {ap:.2f}" if math.isfinite(ap) else f"{name}  (no positives)"
    d.text((x + 26, y), label, fill=TEXT, font=font)
    px0, py0 = x + 26, y + 22
    d.rectangle([px0, py0, px0 + w - 26, py0 + h], outline=(120, 120, 120))
    pw = w - 26
    for t in (0.25, 0.5, 0.75):
        d.line([(px0 + t * pw, py0 + 1), (px0 + t * pw, py0 + h - 1)], fill=GRID_COLOUR)
        d.line([(px0 + 1, py0 + h - t * h), (px0 + pw - 1, py0 + h - t * h)], fill=GRID_COLOUR)
    d.text((x, py0 - 6), "1", fill=TEXT, font=font)
    d.text((x, py0 + h - 12), "0", fill=TEXT, font=font)
    d.text((px0 + pw - 8, py0 + h + 2), "1", fill=TEXT, font=font)
    if not math.isfinite(ap):
        return
    # Dashed prior line: precision of a constant score at every recall.
    yy = py0 + h - prev * h
    for sx in range(0, int(pw), 10):
        d.line([(px0 + sx, yy), (px0 + min(sx + 5, pw), yy)], fill=PRIOR_COLOUR, width=2)
    precision, recall = pr_curve(yt, s)
    pts = [(px0, py0 + h - precision[0] * h)] if len(precision) else []
    pts += [(px0 + r * pw, py0 + h - p * h) for p, r in zip(precision, recall, strict=True)]
    if len(pts) > 1:
        d.line(pts, fill=MODEL_COLOUR, width=2)
