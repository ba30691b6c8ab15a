"""`postergenre evaluate`: metrics of a model on the labelled posters of a store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from postergenre.cli.common import StoreDir

HELP = """Evaluate a model bundle on a feature store and a labels CSV.

Prints micro/macro/weighted/samples F1, macro and per-genre average precision, Hamming
loss, top-1 hit rate and precision@3, with the constant predictors (prior; always the
two most common genres) beside them, and 95% bootstrap intervals of the model's overall
figures (posters resampled; --bootstrap 0 skips them). --compare OTHER scores another
model on the same posters and gives each difference with its paired bootstrap interval
(an interval that excludes 0: the two models differ on posters like these). --report DIR
writes report.png (AP per genre, precision-recall curves) and metrics.json.
"""


def register(app: typer.Typer) -> None:
    app.command("evaluate", help=HELP)(evaluate)


def evaluate(
    store: StoreDir,
    labels: Annotated[
        Path, typer.Option("--labels", exists=True, dir_okay=False, help="The labels CSV.")
    ],
    model: Annotated[
        Path | None,
        typer.Option(exists=True, file_okay=False, help="Model bundle (default: the shipped one)."),
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Evaluate only the rows of this split (e.g. val).")
    ] = None,
    split_column: Annotated[str, typer.Option(help="Split column of the labels CSV.")] = "split",
    group_column: Annotated[
        str,
        typer.Option(
            help="Column naming each poster's collection: metrics per collection and the "
            "shortcut audit (skipped when the CSV has no such column)."
        ),
    ] = "source",
    bootstrap: Annotated[
        int,
        typer.Option(
            min=0,
            help="Resamples of the posters for the 95% intervals of the model's figures (0: none).",
        ),
    ] = 1000,
    compare: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="Another model bundle: its figures on the same posters and the paired "
            "bootstrap interval of each difference (the evaluated model minus this one).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    report: Annotated[
        Path | None, typer.Option(file_okay=False, help="Write report.png and metrics.json here.")
    ] = None,
) -> None:
    from postergenre.cli.common import echo_json, stderr_console
    from postergenre.ensemble.training import evaluate_from_store

    console = stderr_console()

    def log(msg: str) -> None:
        console.print(msg, markup=False, highlight=False)

    if bootstrap == 1:
        raise typer.BadParameter(
            "needs at least 2 resamples (or 0 for none)", param_hint="--bootstrap"
        )
    result = evaluate_from_store(
        store,
        labels,
        model,
        split,
        split_column,
        log=log,
        group_column=group_column,
        bootstrap=bootstrap,
        compare=compare,
    )
    for note in result.notes:
        log(f"note: {note}")
    doc = _document(result)
    if report is not None:
        _write_report(report, result, doc)
        log(f"report written to {report}")
    if as_json:
        echo_json(doc)
        return
    _print_tables(result)


def _document(result: Any) -> dict[str, Any]:
    return {
        "model": str(result.model_path) if result.model_path else None,
        "split": result.split,
        "notes": result.notes,
        "model_metrics": result.metrics.to_dict(),
        "intervals": _clean(result.intervals) or None,
        "interval_spec": result.interval_spec or None,
        "comparison": _clean(result.comparison),
        "constants": {k: m.to_dict()["overall"] for k, m in result.constants.items()},
        "by_collection": _clean(result.by_collection),
        "shortcut_audit": result.shortcut,
        "label_weighted": result.weighted,
    }


def _clean(obj: Any) -> Any:
    from postergenre.ensemble.metrics import _clean as clean

    return clean(obj)


def _print_tables(result: Any) -> None:
    from postergenre.ensemble.metrics import METRIC_TITLES

    keys = list(METRIC_TITLES)
    rows = {"model": result.metrics, **{f"constant: {k}": m for k, m in result.constants.items()}}
    width = max(len(k) for k in rows) + 2
    typer.echo(
        f"{result.metrics.n_rows} posters" + (f" of split {result.split}" if result.split else "")
    )
    head = "predictor".ljust(width) + "".join(f"{METRIC_TITLES[k]:>12}" for k in keys)
    typer.echo(head)
    typer.echo("-" * len(head))
    for name, m in rows.items():
        typer.echo(name.ljust(width) + "".join(f"{_num(m.overall[k]):>12}" for k in keys))
    if result.intervals:
        level = int(round(100 * result.interval_spec["level"]))
        lows = "".join(
            f"{_num(result.intervals[k]['low']) if k in result.intervals else '':>12}" for k in keys
        )
        highs = "".join(
            f"{_num(result.intervals[k]['high']) if k in result.intervals else '':>12}"
            for k in keys
        )
        typer.echo(f"model, {level}% low".ljust(width) + lows)
        typer.echo(f"model, {level}% high".ljust(width) + highs)
        typer.echo(
            f"({level}% basic bootstrap intervals from {int(result.interval_spec['resamples'])} "
            "resamples of the posters, thresholds fixed)"
        )
    typer.echo("")
    if result.comparison:
        _print_comparison(result, keys, width)
    if result.by_collection:
        typer.echo("per collection (unweighted)")
        width_c = max(len(k) for k in result.by_collection) + 2
        head = (
            "collection".ljust(width_c)
            + f"{'posters':>9}"
            + "".join(f"{METRIC_TITLES[k]:>12}" for k in keys)
        )
        typer.echo(head)
        typer.echo("-" * len(head))
        for name, row in result.by_collection.items():
            typer.echo(
                name.ljust(width_c)
                + f"{row['n']:>9}"
                + "".join(f"{_num(row[k]):>12}" for k in keys)
            )
        typer.echo("")
    if result.shortcut:
        sc = result.shortcut
        typer.echo(
            f"shortcut audit: collection predictable from the model's outputs among posters "
            f"with the same genres: AUC {sc['auc']:.3f} (0.5 = not at all; {sc['posters']} "
            f"posters in {sc['genre_sets']} genre sets)"
        )
        typer.echo("")
    over = result.metrics.overall.get("top1_overshare")
    if over is not None:
        typer.echo(f"most over-chosen top genre: {_num(over)} x its true share")
        typer.echo("")
    head = f"{'genre':<14}{'support':>9}{'prior':>9}{'AP':>9}{'F1':>9}{'prec':>9}{'recall':>9}"
    typer.echo(head)
    typer.echo("-" * len(head))
    order = sorted(result.metrics.per_genre, key=lambda r: -r["support"])
    for p in order:
        typer.echo(
            f"{p['genre']:<14}{p['support']:>9}{_num(p['prevalence']):>9}{_num(p['ap']):>9}"
            f"{_num(p['f1']):>9}{_num(p['precision']):>9}{_num(p['recall']):>9}"
        )
    if result.by_collection:
        _print_collection_genres(result.by_collection, [p["genre"] for p in order])


def _print_collection_genres(by_collection: dict[str, Any], genres: list[str]) -> None:
    """Each genre's AP within each collection, with its positives: where a collection's
    figures come from (a rare genre's AP on a few posters is noise)."""
    names = list(by_collection)
    cells: dict[str, list[str]] = {}
    for n in names:
        per_genre = by_collection[n].get("per_genre", {})
        cells[n] = [
            f"{_num(r['ap'])} ({r['support']})" if r and r["support"] else "-"
            for r in (per_genre.get(g) for g in genres)
        ]
    widths = {n: max(len(n), *(len(c) for c in cells[n])) + 2 for n in names}
    typer.echo("")
    typer.echo("AP per genre within each collection (unweighted; positives in brackets)")
    head = f"{'genre':<14}" + "".join(f"{n:>{widths[n]}}" for n in names)
    typer.echo(head)
    typer.echo("-" * len(head))
    for i, g in enumerate(genres):
        typer.echo(f"{g:<14}" + "".join(f"{cells[n][i]:>{widths[n]}}" for n in names))


def _print_comparison(result: Any, keys: list[str], width: int) -> None:
    from postergenre.ensemble.metrics import METRIC_TITLES

    comp = result.comparison
    level = int(round(100 * comp["level"]))
    typer.echo(f"compared with {comp['model']} on the same posters")
    width = max(width, len(f"difference, {level}% high") + 2)
    typer.echo("".ljust(width) + "".join(f"{METRIC_TITLES[k]:>12}" for k in keys))
    rows = {
        "this model": {k: result.metrics.overall[k] for k in keys},
        "other model": {k: comp["overall"][k] for k in keys},
    }
    diff = comp["difference"]
    rows["difference"] = {k: diff[k]["difference"] if k in diff else None for k in keys}
    rows[f"difference, {level}% low"] = {k: diff[k]["low"] if k in diff else None for k in keys}
    rows[f"difference, {level}% high"] = {k: diff[k]["high"] if k in diff else None for k in keys}
    for name, row in rows.items():
        typer.echo(name.ljust(width) + "".join(f"{_signed(row[k], name):>12}" for k in keys))
    apart = [METRIC_TITLES[k] for k, d in diff.items() if d["low"] > 0 or d["high"] < 0]
    typer.echo(
        f"(paired basic bootstrap, {comp['resamples']} resamples, thresholds fixed; "
        + (
            f"the two differ in {', '.join(apart)})"
            if apart
            else "no difference is clear on these posters)"
        )
    )
    typer.echo("")


def _signed(v: float | None, row: str) -> str:
    if v is None:
        return ""
    return f"{v:+.4f}" if row.startswith("difference") else _num(v)


def _num(v: float) -> str:
    import math

    return "n/a" if v is None or not math.isfinite(v) else f"{v:.4f}"


def _write_report(folder: Path, result: Any, doc: dict[str, Any]) -> None:
    import json

    from postergenre.ensemble.report import draw_report

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    m = result.metrics.overall
    prior = result.constants["prior"].overall
    top2 = result.constants["top-2"].overall
    summary = [
        f"model: macro AP {m['macro_ap']:.3f} | micro F1 {m['micro_f1']:.3f} | macro F1 "
        f"{m['macro_f1']:.3f} | top-1 hit {m['top1_hit']:.3f} | P@3 {m['precision_at_3']:.3f} "
        f"| Hamming {m['hamming_loss']:.3f}",
        f"constant prior: macro AP {prior['macro_ap']:.3f} | micro F1 {prior['micro_f1']:.3f} | "
        f"top-1 hit {prior['top1_hit']:.3f};  always top-2 genres: micro F1 {top2['micro_f1']:.3f}",
        *result.notes,
    ]
    title = f"postergenre evaluation: {result.metrics.n_rows} posters" + (
        f" (split {result.split})" if result.split else ""
    )
    draw_report(
        folder / "report.png", result.Y, result.S, result.genres, result.prevalence, title, summary
    )
