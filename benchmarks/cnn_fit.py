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
    parser.add_argument("--cs", default="0.01,0.1,1", help="logistic regression C values")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
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
    results: dict[str, dict[float, float]] = {}
    speed: dict[str, float] = {}
    for mode in args.modes.split(","):
        ext = CNNExtractor(backbone=args.backbone, fit=mode, input_size=args.input_size)
        ext.load(args.device)
        t0 = time.perf_counter()
        emb = {s: ext.extract(images[s]) for s in images}
        speed[mode] = sum(len(v) for v in images.values()) / (time.perf_counter() - t0)
        scaler = StandardScaler().fit(emb["train"])
        xtr, xva = scaler.transform(emb["train"]), scaler.transform(emb["val"])
        results[mode] = {}
        for c in cs:
            aps = []
            for g in genres:
                clf = LogisticRegression(C=c, max_iter=2000, random_state=args.seed)
                clf.fit(xtr, targets("train", g))
                aps.append(average_precision_score(targets("val", g), clf.predict_proba(xva)[:, 1]))
            results[mode][c] = float(np.mean(aps))
        print(f"  {mode}: done ({speed[mode]:.1f} posters/s)", file=sys.stderr, flush=True)

    header = (
        f"{'fit':<8}"
        + "".join(f"{'AP C=' + str(c):>12}" for c in cs)
        + f"{'best':>8}{'posters/s':>11}"
    )
    print(f"val macro AP, {args.backbone} @ {args.input_size}, one-vs-rest logistic regression")
    print(header)
    for mode, by_c in results.items():
        best = max(by_c.values())
        print(
            f"{mode:<8}"
            + "".join(f"{v:>12.4f}" for v in by_c.values())
            + f"{best:>8.4f}{speed[mode]:>11.1f}"
        )
    prior = float(np.mean([targets("val", g).mean() for g in genres]))
    print(f"(a constant predictor scores macro AP = mean positive rate = {prior:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
