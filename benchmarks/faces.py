"""Speed and face counts of the ``faces`` extractor on real posters, per detector input size.

    python benchmarks/faces.py --n 200 --sizes 236,320,480 [--device cpu] [--threads 2]

Takes every k-th poster of the sorted labels CSV (deterministic), decodes them all first
(decoding is not timed), runs one warm-up batch, then times ``extract`` over all of them
in batches. Prints one table row per input size: posters per wall-clock second, posters
per CPU-second of this process (the fairer number on a machine shared with other jobs:
wall-clock / CPU-seconds tells how much of the cores it got), faces found, posters with a
face. Writes nothing. Needs ../shared/data/posters.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from postergenre.features import get_extractor
from postergenre.images import load_poster

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "posters"


def sample_paths(data: Path, n: int) -> list[Path]:
    with open(data / "labels.csv", newline="") as fh:
        files = sorted(row["file"] for row in csv.DictReader(fh))
    step = max(1, len(files) // n)
    return [data / f for f in files[::step][:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--sizes", default="236,320,480")
    parser.add_argument("--confidence", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    images = [load_poster(p) for p in sample_paths(args.data, args.n)]
    print(f"{len(images)} posters, device {args.device}, torch threads {torch.get_num_threads()}")
    header = f"{'input':>6} {'posters/s':>10} {'posters/cpu-s':>14} {'faces':>6} {'with face':>10}"
    print(header + f" {'faces/poster':>13}")
    for size in (int(s) for s in args.sizes.split(",")):
        overrides: dict[str, object] = {"input_size": size, "batch_size": args.batch_size}
        if args.confidence is not None:
            overrides["confidence"] = args.confidence
        extractor = get_extractor("faces", **overrides).load(args.device)
        extractor.extract(images[: args.batch_size])  # warm-up: allocator, priors cache
        start, cpu_start = time.perf_counter(), time.process_time()
        feats = np.concatenate(
            [
                extractor.extract(images[i : i + args.batch_size])
                for i in range(0, len(images), args.batch_size)
            ]
        )
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        counts = feats[:, extractor.feature_names().index("faces.count")]
        print(
            f"{size:>6} {len(images) / elapsed:>10.1f} {len(images) / cpu:>14.1f} "
            f"{int(counts.sum()):>6} "
            f"{int((counts > 0).sum()):>10} {counts.mean():>13.2f}"
        )


if __name__ == "__main__":
    main()
