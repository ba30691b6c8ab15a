"""`postergenre predict`'s speed: rows/s from a feature store to a table file, and peak memory.

    python benchmarks/predict.py --store runs/store --model MODEL [--formats parquet,csv,jsonl]
    python benchmarks/predict.py --synthetic 2000,20000 [--model MODEL]

``--store``: a real store (e.g. the 20k shared posters, `postergenre extract` of them); the
model must match it (same extractors and input scale), as for `predict` itself.
``--synthetic N,...``: stores of N rows written here (in a temporary folder) with the
model's own extractor manifests and feature names, and values drawn around the model's
training reference (so the trees take realistic paths): what predict costs, without
extracting anything. Several sizes show whether memory grows with the store (it should
not: predict reads a shard at a time).

Prints a table: rows, seconds, rows/s and peak RSS (this process) per store and format.
Target (issue 14): the 20k-poster store in under 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract import PeakRSS  # noqa: E402  (the benchmarks' own helper)


def synthetic_store(folder: Path, n: int, bundle: object, shard_size: int = 512) -> Path:
    """A store of ``n`` posters with ``bundle``'s extractor manifests and random features."""
    import hashlib

    import numpy as np

    from postergenre.store import FeatureStore, IndexRow

    store = FeatureStore(folder, create=True)
    rng = np.random.default_rng(0)
    extractors = list(bundle.extractors)  # type: ignore[attr-defined]
    reference = dict(bundle.reference or {})  # type: ignore[attr-defined]
    ids = sorted(hashlib.sha256(f"poster {i}".encode()).hexdigest() for i in range(n))
    paths = [f"/catalogue/{i[:2]}/{i}.jpg" for i in ids]
    for spec in extractors:
        store.write_manifest(dict(spec), {"numpy": np.__version__})
    plan = {}
    for s, lo in enumerate(range(0, n, shard_size)):
        chunk = ids[lo : lo + shard_size]
        for pid in chunk:
            plan[pid] = s
        for spec in extractors:
            names = list(spec["feature_names"])
            med = np.array([reference.get(f, {}).get("median", 0.0) for f in names])
            spread = np.array(
                [
                    (reference.get(f, {}).get("p90", 1.0) - reference.get(f, {}).get("p10", 0.0))
                    / 2.56
                    for f in names
                ]
            )
            X = (med + rng.normal(size=(len(chunk), len(names))) * np.maximum(spread, 1e-3)).astype(
                np.float32
            )
            store.write_shard(
                spec["extractor"], s, chunk, paths[lo : lo + shard_size], ["ok"] * len(chunk),
                [""] * len(chunk), X, names, {"rows": len(chunk)},
            )  # fmt: skip
    store.write_plan(plan)
    store.write_index([IndexRow(p, i, 1, 0) for p, i in zip(paths, ids, strict=True)])
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", type=Path, default=None, help="a real feature store")
    ap.add_argument("--synthetic", default=None, help="comma-separated store sizes to make")
    ap.add_argument("--model", default=None, help="model bundle (default: the shipped one)")
    ap.add_argument("--formats", default="parquet,csv,jsonl")
    args = ap.parse_args()
    if (args.store is None) == (args.synthetic is None):
        sys.exit("give --store STORE or --synthetic N,...")

    from postergenre.predict import StorePredictor

    t = time.perf_counter()
    predictor = StorePredictor.load(args.model)
    load_s = time.perf_counter() - t
    print(
        f"model: {predictor.source} ({len(predictor.bundle.feature_names)} features, "
        f"{len(predictor.genres)} genres, loaded in {load_s:.1f}s); cpus: {os.cpu_count()}",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="pg-bench-predict-") as tmp:
        stores: list[tuple[str, Path]] = []
        if args.store is not None:
            stores.append((str(args.store), args.store))
        else:
            for n in [int(x) for x in args.synthetic.split(",")]:
                t = time.perf_counter()
                folder = synthetic_store(Path(tmp) / f"store-{n}", n, predictor.bundle)
                print(f"synthetic store of {n} rows written in {time.perf_counter() - t:.1f}s")
                stores.append((f"synthetic {n}", folder))
        for label, store in stores:
            for fmt in args.formats.split(","):
                out = Path(tmp) / f"predictions.{fmt}"
                with PeakRSS() as mem:
                    summary = predictor.write(store, out, fmt)
                rows.append((label, fmt, summary, out.stat().st_size, mem.peak))
                print(
                    f"{label} -> {fmt}: {summary.rows} rows in {summary.seconds:.1f}s "
                    f"({summary.rows_per_s:.0f} rows/s)",
                    flush=True,
                )
                out.unlink()
    head = f"{'store':<24} {'format':<8} {'rows':>7} {'ok':>7} {'seconds':>8} {'rows/s':>8} "
    head += f"{'file MB':>8} {'peak RSS':>9}"
    print()
    print(head)
    print("-" * len(head))
    for label, fmt, s, size, peak in rows:
        print(
            f"{label:<24} {fmt:<8} {s.rows:>7} {s.ok:>7} {s.seconds:>8.1f} {s.rows_per_s:>8.0f} "
            f"{size / 2**20:>8.1f} {peak / 2**30:>7.2f}GB"
        )


if __name__ == "__main__":
    main()
