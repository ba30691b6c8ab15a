"""Do the CNN's style statistics earn their place? Embedding alone vs embedding + style.

Reads the ``cnn`` features of a store extracted with ``style=True`` (the default), fits
the stack's own MLP base (``postergenre.ensemble.bases.MLPBase``) on the training split
with each column set and prints the val metrics as a table, for several seeds, with a
paired bootstrap of the macro-AP difference over val posters.

    python benchmarks/cnn_style.py runs/store --labels ../shared/data/posters/labels.csv
    python benchmarks/cnn_style.py STORE --labels CSV --seeds 0,1,2 --hidden 256 --epochs 8

Writes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("store", type=Path)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    from postergenre.ensemble.bases import MLPBase
    from postergenre.ensemble.data import load_labelled
    from postergenre.ensemble.metrics import average_precision, evaluate

    data = load_labelled(args.store, args.labels, splits=["train", "val"], extractors=["cnn"])
    names = data.feature_names
    if not any(".style" in n for n in names):
        sys.exit(
            f"{args.store}: its cnn features have no style statistics (extract with style=True)"
        )
    Xt, Yt, _ = data.subset("train")
    Xv, Yv, _ = data.subset("val")
    sets = {
        "embedding": np.array([".style" not in n for n in names]),
        "embedding + style": np.ones(len(names), dtype=bool),
        "style alone": np.array([".style" in n for n in names]),
    }
    params = {"mlp_hidden": args.hidden, "mlp_epochs": args.epochs}
    ones = np.ones(Yt.shape[1])
    print(
        f"{len(Xt)} train / {len(Xv)} val posters, {len(data.genres)} genres; "
        f"MLP {args.hidden} units, {args.epochs} epochs",
        flush=True,
    )
    head = (
        f"{'columns':<20}{'seed':>5}{'dims':>6}{'macro AP':>10}{'top-1':>8}{'P@3':>8}{'fit s':>7}"
    )
    print(head)
    print("-" * len(head))
    per_genre_ap: dict[tuple[str, int], np.ndarray] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for label, cols in sets.items():
            t0 = time.perf_counter()
            model = MLPBase(params, seed=seed, n_jobs=args.threads or (os.cpu_count() or 1)).fit(
                Xt[:, cols], Yt, ones
            )
            fit_s = time.perf_counter() - t0
            S = model.margin(Xv[:, cols])
            m = evaluate(Yv, S, S >= np.inf, data.genres).overall
            per_genre_ap[(label, seed)] = S
            print(
                f"{label:<20}{seed:>5}{int(cols.sum()):>6}{m['macro_ap']:>10.4f}"
                f"{m['top1_hit']:>8.4f}{m['precision_at_3']:>8.4f}{fit_s:>7.1f}",
                flush=True,
            )
    # Paired bootstrap over val posters: how often does + style beat the embedding alone?
    rng = np.random.default_rng(0)
    seeds = sorted({s for _, s in per_genre_ap})
    wins, diffs = 0, []
    for _ in range(args.bootstrap):
        idx = rng.integers(0, len(Yv), len(Yv))
        y = Yv[idx]
        keep = [g for g in range(y.shape[1]) if y[:, g].any()]

        def ap(label: str, idx: np.ndarray = idx, y: np.ndarray = y, keep: list = keep) -> float:
            return float(
                np.mean(
                    [
                        np.mean(
                            [
                                average_precision(y[:, g], per_genre_ap[(label, s)][idx, g])
                                for s in seeds
                            ]
                        )
                        for g in keep
                    ]
                )
            )

        d = ap("embedding + style") - ap("embedding")
        diffs.append(d)
        wins += d > 0
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    print(
        f"\nembedding + style minus embedding, macro AP averaged over seeds: "
        f"{np.mean(diffs):+.4f} (95% bootstrap interval {lo:+.4f} .. {hi:+.4f}); "
        f"ahead in {wins}/{args.bootstrap} resamples"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
