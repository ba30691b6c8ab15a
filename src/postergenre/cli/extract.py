"""`postergenre extract`: poster files -> feature store (resumable)."""

from __future__ import annotations

import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from postergenre.cli.common import DEVICE_HELP, Device

if TYPE_CHECKING:
    from postergenre.features.cnn import CNNConfig
    from postergenre.features.runner import RunSummary

#: Failures listed on stderr at the end; the rest are in the store and in --json.
FAILURES_SHOWN = 50


class Mode(StrEnum):
    resume = "resume"
    overwrite = "overwrite"


class CnnFit(StrEnum):
    """How the poster meets the cnn input: postergenre.features.cnn.FIT_MODES, spelled out
    here so the CLI does not import the extractor to build its options (a test keeps the
    two equal)."""

    squash = "squash"
    crop = "crop"
    pad = "pad"
    tall = "tall"


class Engine(StrEnum):
    local = "local"
    ray = "ray"


HELP = """Extract features of posters into a feature store (a folder of parquet shards).

INPUT is any mix of poster files, folders (searched recursively for jpg, jpeg, png,
webp, bmp, tif, tiff, gif), globs, and labels CSVs (their `file` column, relative to
the CSV). Identical files are extracted once.

An interrupted run (Ctrl-C, a crash, kill -9) resumes where it stopped when run again
with the same command; adding an extractor to a store computes only that extractor.

Posters that cannot be read or decoded do not stop the run: each becomes a row with its
reason, listed at the end; --retry-failed recomputes those rows (e.g. after an upgrade
that reads more files). The exit code is 0 when the run completed, even with such
failures (they are data; see the summary or `postergenre store info`), and 1 when the
run itself failed: bad store, missing weights, or an error that is not the poster's fault
(a bug in decoding or in an extractor, named with the poster it happened on). Such an
error stops the run before its shard is written, so the same command, run again after
the fix, computes it.

--engine ray runs the same extractors as Ray Data actors (pip install "postergenre[ray]"):
on a local Ray without --address, or on a cluster (--address HOST:6379, the posters at the
same paths on every node, the store on a path this machine writes). The store, its rows
and its resume rule are the local engine's: either engine resumes the other's store.
"""


def register(app: typer.Typer) -> None:
    app.command("extract", help=HELP)(extract)


def extract(
    inputs: Annotated[
        list[str],
        typer.Argument(metavar="INPUT...", help="Poster files, folders, globs or labels CSVs."),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The feature store folder (made if absent).")
    ],
    extractors: Annotated[
        str | None,
        typer.Option(
            "--extractors",
            "-e",
            help="Comma-separated extractors (default: cnn,objects,faces,color,gist,concepts).",
        ),
    ] = None,
    device: Annotated[Device, typer.Option(help=DEVICE_HELP)] = Device.auto,
    batch_size: Annotated[int, typer.Option(min=1, help="Posters per model call.")] = 32,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Decoding processes (0: in the main process). Default: half the CPUs, 1 to 4.",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=0, help="Only the first N posters (sorted by path).")
    ] = None,
    mode: Annotated[
        Mode, typer.Option(help="resume: keep finished work; overwrite: rebuild these extractors.")
    ] = Mode.resume,
    shard_size: Annotated[
        int, typer.Option(min=1, help="Posters per shard, for shards this run plans.")
    ] = 512,
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="torch threads in the main process (default: torch's)."),
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="Recompute the posters that failed in finished shards (their rows only).",
        ),
    ] = False,
    input_scale: Annotated[
        str,
        typer.Option(
            "--input-scale",
            metavar="WxH|native",
            help="Bring every poster to this size (fitted, aspect kept, antialiased) before "
            "any extractor; recorded in the store. The default is the scale of the shipped "
            "model's training posters; a model only reads stores made at its own scale.",
        ),
    ] = "160x236",
    degrade: Annotated[
        int | None,
        typer.Option(
            "--degrade",
            metavar="SEED",
            help="Extract a degraded copy of each poster instead (another file size, JPEG "
            "re-compression and softness, drawn per poster from SEED): a store for "
            "`train --augment`. Recorded in the store; never mixed with plain features.",
        ),
    ] = None,
    cnn_backbone: Annotated[
        str | None,
        typer.Option(
            "--cnn-backbone",
            metavar="BACKBONE|PATH|NAME",
            help="Embed with other ImageNet backbones (mobilenet_v2, efficientnet_lite0, "
            "efficientnet_lite2, resnet18/34/50; A+B joins their embeddings) or with one "
            "fine-tuned by `postergenre "
            "finetune` (its output folder, its name in the weights cache, or its sha256). "
            "The backbone goes into the store manifest, so a store is never mixed with "
            "another backbone's features (use a new store, or --mode overwrite -e cnn).",
        ),
    ] = None,
    cnn_fit: Annotated[
        CnnFit | None,
        typer.Option(
            "--cnn-fit",
            help="How the poster meets the cnn input: squash, crop or pad into the square, "
            "or tall (a 2:3 portrait input, the poster padded into it). Recorded in the "
            "store manifest like the backbone.",
        ),
    ] = None,
    cnn_hflip: Annotated[
        bool | None,
        typer.Option(
            "--cnn-hflip/--no-cnn-hflip",
            help="Average the cnn embedding of each poster with that of its mirror image "
            "(twice the cnn time). Recorded in the store manifest like the backbone.",
        ),
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(help="local: this machine's processes; ray: Ray Data actors (--address)."),
    ] = Engine.local,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            metavar="ADDR",
            help="With --engine ray: the cluster (HOST:6379, or ray://HOST:10001); "
            "default: a local Ray (or RAY_ADDRESS).",
        ),
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(
            "--actors",
            min=1,
            help="With --engine ray: extractor actors (default: one per GPU when the "
            "cluster has GPUs, else one per CPU).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Also print a JSON summary on stdout.")
    ] = False,
) -> None:
    from postergenre.cli.common import echo_json, stderr_console
    from postergenre.errors import ConfigError
    from postergenre.features import DEFAULT_EXTRACTORS, get_extractor
    from postergenre.features.inputs import discover
    from postergenre.features.runner import RunOptions
    from postergenre.input_scale import Degrade, InputScale

    scale = InputScale.parse(input_scale)  # a bad value fails before any work
    console = stderr_console()
    # A log file gets whole lines, not lines wrapped at 80 columns.
    console.soft_wrap = True
    names = (
        [n.strip() for n in extractors.split(",") if n.strip()]
        if extractors
        else list(DEFAULT_EXTRACTORS)
    )
    configs: dict[str, object] = {}
    if cnn_backbone is not None or cnn_fit is not None or cnn_hflip is not None:
        configs["cnn"] = _cnn_config(names, cnn_backbone, cnn_fit, cnn_hflip)
    built = []
    for n in names:  # unknown or broken extractors fail here, before any work
        try:
            built.append(get_extractor(n, configs.get(n)))
        except ImportError as exc:
            raise ConfigError(f"extractor {n!r} cannot be imported: {exc}") from None
    if engine is not Engine.ray and (address is not None or actors is not None):
        raise ConfigError("--address and --actors need --engine ray")
    if engine is Engine.local:
        # A device this machine lacks fails now, before the store is made or touched (Ray
        # actors resolve theirs on the cluster's nodes).
        from postergenre.features.base import resolve_device

        resolve_device(device.torch_name)
    run = _engine(engine, address, actors)  # Ray missing: say how to install it, now
    found = discover(inputs, limit=limit)
    note = f" ({found.skipped} files without an image extension skipped)" if found.skipped else ""
    console.print(f"{len(found)} poster files{note}; extractors: {', '.join(names)}; store: {out}")
    options = RunOptions(
        device=device.torch_name,
        batch_size=batch_size,
        workers=workers,
        mode=mode.value,
        shard_size=shard_size,
        torch_threads=threads,
        retry_failed=retry_failed,
    )
    observer = _Display(console)
    try:
        summary = run(
            found.paths,
            out,
            built,
            options,
            observer,
            scale=scale,
            degrade=None if degrade is None else Degrade(seed=degrade),
        )
    except KeyboardInterrupt:
        observer.close()
        console.print(
            f"interrupted: finished shards are kept; run the same command again to resume ({out})"
        )
        raise typer.Exit(130) from None
    finally:
        observer.close()
    summary.extra["skipped_files"] = found.skipped
    _print_summary(console, summary)
    if as_json:
        echo_json(summary.to_dict())


def _cnn_config(
    names: list[str], backbone: str | None, fit: CnnFit | None, hflip: bool | None
) -> CNNConfig:
    """The cnn config that --cnn-backbone, --cnn-fit and --cnn-hflip ask for (the defaults
    otherwise)."""
    import dataclasses

    from postergenre.errors import ConfigError
    from postergenre.features.cnn import BACKBONES, CNNConfig

    for flag, value in (("--cnn-backbone", backbone), ("--cnn-fit", fit), ("--cnn-hflip", hflip)):
        if value is not None and "cnn" not in names:
            raise ConfigError(f"{flag} needs the cnn extractor (-e cnn,...)")
    config = CNNConfig()
    if backbone is not None:
        first, *extra = backbone.split("+")
        if first in BACKBONES:
            config = CNNConfig(backbone=first, also=tuple(extra))
        else:
            from postergenre.finetune import artifact

            config = artifact.resolve(backbone).cnn_config()
    if fit is not None:
        config = dataclasses.replace(config, fit=fit.value)
    return config if hflip is None else dataclasses.replace(config, hflip=hflip)


class _Display:
    """Progress on stderr: a live bar on a terminal, a line per shard in a log file."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress: Any = None
        self.task: Any = None
        self.total = 0
        self.done = 0
        self.failed = 0
        self.t0 = time.perf_counter()
        self.last_log = 0.0

    def scanning(self, n_paths: int) -> None:
        self.console.print(f"hashing {n_paths} files...")

    def scanned(self, n_paths: int, n_ids: int, n_hashed: int) -> None:
        dup = n_paths - n_ids
        self.console.print(
            f"{n_ids} distinct posters ({n_hashed} files hashed, {n_paths - n_hashed} known"
            + (f", {dup} duplicate files" if dup else "")
            + ")"
        )

    def loading(self, names: Any) -> None:
        self.console.print(f"loading {', '.join(names)}...")

    def started(self, total: int, shards_todo: int, shards_done: int) -> None:
        self.total = total
        self.t0 = time.perf_counter()
        if shards_done:
            self.console.print(f"{shards_done} shards already done; {shards_todo} to compute")
        if total == 0:
            self.console.print("nothing to compute: the store already holds these features")
            return
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("extracting"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} posters/s"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[failed]} failed"),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("extract", total=total, rate="-", failed=0)

    def advanced(self, n: int, failed: int) -> None:
        self.done += n
        self.failed += failed
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        rate = self.done / elapsed
        if self.progress is not None:
            self.progress.update(self.task, advance=n, rate=f"{rate:.1f}", failed=self.failed)
        elif time.perf_counter() - self.last_log >= 30 or self.done == self.total:
            self.last_log = time.perf_counter()
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            self.console.print(
                f"{self.done}/{self.total} posters, {rate:.1f} posters/s, "
                f"ETA {_duration(eta)}, {self.failed} failed"
            )

    def shard_written(self, shard: int, names: Any) -> None:
        pass

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _print_summary(console: Any, summary: RunSummary) -> None:
    from rich.markup import escape

    from postergenre.features.runner import iter_failures_text

    kinds = ", ".join(f"{k}: {v}" for k, v in summary.failed_by_kind.items())
    console.print(
        f"done: {summary.posters} posters ({summary.paths} files): {summary.ok} ok, "
        f"{summary.failed} failed" + (f" ({kinds})" if kinds else "")
    )
    secs = summary.seconds
    per = ", ".join(f"{n} {secs.get(n, 0.0):.1f}s" for n in summary.extractors)
    console.print(
        f"computed {summary.computed} posters in {summary.shards_computed} shards "
        f"({summary.shards_skipped} already done) at {summary.posters_per_s:.1f} posters/s; "
        f"time: decode {secs.get('decode', 0.0):.1f}s (in workers), {per}, "
        f"total {secs.get('total', 0.0):.1f}s"
    )
    if summary.failures:
        console.print(f"failures ({len(summary.failures)}):")
        for line in iter_failures_text(summary, limit=FAILURES_SHOWN):
            console.print("  " + escape(line), highlight=False, soft_wrap=True)
    sys.stderr.flush()


def _engine(engine: Engine, address: str | None, actors: int | None) -> Any:
    """The run function of ``engine`` (``run_extraction``'s signature)."""
    import functools

    from postergenre.features.runner import run_extraction

    if engine is Engine.local:
        return run_extraction
    from postergenre.features.ray_engine import RayOptions, require_ray, run_extraction_ray

    require_ray()
    return functools.partial(
        run_extraction_ray, ray_options=RayOptions(address=address, actors=actors)
    )
