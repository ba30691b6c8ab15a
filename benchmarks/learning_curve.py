"""Does the model still gain from more posters? Evidence for `train --refit`, on val only.

    python benchmarks/learning_curve.py runs/store \
        --labels ../shared/data/posters/labels.csv [--fractions 0.6,0.8,1.0] [--seeds 0,1,2]

Two measurements, both with the stack's MLP head on the CNN embedding (as
``benchmarks/generalization.py``; label weights by collection, probabilities referred to
the reference prior) and scored on val posters only (label-weighted, as the model card):

1. **Learning curve**: the head trained on a random share of the training posters
   (``--fractions``; a new draw per seed), scored on all val posters. A curve still rising
   at 1.0 says more posters would help.
2. **Refit check**: val split in two halves at random; the head trained on the training
   posters alone, and on them plus one half, both scored on the other half (then the
   halves swap). This is what refitting on train + val buys, measured on posters neither
   fit saw, with the scoring weights fixed by the training posters' table in both.

No external posters are read: what to ship is chosen on val.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generalization import columns, fit_head  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--fractions", default="0.6,0.8,1.0")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]

    from postergenre.ensemble.data import load_labelled
    from postergenre.ensemble.label_shift import adapt_to_prior, default_prior
    from postergenre.ensemble.metrics import evaluate
    from postergenre.ensemble.training import make_label_weights

    data = load_labelled(args.store, args.labels, splits=["train", "val"], group_column="source")
    X = data.X[:, columns(list(data.feature_names), "embedding")]
    Y = data.Y
    groups = np.asarray(data.groups_of(None))
    train = np.flatnonzero(data.mask("train"))
    val = np.flatnonzero(data.mask("val"))
    ref = default_prior().vector(data.genres)
    scoring = make_label_weights(Y[train], groups[train], data.genres)

    def score(rows: np.ndarray, test: np.ndarray, seed: int) -> tuple[float, float]:
        lw = make_label_weights(Y[rows], groups[rows], data.genres)
        head = fit_head(X[rows], Y[rows], lw.W, seed=seed)
        prevalence = (lw.W * Y[rows]).sum(0) / lw.W.sum(0)
        p = adapt_to_prior(1 / (1 + np.exp(-head.margin(X[test]))), prevalence, ref)
        W = scoring.weights_for(Y[test], list(groups[test]))
        m = evaluate(Y[test], p, p >= 0.5, data.genres, W).overall
        return float(m["macro_ap"]), float(m["top1_hit"])

    print("| training posters | share of train | val macro AP (label-weighted) | sd | top-1 |")
    print("|---|---|---|---|---|")
    for frac in fractions:
        n = int(round(frac * len(train)))
        r = np.array(
            [
                score(np.sort(np.random.default_rng(100 + s).permutation(train)[:n]), val, s)
                for s in seeds
            ]
        )
        print(
            f"| {n} | {frac:.2f} | {r[:, 0].mean():.4f} | {r[:, 0].std():.4f} "
            f"| {r[:, 1].mean():.3f} |",
            flush=True,
        )
    perm = np.random.default_rng(0).permutation(val)
    halves = [np.sort(perm[: len(val) // 2]), np.sort(perm[len(val) // 2 :])]
    results: dict[str, list[tuple[float, float]]] = {"train": [], "train + half of val": []}
    for h in (0, 1):
        add, test = halves[h], halves[1 - h]
        for name, rows in (("train", train), ("train + half of val", np.union1d(train, add))):
            results[name] += [score(rows, test, s) for s in seeds]
    print("\n| trained on | macro AP on the other half of val | sd | top-1 |")
    print("|---|---|---|---|")
    for name, res in results.items():
        r = np.array(res)
        print(f"| {name} | {r[:, 0].mean():.4f} | {r[:, 0].std():.4f} | {r[:, 1].mean():.3f} |")
    gain = np.array(results["train + half of val"])[:, 0] - np.array(results["train"])[:, 0]
    print(
        f"\npaired gain of the refit (same seed, same half): {gain.mean():+.4f} "
        f"(positive in {int((gain > 0).sum())} of {len(gain)})"
    )


if __name__ == "__main__":
    main()
