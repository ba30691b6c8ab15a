"""Would estimating a batch's own genre mix help? EM prior estimation, measured.

    python benchmarks/prior_em.py STORE --labels CSV [--model DIR] [--split NAME]

The expectation-maximisation of Saerens, Latinne & Decaestecker (2002), one genre at a
time: start from the model's reference prior, move the probabilities to the current
estimate with the label-shift correction, take their mean as the next estimate, repeat.
The labels are used only to score the result (as shipped vs adapted; thresholds moved by
the same correction, as ``analyze --prior`` does) and to print the true mix beside the
estimate. EM is only as good as the probabilities' calibration on the batch's posters.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def em_prior(P: np.ndarray, source: np.ndarray, iters: int = 100, tol: float = 1e-6) -> np.ndarray:
    """The genre shares of the batch ``P`` (n, G) that EM settles on, from ``source``."""
    from postergenre.ensemble.label_shift import adapt_to_prior

    t = source.copy()
    for _ in range(iters):
        new = np.clip(adapt_to_prior(P, source, t).mean(0), 1e-4, 1 - 1e-4)
        if np.abs(new - t).max() < tol:
            return new
        t = new
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--split", default=None, help="only rows of this split")
    args = ap.parse_args()

    from postergenre.ensemble.label_shift import adapt_to_prior
    from postergenre.ensemble.metrics import decide, evaluate
    from postergenre.ensemble.training import evaluate_from_store

    result = evaluate_from_store(args.store, args.labels, args.model, args.split)
    genres, P, Y = result.genres, result.S, result.Y
    assert result.thresholds is not None
    thr = result.thresholds
    # The model's own reference prior: what its probabilities refer to.
    source = result.prevalence
    target = em_prior(P, source)
    rows = [
        ("as shipped (IMDb-wide prior)", P, thr),
        (
            "EM estimate of this batch's prior",
            adapt_to_prior(P, source, target),
            adapt_to_prior(thr[None, :], source, target)[0],
        ),
    ]
    keys = ["macro_ap", "micro_f1", "top1_hit", "top1_overshare"]
    print(f"{len(P)} posters\n")
    print("| probabilities | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, probs, th in rows:
        m = evaluate(Y, probs, decide(probs, th), genres).overall
        print(f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in keys) + " |")
    print("\n| genre | reference | EM estimate | true share |\n|---|---|---|---|")
    for g, s, t, y in zip(genres, source, target, Y.mean(0), strict=True):
        print(f"| {g} | {s:.3f} | {t:.3f} | {y:.3f} |")


if __name__ == "__main__":
    main()
