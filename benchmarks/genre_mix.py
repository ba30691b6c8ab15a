"""How would the model fare on a catalogue with more (or less) of one genre? Measured.

    python benchmarks/genre_mix.py STORE --labels CSV [--genre Drama]
        [--shares 0.5,0.6,0.7] [--model DIR] [--split NAME]

Importance reweighting of a labelled evaluation set: its posters with the genre get
weight share / (their share), the others (1 - share) / (1 - their share), so that the
weighted set has the genre at each share asked for and is otherwise as it was. Printed per
share: the weighted top-1 hit rate of the model as shipped; of the model told that share
with the label-shift correction of ``analyze --prior`` (that genre's prior set to it, every
other genre left at the model's reference prior); of always answering the genre; and how
often the genre is the model's top genre; beside the model's top-1, a 95% basic bootstrap
interval over the posters (1,000 resamples, each reweighted to the share). An estimate for
catalogues that differ from the evaluation set in that genre's share alone, not a
measurement on one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def mix_weights(has: np.ndarray, share: float) -> np.ndarray:
    """(n,) weights that give the rows with ``has`` the weighted share ``share``."""
    base = float(has.mean())
    if not 0.0 < base < 1.0:
        raise SystemExit("the genre is on every poster or on none: nothing to reweight")
    return np.where(has, share / base, (1.0 - share) / (1.0 - base))


def top1_interval(
    hits: np.ndarray, has: np.ndarray, share: float, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% basic bootstrap interval of the reweighted top-1 hit rate (``hits``: (n,) 0/1)."""
    full = float(np.average(hits, weights=mix_weights(has, share)))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(hits), len(hits))
        if 0 < has[idx].sum() < len(idx):
            draws.append(np.average(hits[idx], weights=mix_weights(has[idx], share)))
    low, high = np.percentile(draws, [2.5, 97.5])
    return 2 * full - float(high), 2 * full - float(low)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--genre", default="Drama")
    ap.add_argument("--shares", default="0.4,0.5,0.6,0.7", help="comma-separated, in (0, 1)")
    ap.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--split", default=None, help="only rows of this split")
    args = ap.parse_args()
    shares = [float(s) for s in args.shares.split(",")]
    if any(not 0.0 < s < 1.0 for s in shares):
        raise SystemExit("--shares: every share must lie strictly between 0 and 1")

    from postergenre.ensemble.label_shift import adapt_to_prior
    from postergenre.ensemble.training import evaluate_from_store

    # The store is checked against the model (extractors, scale) as `evaluate` does.
    result = evaluate_from_store(args.store, args.labels, args.model, split=args.split)
    genres = list(result.genres)
    if args.genre not in genres:
        raise SystemExit(f"--genre: {args.genre!r} is not one of the model's genres {genres}")
    g = genres.index(args.genre)
    P, Y = result.S, result.Y.astype(bool)
    has = Y[:, g]
    source = result.prevalence  # the model's reference prior

    def top1(S: np.ndarray, w: np.ndarray) -> float:
        return float(np.average(Y[np.arange(len(S)), S.argmax(1)], weights=w))

    print(
        f"{len(P)} posters, {args.genre} on {has.mean():.3f} of them; "
        f"unweighted top-1 {result.metrics.overall['top1_hit']:.3f}"
    )
    hits = Y[np.arange(len(P)), P.argmax(1)].astype(np.float64)
    head = (
        f"{args.genre + ' share':>14}  {'top-1':>6}  {'95% interval':>14}  "
        f"{'top-1 with --prior':>18}  "
        f"{'always ' + args.genre:>14}  {args.genre + ' is top':>12}"
    )
    print(head)
    for share in shares:
        w = mix_weights(has, share)
        target = source.copy()
        target[g] = share
        adapted = adapt_to_prior(P, source, target)
        is_top = float(np.average(P.argmax(1) == g, weights=w))
        low, high = top1_interval(hits, has, share)
        print(
            f"{share:>14.2f}  {top1(P, w):>6.3f}  {f'[{low:.3f}, {high:.3f}]':>14}  "
            f"{top1(adapted, w):>18.3f}  "
            f"{share:>14.3f}  {is_top:>12.3f}"
        )


if __name__ == "__main__":
    main()
