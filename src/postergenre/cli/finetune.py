"""`postergenre finetune`: fine-tune an ImageNet CNN with a genre head on labelled posters."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from postergenre.cli.common import DEVICE_HELP, Device

HELP = """Fine-tune an ImageNet CNN end to end on labelled posters (the original study's
method): a pretrained backbone and a new multi-label genre head, trained on the training
split, with the validation split for early stopping and the best epoch.

LABELS is a labels CSV (`file`, `genres`, optionally `split` and `source`); posters are
brought to the canonical input scale (--input-scale) and fitted to the square network
input as the `cnn` extractor does. The loss weighs every (poster, genre) by the collection
label weights `train` uses (a genre a collection did not sample is unlabelled for its
posters: zero loss, zero gradient); --no-label-weights takes the labels as they are.
--balance redraws the study's balanced sample each epoch (cap per genre, rare genres
repeated); augmentation (random window, mirror, colour) is on unless --no-augment.

Deterministic with --seed. Killed or interrupted, the same command resumes after the last
finished epoch (the checkpoint is in DIR/checkpoint); --restart starts over.

Output in --out: backbone.safetensors (trunk + head) and finetune.json (backbone,
preprocessing, genres, sha256 of the ImageNet file it started from, data counts, val
metrics, history); never a pickle. The result is also installed in the weights cache, where
the `cnn` extractor finds it by its sha256 (config `finetuned`).
"""


class Backbone(StrEnum):
    mobilenet_v2 = "mobilenet_v2"
    resnet18 = "resnet18"
    resnet34 = "resnet34"
    resnet50 = "resnet50"


class Fit(StrEnum):
    pad = "pad"
    crop = "crop"
    squash = "squash"


def register(app: typer.Typer) -> None:
    app.command("finetune", help=HELP)(finetune)


def finetune(
    labels: Annotated[
        Path,
        typer.Argument(metavar="LABELS", exists=True, dir_okay=False, help="The labels CSV."),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the result and its checkpoint.")
    ],
    backbone: Annotated[Backbone, typer.Option(help="The ImageNet backbone.")] = (
        Backbone.mobilenet_v2
    ),
    random_weights: Annotated[
        bool,
        typer.Option("--random-weights", help="Start from random weights (tests, no files)."),
    ] = False,
    epochs: Annotated[int, typer.Option(min=1, help="Most epochs to train.")] = 3,
    batch_size: Annotated[int, typer.Option(min=2, help="Posters per step.")] = 32,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate of the backbone.")] = 3e-4,
    head_lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate of the head.")] = 3e-3,
    weight_decay: Annotated[float, typer.Option(min=0.0, help="AdamW weight decay.")] = 1e-4,
    freeze: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Leading trunk stages kept frozen (mobilenet_v2: 0..18, resnets: 0..4; "
            "0: end to end). Default 7 for mobilenet_v2 (half the cost), 0 for resnets.",
        ),
    ] = None,
    patience: Annotated[
        int,
        typer.Option(min=0, help="Stop after this many epochs without a better val macro AP."),
    ] = 2,
    augment: Annotated[
        bool, typer.Option("--augment/--no-augment", help="Random window, mirror and colour.")
    ] = True,
    balance: Annotated[
        bool,
        typer.Option("--balance/--no-balance", help="The study's per-genre balancing each epoch."),
    ] = False,
    balance_cap: Annotated[int, typer.Option(min=1, help="Posters per genre when balancing.")] = (
        1000
    ),
    balance_max_repeat: Annotated[
        int, typer.Option(min=1, help="Most repeats of a rare genre's posters when balancing.")
    ] = 3,
    input_size: Annotated[
        int, typer.Option(min=32, max=1024, help="Side of the square network input.")
    ] = 224,
    fit: Annotated[Fit, typer.Option(help="How a poster meets the square input.")] = Fit.pad,
    input_scale: Annotated[
        str, typer.Option(help="Canonical scale WxH every poster is fitted into first.")
    ] = "160x236",
    seed: Annotated[int, typer.Option(help="Seed of every random component.")] = 0,
    min_count: Annotated[
        int, typer.Option(min=1, help="Fewest training posters a genre needs.")
    ] = 100,
    split_column: Annotated[str, typer.Option(help="Split column of the labels CSV.")] = "split",
    train_split: Annotated[str, typer.Option(help="Split value of the training rows.")] = "train",
    val_split: Annotated[
        str, typer.Option(help="Split value of the validation rows ('' for none).")
    ] = "val",
    group_column: Annotated[
        str, typer.Option(help="Column naming each poster's collection (absent: one).")
    ] = "source",
    label_weights: Annotated[
        bool,
        typer.Option(
            "--label-weights/--no-label-weights",
            help="Weigh (poster, genre) by the collection label weights, as `train` does.",
        ),
    ] = True,
    prior: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Reference genre prior (JSON or CSV)."),
    ] = None,
    max_train: Annotated[
        int | None,
        typer.Option(min=2, help="Only a seeded random subset of training posters (timing)."),
    ] = None,
    max_val: Annotated[
        int | None, typer.Option(min=1, help="Only a seeded random subset of val posters.")
    ] = None,
    device: Annotated[Device, typer.Option(help=DEVICE_HELP)] = Device.auto,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch threads (default: torch's).")
    ] = None,
    loader_threads: Annotated[
        int, typer.Option(min=1, help="Threads decoding the next batches.")
    ] = 1,
    restart: Annotated[
        bool, typer.Option("--restart", help="Discard the checkpoint in --out; start over.")
    ] = False,
    install: Annotated[
        bool,
        typer.Option(
            "--install/--no-install", help="Copy the result into the weights cache when done."
        ),
    ] = True,
    name: Annotated[
        str | None,
        typer.Option(help="Its folder name in the weights cache (default: sha256 prefix)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print finetune.json on stdout when done.")
    ] = False,
) -> None:
    from postergenre.cli.common import echo_json, stderr_console
    from postergenre.finetune.config import Augment, Balance, FinetuneConfig, RunSettings
    from postergenre.finetune.train import finetune as run
    from postergenre.input_scale import InputScale

    config = FinetuneConfig(
        backbone=backbone.value,
        pretrained=not random_weights,
        fit=fit.value,
        input_size=input_size,
        input_scale=InputScale.parse(input_scale),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        head_lr=head_lr,
        weight_decay=weight_decay,
        freeze=freeze,
        augment=Augment() if augment else None,
        balance=Balance(balance_cap, balance_max_repeat) if balance else None,
        patience=patience,
        seed=seed,
        min_count=min_count,
        split_column=split_column,
        train_split=train_split,
        val_split=val_split or None,
        group_column=group_column or None,
        label_weights=label_weights,
        prior=str(prior) if prior is not None else None,
        max_train=max_train,
        max_val=max_val,
    )
    settings = RunSettings(
        device=device.torch_name, threads=threads, loader_threads=loader_threads, restart=restart
    )
    console = stderr_console()
    console.soft_wrap = True
    display = _Display(console)
    try:
        result = run(labels, out, config, settings, display, install=install, install_name=name)
    except KeyboardInterrupt:
        display.close()
        console.print(
            f"interrupted: finished epochs are kept; run the same command again to resume ({out})"
        )
        raise typer.Exit(130) from None
    finally:
        display.close()
    if as_json:
        echo_json(result.record)
        return
    val = result.record.get("val") or {}
    ap = val.get("macro_ap")
    typer.echo(
        f"{result.out}: {result.record['backbone']} fine-tuned, sha256 {result.sha256}; "
        f"best epoch {result.record['training']['best_epoch']}"
        + (f", val macro AP {ap:.4f}" if isinstance(ap, float) else "")
    )


class _Display:
    """Progress on stderr: a live bar (loss) on a terminal, a line a minute in a log file."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress: Any = None
        self.task: Any = None
        self.done = 0
        self.total = 0
        self.epoch = 0
        self.loss = float("nan")
        self.t0 = time.perf_counter()
        self.last_log = 0.0

    def message(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def epoch_started(self, epoch: int, epochs: int, batches: int) -> None:
        self.close()
        self.epoch, self.done, self.total = epoch, 0, batches
        self.loss = float("nan")
        self.t0 = time.perf_counter()
        self.last_log = self.t0
        title = f"epoch {epoch}/{epochs}"
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
                TextColumn(title),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TimeElapsedColumn(),
                console=self.console,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=batches, loss="-")
        else:
            self.console.print(f"{title}: {batches} batches")

    def batch_done(self, loss: float) -> None:
        self.done += 1
        # A running mean over the epoch's batches so far: the per-batch loss is noisy.
        self.loss = loss if self.done == 1 else self.loss + (loss - self.loss) / self.done
        if self.progress is not None:
            self.progress.update(self.task, advance=1, loss=f"{self.loss:.4f}")
            return
        now = time.perf_counter()
        if now - self.last_log >= 60 or self.done == self.total:
            self.last_log = now
            rate = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            self.console.print(
                f"epoch {self.epoch}: {self.done}/{self.total} batches, loss {self.loss:.4f}, "
                f"{rate:.2f} batches/s, ETA {eta / 60:.1f} min"
            )

    def validating(self, epoch: int, posters: int) -> None:
        self.close()
        self.console.print(f"epoch {epoch}: scoring {posters} validation posters...")

    def epoch_done(self, record: Any) -> None:
        self.close()
        ap = record.get("val_macro_ap")
        plain = record.get("val_macro_ap_unweighted")
        self.console.print(
            f"epoch {record['epoch']}: loss {record['loss']:.4f}"
            + (
                f", val macro AP {ap:.4f} (labels as they are: {plain:.4f})"
                if isinstance(ap, float) and isinstance(plain, float)
                else ""
            )
            + f"; {record['train_seconds']:.0f} s training, {record['val_seconds']:.0f} s val"
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
