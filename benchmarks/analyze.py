"""How fast is ``postergenre analyze``? Cold command wall time, warm per-poster time, memory.

    python benchmarks/analyze.py [--model DIR] [--posters DIR] [--runs 3] [--warm 20]
                                 [--device cpu] [--threads N] [--importtime]

- cold: ``postergenre analyze ONE.jpg --explain`` as a fresh process, ``--runs`` times
  (wall time from spawn to exit; includes imports, model loads and one analysis), with
  the peak RSS of the child;
- warm: one Python process, the model loaded once (``postergenre.load_model``), then
  ``--warm`` posters analysed one call each with ``explain=True``; per-stage times come
  from wrapping the extractor and model calls;
- batch: the same posters through ``analyze_many`` (batched extractors);
- ``--importtime``: the slowest imports of a cold run (``python -X importtime``).

Posters come from ``--posters`` (default: ../shared/data/posters/images when present),
else synthetic ones are drawn. Prints tables; nothing is written.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "posters" / "images"


def _posters(folder: Path | None, n: int) -> list[str]:
    if folder is None and SHARED.is_dir():
        folder = SHARED
    if folder is not None:
        files = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
        # A fixed spread over the folder, not its first files (ids cluster by year).
        step = max(1, len(files) // max(n, 1))
        return files[::step][:n]
    from PIL import Image

    out = []
    tmp = Path(tempfile.mkdtemp(prefix="pg-bench-"))
    rng = np.random.default_rng(0)
    for i in range(n):
        arr = rng.integers(0, 256, (236, 160, 3), dtype=np.uint8)
        path = tmp / f"synthetic{i}.jpg"
        Image.fromarray(arr).save(path, quality=85)
        out.append(str(path))
    return out


def _cmd(model: str | None, device: str) -> list[str]:
    cmd = [sys.executable, "-m", "postergenre", "analyze"]
    if model:
        cmd += ["--model", model]
    return cmd + ["--device", device]


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cold(
    poster: str, runs: int, model: str | None, device: str, env: dict[str, str]
) -> dict[str, Any]:
    times, cpu = [], []
    for _ in range(runs):
        before = _child_cpu()
        start = time.perf_counter()
        done = subprocess.run(
            [*_cmd(model, device), poster, "--explain"], capture_output=True, text=True, env=env
        )
        times.append(time.perf_counter() - start)
        cpu.append(_child_cpu() - before)
        if done.returncode != 0:
            raise SystemExit(f"cold run failed ({done.returncode}):\n{done.stderr}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"times": times, "cpu": cpu, "peak_mb": peak_kb / 1024}


def baseline(runs: int, env: dict[str, str]) -> tuple[float, float]:
    """Median wall and CPU of a bare ``python -c "import torch"``: the floor any command that
    runs a torch model pays, measured under the same machine load as the cold runs."""
    walls, cpus = [], []
    for _ in range(runs):
        before = _child_cpu()
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True, env=env)
        walls.append(time.perf_counter() - start)
        cpus.append(_child_cpu() - before)
    return statistics.median(walls), statistics.median(cpus)


def import_profile(poster: str, model: str | None, device: str, top: int = 15) -> list[str]:
    cmd = [sys.executable, "-X", "importtime", *_cmd(model, device)[1:], poster, "--explain"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = [p.strip() for p in line[len("import time:") :].split("|")]
        try:
            cumulative = int(parts[1])
        except ValueError:
            continue
        name = parts[2]
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((cumulative, depth, name.strip()))
    # Top-level packages only (depth 0 or 1) tell where the time goes.
    shallow = sorted((r for r in rows if r[1] <= 1), reverse=True)[:top]
    return [f"{c / 1e6:7.2f} s  {'  ' * d}{n}" for c, d, n in shallow]


class _Timer:
    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)

    def wrap(self, obj: Any, attr: str, label: str) -> None:
        fn = getattr(obj, attr)

        def timed(*a: Any, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.times[label].append(time.perf_counter() - start)

        setattr(obj, attr, timed)


def warm(posters: list[str], model: str | None, device: str) -> dict[str, Any]:
    import postergenre

    start = time.perf_counter()
    analyzer = postergenre.load_model(model, device=device)
    load_s = time.perf_counter() - start
    timer = _Timer()
    for name, ext in analyzer.extractors.items():
        timer.wrap(ext, "extract", f"{name}.extract")
        if ext.has_detections:
            timer.wrap(ext, "detect", f"{name}.detect")
        for extra in ("palette", "imagenet_top", "gradcam"):
            if hasattr(ext, extra):
                timer.wrap(ext, extra, f"{name}.{extra}")
    timer.wrap(analyzer.bundle.model, "explain", "model.explain")
    timer.wrap(analyzer.bundle.model, "predict_proba", "model.predict_proba")
    analyzer.analyze(posters[0], explain=True)  # first call: lazy inits, caches
    timer.times.clear()
    per, per_cpu = [], []
    for p in posters:
        start, cpu0 = time.perf_counter(), time.process_time()
        analyzer.analyze(p, explain=True)
        per.append(time.perf_counter() - start)
        per_cpu.append(time.process_time() - cpu0)
    stages = {k: statistics.median(v) for k, v in timer.times.items()}
    start = time.perf_counter()
    analyzer.analyze_many(posters, explain=True)
    batch_s = time.perf_counter() - start
    start = time.perf_counter()
    analyzer.analyze_many(posters, explain=False)
    batch_plain_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "load_s": load_s,
        "per": per,
        "per_cpu": per_cpu,
        "stages": stages,
        "batch_s": batch_s,
        "batch_plain_s": batch_plain_s,
        "peak_mb": peak_mb,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=None, help="model bundle folder (default: shipped)")
    ap.add_argument("--posters", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=3, help="cold runs")
    ap.add_argument("--warm", type=int, default=20, help="posters in the warm loop")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch threads (OMP_NUM_THREADS for cold runs)"
    )
    ap.add_argument("--importtime", action="store_true")
    ap.add_argument("--skip-cold", action="store_true")
    args = ap.parse_args()

    posters = _posters(args.posters, max(args.warm, 1))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"posters: {len(posters)} from {Path(posters[0]).parent}")
    env = dict(os.environ)
    if args.threads:
        # The command reads the usual OpenMP variable; the warm part sets torch directly.
        env["OMP_NUM_THREADS"] = str(args.threads)
    if not args.skip_cold:
        c = cold(posters[0], args.runs, args.model, args.device, env)
        ts = c["times"]
        print("\ncold `postergenre analyze ONE --explain` (fresh process each run)")
        print(f"  wall      {' '.join(f'{t:.2f}' for t in ts)} s")
        print(f"  median    {statistics.median(ts):.2f} s   best {min(ts):.2f} s")
        print(f"  CPU time  {' '.join(f'{t:.2f}' for t in c['cpu'])} s (user+sys; on a busy")
        print("            machine the best proxy for idle wall time of a 1-thread run)")
        print(f"  peak RSS  {c['peak_mb']:.0f} MB")
        b_wall, b_cpu = baseline(args.runs, env)
        print(f"  baseline  `python -c 'import torch'`: wall {b_wall:.2f} s, CPU {b_cpu:.2f} s")
        print(f"  ratio     cold / import torch: wall {statistics.median(ts) / b_wall:.1f}x, "
              f"CPU {statistics.median(c['cpu']) / b_cpu:.1f}x")  # fmt: skip
    if args.importtime:
        print("\nslowest imports of a cold run (cumulative)")
        for line in import_profile(posters[0], args.model, args.device):
            print("  " + line)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    w = warm(posters, args.model, args.device)
    per_ms = [t * 1000 for t in w["per"]]
    print(f"\nwarm, Python API, explain=True, {len(per_ms)} posters one call each")
    print(f"  model load     {w['load_s']:.2f} s (in-process, imports included)")
    cpu_ms = [t * 1000 for t in w["per_cpu"]]
    print(f"  per poster     median {statistics.median(per_ms):.0f} ms   "
          f"p90 {np.percentile(per_ms, 90):.0f} ms   max {max(per_ms):.0f} ms")  # fmt: skip
    print(f"  CPU per poster median {statistics.median(cpu_ms):.0f} ms (user+sys, all threads)")
    print("  stages (median per call):")
    for k, v in sorted(w["stages"].items(), key=lambda kv: -kv[1]):
        print(f"    {k:<24} {v * 1000:7.1f} ms")
    n = len(posters)
    print(f"  analyze_many   {w['batch_s'] / n * 1000:.0f} ms/poster with explain, "
          f"{w['batch_plain_s'] / n * 1000:.0f} ms/poster without")  # fmt: skip
    print(f"  peak RSS       {w['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
