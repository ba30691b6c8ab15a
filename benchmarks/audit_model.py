"""A model bundle on val and on posters of other collections, with the shortcut audit.

    python benchmarks/audit_model.py MODEL runs/store --labels ../shared/data/posters/labels.csv \
        --external-store runs/store_ext \
        --external-labels ../shared/data/posters_external/labels.csv

Prints, for val and the external posters: macro AP, micro F1 (the bundle's own
thresholds), top-1 hit, the most over-chosen top genre (x its true share), and on val the
shortcut audit (ROC AUC of telling the collections apart from the model's log-odds among
posters with the same genres; 0.5 = not at all). Val metrics here count every label once
(``postergenre evaluate`` weights val's labels by the model's label weights).
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
    args = ap.parse_args()

    from postergenre.ensemble.metrics import evaluate
    from postergenre.ensemble.training import evaluate_from_store

    sets = [("val", args.store, args.labels, "val")]
    if args.external_store and args.external_labels:
        sets.append(("external", args.external_store, args.external_labels, None))
    print("| posters | n | macro AP | micro F1 | top-1 hit | over-share | most chosen top "
          "genre | shortcut AUC |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, store, labels, split in sets:
        r = evaluate_from_store(store, labels, args.model, split)
        assert r.P is not None
        # Every label counted once, as this script's figures always were.
        m = evaluate(r.Y, r.S, r.P, r.genres).overall
        top = np.bincount(np.argmax(r.S, 1), minlength=len(r.genres)) / len(r.S)
        g = int(np.argmax(top))
        audit = r.shortcut["auc"] if name == "val" and r.shortcut else float("nan")
        print(
            f"| {name} | {len(r.S)} | {m['macro_ap']:.3f} | {m['micro_f1']:.3f} | "
            f"{m['top1_hit']:.3f} | {m['top1_overshare']:.2f} | {r.genres[g]} "
            f"{top[g]:.0%} | {audit:.3f} |"
        )


if __name__ == "__main__":
    main()
