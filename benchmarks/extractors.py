"""Extractor speed and memory: posters/s and peak RSS per extractor, and all together.

Each measurement runs in its own subprocess, so its peak RSS (getrusage maxrss) is its own;
the table shows the peak and its rise over the child's baseline (Python, numpy, torch and
the decoded posters already in memory). Extractors run at default settings, fed batches of
their configured batch size (``batch_size`` in their config, else 32), after a 2-poster
warm-up. For extractors that run torch models it also prints the physical floor: model FLOPs
per poster (torch.utils.flop_counter over one poster) against the float32 matmul FLOP/s these
cores reach.

    python benchmarks/extractors.py                      # 300 posters, CPU (and CUDA if any)
    python benchmarks/extractors.py -n 100 --names cnn,color --set cnn.batch_size=8
    python benchmarks/extractors.py --threads 1          # torch.set_num_threads in children
    python benchmarks/extractors.py --repeat 3           # best of 3 passes (busy machines)

Extractors whose module or pretrained files are missing are skipped with a note. The
machine is shared: the load average is printed beside the numbers, and "CPU ms/poster"
(process CPU time, all threads) is steadier than wall-clock posters/s when others are busy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_POSTERS = REPO.parent / "shared" / "data" / "posters"
TARGET_GROUP = "cnn,objects,color,gist"
TARGET_RATE = 15.0


# -- child: one measurement ---------------------------------------------------------------


def _maxrss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _load_posters(folder: Path, n: int) -> list[Any]:
    import csv

    from postergenre.images import load_poster

    with open(folder / "labels.csv", newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["imdb_id"])
    return [load_poster(folder / r["file"]) for r in rows[:n]]


def _parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, _, raw = item.partition("=")
        name, _, option = key.partition(".")
        if not option or not raw:
            raise SystemExit(f"--set: expected NAME.OPTION=VALUE, got {item!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(name, {})[option] = value
    return out


def child(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np  # noqa: F401
    import torch

    from postergenre.errors import WeightsError
    from postergenre.features import REGISTRY, get_extractor

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = _parse_overrides(args.set or [])
    posters = _load_posters(args.posters, args.n)
    base_rss = _maxrss_mib()
    names = args.child.split(",")
    extractors = []
    t0 = time.perf_counter()
    for name in names:
        try:
            ext = get_extractor(name, **overrides.get(name, {}))
            ext.load(args.device)
        except ModuleNotFoundError as exc:
            if exc.name == REGISTRY[name].partition(":")[0]:
                return {"skip": f"{name}: module {exc.name} not found"}
            raise
        except WeightsError as exc:
            return {"skip": f"{name}: weights missing ({exc.message})"}
        extractors.append(ext)
    load_s = time.perf_counter() - t0
    batch_sizes = [int(getattr(e.config, "batch_size", 32)) for e in extractors]

    for ext in extractors:
        ext.extract(posters[:2])
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    wall, cpu = float("inf"), float("inf")
    for _ in range(max(1, args.repeat)):  # best of R: others' load only ever slows a run down
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for ext, bs in zip(extractors, batch_sizes, strict=True):
            for start in range(0, len(posters), bs):
                ext.extract(posters[start : start + bs])
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        run_wall, run_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        if run_wall < wall:
            wall, cpu = run_wall, run_cpu
    result: dict[str, Any] = {
        "names": names,
        "device": args.device,
        "n": len(posters),
        "batch": "/".join(str(b) for b in batch_sizes),
        "posters_per_s": len(posters) / wall,
        "cpu_ms_per_poster": 1000.0 * cpu / len(posters),
        "load_s": load_s,
        "base_rss_mib": base_rss,
        "peak_rss_mib": _maxrss_mib(),
        "threads": torch.get_num_threads(),
    }
    if args.device.startswith("cuda"):
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    if len(extractors) == 1:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            extractors[0].extract(posters[:1])
        result["flops_per_poster"] = float(counter.get_total_flops())
    return result


# -- parent: orchestration and the table ------------------------------------------------------


def matmul_flops_per_s(threads: int | None) -> tuple[float, int]:
    """float32 FLOP/s of a 2048^3 matmul with torch's thread pool (best of 5)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best, torch.get_num_threads()


def run_child(args: argparse.Namespace, names: str, device: str) -> dict[str, Any]:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", names, "--device", device,
        "-n", str(args.n), "--posters", str(args.posters), "--threads", str(args.threads or 0),
        "--repeat", str(args.repeat),
    ]  # fmt: skip
    for item in args.set or []:
        command += ["--set", item]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"skip": f"{names} on {device}: failed (exit {done.returncode}): {' | '.join(tail)}"}
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--posters", type=Path, default=DEFAULT_POSTERS)
    parser.add_argument("-n", type=int, default=300, help="posters to run (default 300)")
    parser.add_argument("--names", default="cnn,objects,faces,color,gist")
    parser.add_argument(
        "--devices", default="auto", help="comma list; auto = cpu, plus cuda if any"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads in children (0: default)"
    )
    parser.add_argument(
        "--set", action="append", metavar="NAME.OPTION=VALUE", help="config override"
    )
    parser.add_argument("--no-together", action="store_true", help="skip the all-together rows")
    parser.add_argument("--repeat", type=int, default=1, help="time R passes, keep the fastest")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(child(args)), flush=True)
        return 0
    if not (args.posters / "labels.csv").is_file():
        print(f"no posters at {args.posters} (expected labels.csv there); use --posters DIR")
        return 1

    import torch

    devices = (
        ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        if args.devices == "auto"
        else args.devices.split(",")
    )
    names = args.names.split(",")
    groups = [] if args.no_together else [TARGET_GROUP, ",".join(names)]
    groups = [g for i, g in enumerate(groups) if g not in groups[:i] and g not in names]

    load_before = os.getloadavg()
    flops_s, threads = matmul_flops_per_s(args.threads or None)
    print(
        f"{args.n} posters from {args.posters} (best of {args.repeat}); {os.cpu_count()} CPUs; "
        f"torch {torch.__version__}, "
        f"{threads} threads; float32 matmul {flops_s / 1e9:.1f} GFLOP/s; "
        f"load average {load_before[0]:.1f}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for device in devices:
        for item in names + groups:
            print(f"  measuring {item} on {device} ...", file=sys.stderr, flush=True)
            res = run_child(args, item, device)
            if "skip" in res:
                notes.append(res["skip"])
                print(f"  skipped: {res['skip']}", file=sys.stderr, flush=True)
                continue
            rows.append(res)

    head = (
        f"{'extractor':<30}{'device':>7}{'batch':>16}{'posters/s':>11}{'CPU ms/p':>10}"
        f"{'load s':>8}{'peak RSS':>10}{'+RSS MiB':>10}{'GFLOP/p':>9}{'floor p/s':>11}"
        f"{'of floor':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        label = "+".join(r["names"]) if len(r["names"]) > 1 else r["names"][0]
        flops = r.get("flops_per_poster") or 0.0
        floor = f"{flops_s / flops:>11.1f}" if flops and r["device"] == "cpu" else f"{'-':>11}"
        frac = (
            f"{r['posters_per_s'] / (flops_s / flops):>10.0%}"
            if flops and r["device"] == "cpu"
            else f"{'-':>10}"
        )
        gflop = f"{flops / 1e9:>9.2f}" if flops else f"{'-':>9}"
        print(
            f"{label:<30}{r['device']:>7}{r['batch']:>16}{r['posters_per_s']:>11.1f}"
            f"{r['cpu_ms_per_poster']:>10.1f}{r['load_s']:>8.1f}{r['peak_rss_mib']:>10.0f}"
            f"{r['peak_rss_mib'] - r['base_rss_mib']:>10.0f}{gflop}{floor}{frac}"
        )
        if "peak_gpu_mib" in r:
            print(f"{'':<30}{'':>7} peak GPU memory {r['peak_gpu_mib']:.0f} MiB")
    for note in notes:
        print(f"note: skipped {note}")
    target = [r for r in rows if ",".join(r["names"]) == TARGET_GROUP and r["device"] == "cpu"]
    if target:
        rate = target[0]["posters_per_s"]
        verdict = "meets" if rate >= TARGET_RATE else "MISSES"
        print(
            f"{TARGET_GROUP} together on CPU: {rate:.1f} posters/s, "
            f"{verdict} the {TARGET_RATE:.0f}/s target"
        )
    print(
        "floor p/s: matmul FLOP/s / model FLOPs, the rate if every FLOP ran at matmul speed; "
        f"load average now {os.getloadavg()[0]:.1f} (was {load_before[0]:.1f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
