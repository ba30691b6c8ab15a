"""How should a ~2:3 poster be fitted to the square CNN input? squash vs crop vs pad.

Embeds a seeded sample of train and val posters with each fit mode, fits a one-vs-rest
logistic regression on the train embeddings (standardised), and prints the val macro
average precision per mode (and per regularisation strength C) as a table. The winner is
the default of ``CNNConfig.fit``.

    python benchmarks/cnn_fit.py                      # 1500 train + 800 val, all modes
    python benchmarks/cnn_fit.py --train 300 --val 200 --modes squash,pad

Writes nothing; needs the shared posters and the mobilenet_v2 weights.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def macro_ap(y: np.ndarray, p: np.ndarray) -> float:
    """Mean over genres (columns) with a positive in ``y`` of the average precision."""
    from sklearn.metrics import average_precision_score

    keep = y.sum(0) > 0
    return float(average_precision_score(y[:, keep], p[:, keep], average="macro"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--posters", type=Path, default=REPO.parent / "shared" / "data" / "posters")
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--val", type=int, default=800)
    parser.add_argument("--modes", default="squash,crop,pad")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument(
        "--min-count", type=int, default=100, help="genres with this many posters in labels.csv"
    )
    parser.add_argument("--cs", default="0.001,0.003,0.01,0.1", help="logistic regression Cs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=200, help="paired bootstrap resamples")
    parser.add_argument(
        "--cache",
        type=Path,
        help="keep embeddings here (.npy, outside the repo) so an interrupted run resumes",
    )
    args = parser.parse_args(argv)

    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from postergenre.features.cnn import CNNExtractor
    from postergenre.images import load_poster

    rows = list(csv.DictReader(open(args.posters / "labels.csv", newline="")))
    counts: dict[str, int] = {}
    for row in rows:
        for g in row["genres"].split("|"):
            counts[g] = counts.get(g, 0) + 1
    rng = np.random.default_rng(args.seed)
    picked = {}
    for split, n in (("train", args.train), ("val", args.val)):
        pool = sorted((r for r in rows if r["split"] == split), key=lambda r: r["imdb_id"])
        idx = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
        picked[split] = [pool[i] for i in sorted(idx)]

    def targets(split: str, genre: str) -> np.ndarray:
        return np.array([genre in r["genres"].split("|") for r in picked[split]], dtype=int)

    genres = [
        g
        for g in sorted(counts)
        if counts[g] >= args.min_count
        and targets("train", g).sum() >= 5
        and targets("val", g).sum() >= 3
    ]
    print(
        f"{len(picked['train'])} train + {len(picked['val'])} val posters (seed {args.seed}); "
        f"{len(genres)} genres: {', '.join(genres)}",
        file=sys.stderr,
    )
    images = {s: [load_poster(args.posters / r["file"]) for r in picked[s]] for s in picked}

    cs = [float(c) for c in args.cs.split(",")]
    y_val = np.stack([targets("val", g) for g in genres], 1)
    results: dict[str, dict[float, float]] = {}
    #: val probabilities (n_val, n_genres) of each mode at each C, for the paired bootstrap
    probs: dict[str, dict[float, np.ndarray]] = {}
    speed: dict[str, float] = {}
    header = (
        f"{'fit':<8}"
        + "".join(f"{'AP C=' + str(c):>12}" for c in cs)
        + f"{'best':>8}{'posters/s':>11}"
    )
    print(f"val macro AP, {args.backbone} @ {args.input_size}, one-vs-rest logistic regression")
    print(header, flush=True)
    for mode in args.modes.split(","):
        ext = CNNExtractor(backbone=args.backbone, fit=mode, input_size=args.input_size)
        ext.load(args.device)
        emb: dict[str, np.ndarray] = {}
        t0, n_embedded = time.perf_counter(), 0
        for s in images:
            key = f"{args.backbone}-{args.input_size}-{mode}-{s}-{len(images[s])}-{args.seed}.npy"
            cached = args.cache / key if args.cache else None
            if cached is not None and cached.is_file():
                emb[s] = np.load(cached, allow_pickle=False)
                continue
            emb[s] = ext.extract(images[s])
            n_embedded += len(images[s])
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.save(cached, emb[s], allow_pickle=False)
        elapsed = time.perf_counter() - t0
        speed[mode] = n_embedded / elapsed if n_embedded else float("nan")
        scaler = StandardScaler().fit(emb["train"])
        xtr, xva = scaler.transform(emb["train"]), scaler.transform(emb["val"])
        results[mode], probs[mode] = {}, {}
        for c in cs:
            columns = []
            for g in genres:
                clf = LogisticRegression(C=c, max_iter=2000, random_state=args.seed)
                clf.fit(xtr, targets("train", g))
                columns.append(clf.predict_proba(xva)[:, 1])
            probs[mode][c] = np.stack(columns, 1)
            results[mode][c] = macro_ap(y_val, probs[mode][c])
        best = max(results[mode].values())
        print(
            f"{mode:<8}"
            + "".join(f"{v:>12.4f}" for v in results[mode].values())
            + f"{best:>8.4f}{speed[mode]:>11.1f}",
            flush=True,
        )
    # Is the winner's lead more than val-sample noise? Paired bootstrap over val posters,
    # each mode at its best C (the same resample for every mode).
    best_c = {m: max(results[m], key=lambda c: results[m][c]) for m in results}
    winner = max(results, key=lambda m: results[m][best_c[m]])
    boot = np.random.default_rng(args.seed)
    draws = [boot.integers(0, len(y_val), len(y_val)) for _ in range(args.bootstrap)]
    print(f"paired bootstrap ({args.bootstrap} resamples of val): AP(winner {winner}) - AP(mode)")
    for mode in results:
        if mode == winner:
            continue
        diffs = [
            macro_ap(y_val[i], probs[winner][best_c[winner]][i])
            - macro_ap(y_val[i], probs[mode][best_c[mode]][i])
            for i in draws
        ]
        lo, hi = np.quantile(diffs, [0.05, 0.95])
        wins = float(np.mean(np.array(diffs) > 0))
        print(
            f"  vs {mode:<7} mean {np.mean(diffs):+.4f}  "
            f"90% [{lo:+.4f}, {hi:+.4f}]  ahead {wins:.0%}"
        )
    prior = float(np.mean([targets("val", g).mean() for g in genres]))
    print(f"(a constant predictor scores macro AP = mean positive rate = {prior:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
