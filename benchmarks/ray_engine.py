"""The Ray Data engine against the local engine on the same posters: the cost of Ray.

    python benchmarks/ray_engine.py [--n 1000] [--extractors cnn,objects,faces,color,gist]
                                    [--actors N] [--batch-size 32] [--seed 0]
    python benchmarks/ray_engine.py --posters FOLDER   (any posters, e.g. without the shared set)

Both engines extract the same posters into fresh stores with the same options; the local
engine with its default decoding workers, the Ray engine on a local Ray of every CPU here
(``--actors``: default one per CPU). Times are wall clock from the call to its return:
"total" includes, for Ray, starting Ray and its actors loading the models; "work" is the
part after the models are loaded (the engines' own ``seconds["work"]``). Ratio: Ray's
seconds over the local engine's (issue 14's target: within 1.5x on this machine). The two
stores are then compared row by row (max |difference| of the joined features).

Posters: a seeded sample of ../shared/data/posters (never committed, never copied).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract import POSTERS, PeakRSS, sample  # noqa: E402  (the benchmarks' own helpers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--posters", type=Path, default=None, help="a folder instead of the sample")
    ap.add_argument("--extractors", default=None, help="comma-separated (default: all five)")
    ap.add_argument("--actors", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import numpy as np
    import ray

    from postergenre.features import DEFAULT_EXTRACTORS
    from postergenre.features.inputs import discover
    from postergenre.features.ray_engine import RayOptions, run_extraction_ray
    from postergenre.features.runner import RunOptions, default_workers, run_extraction
    from postergenre.store import FeatureStore

    if args.posters is not None:
        paths = discover([str(args.posters)], limit=args.n).paths
    elif (POSTERS / "labels.csv").is_file():
        paths = sample(args.n, args.seed)
    else:
        sys.exit(f"needs the shared posters at {POSTERS}, or --posters FOLDER")
    names = args.extractors.split(",") if args.extractors else list(DEFAULT_EXTRACTORS)
    for p in paths:  # same page-cache state for both: every file read once before timing
        Path(p).read_bytes()
    opts = RunOptions(device=args.device, batch_size=args.batch_size, shard_size=args.shard_size)
    print(
        f"posters: {len(paths)}; extractors: {','.join(names)}; cpus: {os.cpu_count()}; "
        f"local decoding workers: {default_workers()}; batch {args.batch_size}, "
        f"shards of {args.shard_size}",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="pg-bench-ray-") as tmp:
        with PeakRSS() as mem:
            t = time.perf_counter()
            local = run_extraction(paths, Path(tmp) / "local", names, opts)
            local_total = time.perf_counter() - t
        rows.append(("local", local, local_total, mem.peak))
        print(f"local: {local_total:.1f}s total, {local.posters_per_s:.2f} posters/s", flush=True)

        t = time.perf_counter()
        ray.init(
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            logging_level="ERROR",
            object_store_memory=1 * 2**30,
        )
        start_s = time.perf_counter() - t
        try:
            with PeakRSS() as mem:
                t = time.perf_counter()
                on_ray = run_extraction_ray(
                    paths, Path(tmp) / "ray", names, opts,
                    ray_options=RayOptions(actors=args.actors),
                )  # fmt: skip
                ray_total = time.perf_counter() - t + start_s
            rows.append((f"ray ({on_ray.workers} actors)", on_ray, ray_total, mem.peak))
        finally:
            ray.shutdown()
        print(f"ray: {ray_total:.1f}s total (Ray start {start_s:.1f}s)", flush=True)

        a, b = FeatureStore(Path(tmp) / "local").load(), FeatureStore(Path(tmp) / "ray").load()
        same_rows = a.ids == b.ids and a.paths == b.paths
        diff = float(np.nanmax(np.abs(a.X - b.X))) if same_rows and len(a) else float("nan")

    head = f"{'engine':<18} {'posters':>7} {'total s':>8} {'work s':>7} {'other s':>7} "
    head += f"{'posters/s':>9} {'work/s':>7} {'x local':>7} {'peak RSS':>9}"
    print()
    print(head)
    print("-" * len(head))
    for label, s, total, peak in rows:
        work = s.seconds.get("work", 0.0)
        print(
            f"{label:<18} {s.computed:>7} {total:>8.1f} {work:>7.1f} {total - work:>7.1f} "
            f"{s.computed / total:>9.2f} {s.computed / work:>7.2f} {total / local_total:>7.2f} "
            f"{peak / 2**30:>7.2f}GB"
        )
    print(
        "(other: scanning, starting Ray and its actors, loading the models, writing; "
        "posters/s counts it, work/s does not)"
    )
    work_ratio = on_ray.seconds["work"] / local.seconds["work"]
    print(
        f"\nRay/local: {ray_total / local_total:.2f}x total, {work_ratio:.2f}x work "
        "(target: within 1.5x)"
    )
    print(
        f"stores: same rows {same_rows}; failures local {local.failed} / ray {on_ray.failed}; "
        f"max |feature difference| {diff:.2e}"
    )
    print("(peak RSS: this process tree, which holds the local Ray it starts and its actors)")


if __name__ == "__main__":
    main()
