"""A model bundle on val and on posters of other collections, with the shortcut audit.

    python benchmarks/audit_model.py MODEL runs/store --labels ../shared/data/posters/labels.csv \
        --external-store runs/store_ext \
        --external-labels ../shared/data/posters_external/labels.csv [--ignore-scale]

Prints, for val and the external posters: macro AP, micro F1 (the bundle's own
thresholds), top-1 hit, the most over-chosen top genre (x its true share), and on val the
shortcut audit (ROC AUC of telling the collections apart from the model's log-odds among
posters with the same genres; 0.5 = not at all). ``--ignore-scale`` scores a bundle made
before the canonical input scale existed on stores made at it (its features are the same
wherever the posters already were at that scale, as the shared ones are); used to measure
the model shipped before.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("store", type=Path)
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--external-store", type=Path)
    ap.add_argument("--external-labels", type=Path)
    ap.add_argument("--ignore-scale", action="store_true")
    args = ap.parse_args()

    from postergenre.ensemble.bundle import load_bundle
    from postergenre.ensemble.data import load_labelled
    from postergenre.ensemble.metrics import decide, evaluate
    from postergenre.ensemble.training import shortcut_audit

    bundle = load_bundle(args.model)
    sets = [("val", args.store, args.labels, ["val"])]
    if args.external_store and args.external_labels:
        sets.append(("external", args.external_store, args.external_labels, None))
    print("| posters | n | macro AP | micro F1 | top-1 hit | over-share | most chosen top "
          "genre | shortcut AUC |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, store, labels, splits in sets:
        if not args.ignore_scale:
            from postergenre.store import FeatureStore

            bundle.check_store(FeatureStore(store))
        data = load_labelled(
            store,
            labels,
            split_column="split" if splits else None,
            splits=splits,
            genres=bundle.genres,
            extractors=bundle.extractor_names,
            group_column="source",
        )
        bundle.check_features(data.feature_names)
        S = bundle.model.predict_proba(data.X)
        P = decide(S, bundle.thresholds, int(bundle.model.min_genres))
        m = evaluate(data.Y, S, P, bundle.genres).overall
        top = np.bincount(np.argmax(S, 1), minlength=len(bundle.genres)) / len(S)
        g = int(np.argmax(top))
        audit = (
            shortcut_audit(bundle.model.decision_function(data.X), data.Y, data.groups_of(None))
            if name == "val"
            else None
        )
        print(
            f"| {name} | {len(S)} | {m['macro_ap']:.3f} | {m['micro_f1']:.3f} | "
            f"{m['top1_hit']:.3f} | {m['top1_overshare']:.2f} | {bundle.genres[g]} "
            f"{top[g]:.0%} | {audit['auc'] if audit else float('nan'):.3f} |"
        )


if __name__ == "__main__":
    main()
