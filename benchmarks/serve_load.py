"""A bounded load run against ``postergenre serve`` on 127.0.0.1 (never another host).

    python benchmarks/serve_load.py [--clients 4] [--seconds 20] [--queue 8] [--posters DIR]
                                    [--n-posters 40] [--model DIR] [--device cpu] [--explain]

Starts its own server on a free loopback port (``--port 0``), waits until the model is
loaded, warms it up, then for each count in ``--clients`` runs that many client threads
for ``--seconds``, each posting one real poster per request to ``/api/analyze`` (with
``explain=true`` when ``--explain``). Prints one row per phase: requests/s, latency
percentiles, errors (any answer but 200 or 503: must be 0), busy answers (503 with
Retry-After, expected only when clients exceed ``--queue``) and the server's RSS before and
after the phase (it must not keep growing). The server is stopped at the end.

Posters come from ``--posters`` (default: ../shared/data/posters/images when present),
else synthetic ones are drawn. Nothing is written except a temporary folder for those.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "posters" / "images"


def poster_bytes(folder: Path | None, n: int) -> list[tuple[str, bytes]]:
    if folder is None and SHARED.is_dir():
        folder = SHARED
    if folder is not None:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
        step = max(1, len(files) // max(n, 1))  # a spread over the folder, not its first files
        return [(p.name, p.read_bytes()) for p in files[::step][:n]]
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (268, 182, 3), dtype=np.uint8)).save(buf, "JPEG")
        out.append((f"synthetic{i}.jpg", buf.getvalue()))
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Phase:
    clients: int
    latencies: list[float] = field(default_factory=list)
    busy: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def client_loop(
    url: str,
    posters: list[tuple[str, bytes]],
    params: dict[str, str],
    phase: Phase,
    stop_at: float,
    offset: int,
) -> None:
    import httpx

    i = offset
    with httpx.Client(timeout=120) as client:
        while time.monotonic() < stop_at:
            name, data = posters[i % len(posters)]
            i += 1
            t0 = time.perf_counter()
            try:
                r = client.post(
                    f"{url}api/analyze",
                    params=params,
                    files=[("files", (name, data, "image/jpeg"))],
                )
            except httpx.HTTPError as exc:
                with phase.lock:
                    phase.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            seconds = time.perf_counter() - t0
            with phase.lock:
                if r.status_code == 200:
                    phase.latencies.append(seconds)
                elif r.status_code == 503:
                    phase.busy += 1
                else:
                    phase.errors.append(f"{r.status_code} {r.text[:200]}")
            if r.status_code == 503:
                time.sleep(min(float(r.headers.get("Retry-After", "1")), 0.5))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", default="4", help="comma-separated client counts, one phase each")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    ap.add_argument("--queue", type=int, default=8, help="the server's --queue")
    ap.add_argument("--posters", type=Path, default=None)
    ap.add_argument("--n-posters", type=int, default=40)
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--explain", action="store_true", help="ask for the cues (as the page does)")
    args = ap.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    posters = poster_bytes(args.posters, args.n_posters)

    cmd = [
        sys.executable,
        "-m",
        "postergenre",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--device",
        args.device,
        "--queue",
        str(args.queue),
    ]
    if args.model:
        cmd += ["--model", args.model]
    with tempfile.TemporaryDirectory(prefix="pg-serve-bench-") as tmp:
        log = open(Path(tmp) / "server.log", "w+")  # noqa: SIM115 (read back at the end)
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
        try:
            return run(server, log, counts, posters, args)
        finally:
            server.terminate()
            server.wait(30)
            log.close()


def run(
    server: subprocess.Popen[str],
    log: IO[str],
    counts: list[int],
    posters: list[tuple[str, bytes]],
    args: argparse.Namespace,
) -> int:
    import httpx

    url = None
    deadline = time.monotonic() + 180
    while url is None or httpx.get(f"{url}api/health").json()["status"] != "ready":
        if server.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            print(log.read(), file=sys.stderr)
            return 1
        if url is None:
            log.seek(0)
            found = re.search(r"serving (http://127\.0\.0\.1:\d+/)", log.read())
            url = found.group(1) if found else None
        time.sleep(0.2)
    params = {"explain": "true" if args.explain else "false"}
    # Warm-up: every poster once, so first-call costs and allocator growth are not counted.
    with httpx.Client(timeout=120) as c:
        for name, data in posters:
            c.post(f"{url}api/analyze", params=params, files=[("files", (name, data))])
    print(
        f"server {url} (queue {args.queue}), {len(posters)} posters, explain={args.explain}, "
        f"device={args.device}, {args.seconds:g} s per phase"
    )
    head = (
        f"{'clients':>7} {'requests':>8} {'req/s':>6} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6} {'busy 503':>8} {'RSS before':>10} {'RSS after':>9}"
    )
    print(head)
    print("-" * len(head))
    bad = 0
    for n in counts:
        phase = Phase(n)
        before = rss_mb(server.pid)
        stop_at = time.monotonic() + args.seconds
        threads = [
            threading.Thread(target=client_loop, args=(url, posters, params, phase, stop_at, k * 7))
            for k in range(n)
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        after = rss_mb(server.pid)
        lat = [x * 1000 for x in phase.latencies]
        p50, p95, p99 = (percentile(lat, q) for q in (50, 95, 99))
        print(
            f"{n:>7} {len(lat):>8} {len(lat) / wall:>6.1f} {p50:>7.0f} {p95:>7.0f} {p99:>7.0f} "
            f"{len(phase.errors):>6} {phase.busy:>8} {before:>7.0f} MB {after:>6.0f} MB"
        )
        for e in phase.errors[:3]:
            print(f"    error: {e}")
        bad += len(phase.errors)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
