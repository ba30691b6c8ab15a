"""How much of a model's explanations a person can check by looking at the poster.

    python benchmarks/explanation_share.py [LABEL=]MODEL... --store runs/store \
        --labels ../shared/data/posters/labels.csv [--split val] [--json OUT]

For every poster of the split, the model explains each genre's log-odds exactly
(``base + sum(contributions) == logit``). The *checkable share* is the share of the
absolute contributions that comes from cues a person can check on the poster: objects,
faces and expressions, colours and light, layout and texture, named visual concepts;
the rest is opaque (the CNN embedding's pseudo-cue, a network over every feature, any
unnamed feature). It is measured over the genres the model predicts for each poster (what
``analyze --explain`` shows) and over every genre. Beside it: val macro AP (label-weighted
as in training, and as the labels are) and top-1 hit, so a change that moves weight onto
checkable cues can be seen not to cost accuracy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

#: Feature-name prefixes of cues a person can check by looking at the poster.
CHECKABLE = ("objects", "faces", "color", "gist", "concepts")


def group_of(cue: str) -> str:
    prefix = cue.split(".", 1)[0]
    if prefix in CHECKABLE:
        return prefix
    # The overall look, and what genre combinations imply (genre_sets.py): not checkable.
    return prefix if prefix in ("cnn", "genres") else "other"


def display_key(name: str, cue_names: list[str]) -> str:
    from postergenre.cues import _gist_shape, cue_key

    if name.startswith("concepts."):
        return name
    return cue_key(name, *_gist_shape(tuple(cue_names)))[1]


def measure(model_dir: Path, store: Path, labels: Path, split: str) -> dict[str, object]:
    from postergenre.ensemble.bundle import load_bundle
    from postergenre.ensemble.data import load_labelled
    from postergenre.ensemble.label_shift import table_weights
    from postergenre.ensemble.metrics import decide, evaluate

    bundle = load_bundle(model_dir)
    data = load_labelled(
        store,
        labels,
        split_column="split",
        splits=[split],
        genres=bundle.genres,
        extractors=bundle.extractor_names,
        group_column="source",
    )
    bundle.check_features(data.feature_names)
    model = bundle.model
    e = model.explain(data.X)
    S = e.proba
    P = decide(S, bundle.thresholds, int(model.min_genres))
    table = getattr(model, "label_weights_", None)
    W = (
        table_weights(table["table"], bundle.genres, data.Y, data.groups_of(None))
        if table
        else None
    )
    weighted = evaluate(data.Y, S, P, bundle.genres, weights=W).overall
    plain = evaluate(data.Y, S, P, bundle.genres).overall

    # Contributions are summed into the cues a reader sees (``postergenre.cues``: e.g. every
    # GIST energy of the upper half at fine scales is one "texture in the upper half" cue)
    # before taking absolute values, so many small opposite parts of one cue net out as
    # they do on screen; each named concept is a cue of its own.
    keys = [display_key(c, e.cue_names) for c in e.cue_names]
    uniq = sorted(set(keys))
    ids = np.array([uniq.index(k) for k in keys])
    C = np.zeros(e.contributions.shape[:2] + (len(uniq),))
    np.add.at(C, (slice(None), slice(None), ids), e.contributions)
    A = np.abs(C)  # (n, G, displayed cues)
    groups = np.array([group_of(k) for k in uniq])
    names = sorted(set(groups), key=lambda g: (g not in CHECKABLE, g))
    out: dict[str, object] = {
        "model": str(model_dir),
        "posters": len(S),
        "macro_ap_weighted": weighted["macro_ap"],
        "macro_ap": plain["macro_ap"],
        "top1_hit": plain["top1_hit"],
    }
    # Stricter: all named concepts netted into one cue before the absolute value, so
    # splitting one opinion over many small concept parts cannot inflate the share.
    net = np.concatenate(
        [C[..., groups != "concepts"], C[..., groups == "concepts"].sum(-1, keepdims=True)], -1
    )
    net_groups = np.array([*groups[groups != "concepts"], "concepts"])
    for scope, mask in (("predicted", P.astype(bool)), ("all", np.ones_like(P, dtype=bool))):
        per = {g: float(A[..., groups == g][mask].sum()) for g in names}
        total = sum(per.values())
        out[f"{scope}_shares"] = {g: v / total for g, v in per.items()}
        out[f"{scope}_checkable"] = sum(v for g, v in per.items() if g in CHECKABLE) / total
        N = np.abs(net)[mask]
        out[f"{scope}_checkable_netted"] = float(
            N[:, np.isin(net_groups, CHECKABLE)].sum() / max(N.sum(), 1e-300)
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", metavar="[LABEL=]MODEL")
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--json", type=Path, help="Also write the figures here.")
    args = ap.parse_args()

    rows = []
    for ref in args.models:
        label, _, path = str(ref).rpartition("=")
        row = measure(Path(path), args.store, args.labels, args.split)
        rows.append({**row, "label": label or None})
    print(
        "| model | posters | checkable share (predicted genres) | (all genres) | "
        "(predicted, concepts netted) | val macro AP (weighted) | val macro AP | top-1 hit | "
        "shares by group (predicted) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        shares = ", ".join(f"{g} {v:.0%}" for g, v in r["predicted_shares"].items())  # type: ignore[attr-defined]
        print(
            f"| {r['label'] or r['model']} | {r['posters']} | {r['predicted_checkable']:.1%} | "
            f"{r['all_checkable']:.1%} | {r['predicted_checkable_netted']:.1%} | "
            f"{r['macro_ap_weighted']:.4f} | {r['macro_ap']:.4f} | "
            f"{r['top1_hit']:.4f} | {shares} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
