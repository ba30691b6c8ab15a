"""``postergenre predict``: genre predictions for every poster of a feature store."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from postergenre.cli.common import ModelDir, PriorFile

HELP = """Predict the genres of every poster in a feature store, into a table file.

One row per input path (files with identical bytes share a poster_id but keep their own
rows): the probability of every genre (proba.<genre>), the predicted set, and the
thresholds used (threshold.<genre>); posters whose extraction failed are rows with their
status and error, and no probabilities. The format follows the file's extension (.parquet,
.csv, .jsonl, .json) unless --format says; `--out -` writes CSV or JSON to stdout.

The store must hold the model's extractors, made with the same versions, configs and input
scale (the check `evaluate` makes). Nothing is extracted: after a retrain, predict again
in seconds. The store is read a shard at a time, so memory does not grow with it.
"""


class TableFormat(StrEnum):
    parquet = "parquet"
    csv = "csv"
    jsonl = "jsonl"
    json = "json"


def register(app: typer.Typer) -> None:
    app.command("predict", help=HELP)(predict)


def predict(
    store: Annotated[
        Path, typer.Argument(metavar="STORE", help="A feature store (postergenre extract --out).")
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out", "-o", metavar="FILE", help="The table to write (.parquet, .csv, .jsonl)."
        ),
    ],
    model: ModelDir = None,
    fmt: Annotated[
        TableFormat | None,
        typer.Option("--format", help="Table format (default: from the --out extension)."),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            metavar="CSV",
            exists=True,
            dir_okay=False,
            help="A labels CSV (file or poster_id, and genres): adds a `true` column.",
        ),
    ] = None,
    prior: PriorFile = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout.")
    ] = False,
) -> None:
    from postergenre.cli.common import echo_json, stderr_console
    from postergenre.predict import StorePredictor
    from postergenre.tables import format_for

    console = stderr_console()
    console.soft_wrap = True
    chosen = format_for(out, fmt.value if fmt is not None else None)
    if out == "-" and as_json:
        raise typer.BadParameter("--json prints on stdout, where --out - writes the table")
    predictor = StorePredictor.load(model, prior=prior)
    display = _Progress(console)
    try:
        summary = predictor.write(store, out, chosen, labels=labels, observer=display)
    finally:
        display.close()
    kinds = ", ".join(f"{k}: {v}" for k, v in summary.failed_by_kind.items())
    failed = sum(summary.failed_by_kind.values())
    where = "stdout" if out == "-" else out
    console.print(
        f"{summary.rows} rows ({summary.posters} posters: {summary.ok} ok, {failed} failed"
        + (f": {kinds}" if kinds else "")
        + f") from {store} with {predictor.source} -> {where} ({summary.format}) in "
        f"{summary.seconds:.1f}s ({summary.rows_per_s:.0f} rows/s)",
        highlight=False,
    )
    if labels is not None:
        console.print(f"{summary.labelled} rows have labels from {labels}", highlight=False)
    if as_json:
        echo_json(summary.to_dict())


class _Progress:
    """A progress bar on stderr (a terminal); a log file gets the summary line only."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.bar: Any = None
        self.task: Any = None
        self.t0 = time.perf_counter()

    def started(self, rows: int) -> None:
        if not self.console.is_terminal or rows == 0:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.bar = Progress(
            "predicting",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task("rows", total=rows)

    def advanced(self, rows: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
