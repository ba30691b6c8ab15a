"""`postergenre extract`'s pipeline against a naive loop, on the shared posters.

    python benchmarks/extract.py [--n 2000] [--naive-n 200] [--extractors cnn,objects,...]
                                 [--workers 2] [--batch-size 32] [--threads N]

The naive loop reads and decodes one poster at a time and calls each extractor on it
alone, in this same process; the pipeline is :func:`run_extraction` (worker processes
decode ahead, models run on batches) writing a throw-away store. Both use the same loaded
extractor objects, so model loading is outside both timings. Peak memory is the largest
RSS sum of this process and all its descendants, sampled every 0.1 s.

Prints a table: posters/s of each, their ratio, seconds per extractor, peak memory.
Posters: a seeded sample of ../shared/data/posters (never committed, never copied).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POSTERS = REPO.parent / "shared" / "data" / "posters"


class PeakRSS:
    """Largest RSS of this process tree while active (Linux /proc; 0 elsewhere)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(os.getpid()))
            self._stop.wait(0.1)


def tree_rss(root: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else []:
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)  # field 4: ppid
        rss[pid] = int(fields[21]) * page  # field 24: rss in pages
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def sample(n: int, seed: int) -> list[str]:
    import csv

    with open(POSTERS / "labels.csv", newline="") as fh:
        files = sorted(row["file"] for row in csv.DictReader(fh))
    rng = random.Random(seed)
    chosen = rng.sample(files, min(n, len(files)))
    return sorted(str(POSTERS / f) for f in chosen)


def naive(paths: list[str], extractors: list) -> tuple[float, dict[str, float]]:
    from postergenre.errors import PosterError
    from postergenre.images import load_poster

    per = {e.name: 0.0 for e in extractors}
    per["decode"] = 0.0
    t0 = time.perf_counter()
    for p in paths:
        t = time.perf_counter()
        try:
            img = load_poster(p)
        except PosterError:
            continue
        per["decode"] += time.perf_counter() - t
        for e in extractors:
            t = time.perf_counter()
            e.extract([img])
            per[e.name] += time.perf_counter() - t
    return time.perf_counter() - t0, per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="posters for the pipeline")
    ap.add_argument(
        "--naive-n", type=int, default=200, help="posters for the naive loop (a subset)"
    )
    ap.add_argument("--limit", type=int, default=None, help="alias of --n")
    ap.add_argument("--extractors", default=None, help="comma-separated (default: all)")
    ap.add_argument("--workers", default="2", help="comma-separated worker counts to try")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (POSTERS / "labels.csv").is_file():
        sys.exit(f"needs the shared posters at {POSTERS}")

    from postergenre.features import DEFAULT_EXTRACTORS, get_extractor
    from postergenre.features.runner import RunOptions, run_extraction

    n = args.limit or args.n
    names = args.extractors.split(",") if args.extractors else list(DEFAULT_EXTRACTORS)
    paths = sample(n, args.seed)
    for p in paths:  # same page-cache state for both: every file read once before timing
        Path(p).read_bytes()
    t = time.perf_counter()
    extractors = [get_extractor(name).load(args.device) for name in names]
    load_s = time.perf_counter() - t
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    import torch

    print(
        f"posters: {len(paths)} (naive loop: first {min(args.naive_n, len(paths))}); "
        f"extractors: {','.join(names)}; device: {extractors[0].device}; "
        f"torch threads: {torch.get_num_threads()}; cpus: {os.cpu_count()}; "
        f"model loading: {load_s:.1f}s",
        flush=True,
    )

    rows = []
    naive_paths = paths[: args.naive_n]
    with PeakRSS() as mem:
        secs, per = naive(naive_paths, extractors)
    rows.append(("naive loop", len(naive_paths), secs, per, mem.peak))
    print(f"naive: {len(naive_paths) / secs:.2f} posters/s", flush=True)

    for w in [int(x) for x in args.workers.split(",")]:
        with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp, PeakRSS() as mem:
            opts = RunOptions(
                device=args.device, batch_size=args.batch_size, workers=w, shard_size=512
            )
            summary = run_extraction(paths, Path(tmp) / "store", extractors, opts)
        work = summary.seconds["work"]
        per = {k: summary.seconds[k] for k in [*names, "decode"]}
        rows.append((f"pipeline, {w} workers", summary.computed, work, per, mem.peak))
        print(f"pipeline ({w} workers): {summary.computed / work:.2f} posters/s", flush=True)

    base = rows[0][1] / rows[0][2]
    cols = [*names, "decode"]
    head = f"{'run':<22} {'posters':>7} {'seconds':>8} {'posters/s':>9} {'x naive':>7} "
    head += " ".join(f"{c + ' s/100':>13}" for c in cols) + f" {'peak RSS':>9}"
    print()
    print(head)
    print("-" * len(head))
    for label, count, secs, per, peak in rows:
        rate = count / secs
        line = f"{label:<22} {count:>7} {secs:>8.1f} {rate:>9.2f} {rate / base:>7.2f} "
        line += " ".join(f"{per.get(c, 0.0) / count * 100:>13.2f}" for c in cols)
        line += f" {peak / 2**30:>7.2f}GB"
        print(line)
    print("\n(decode in the pipeline runs in the workers, alongside the models: its seconds")
    print(" are worker time, not wall time)")


if __name__ == "__main__":
    main()
