"""Where and how ``analyze`` writes its results: ``--format`` and ``--out``.

- ``text`` (default): each poster's genres, and with ``--explain`` the cues behind them
  in plain words with their effect in percentage points (``--verbose``: the log-odds too).
- ``table``: one line per poster (predicted set, most probable genres), for a terminal.
- ``jsonl``: one JSON object per poster (``--json``); ``json``: the same objects as one array.
- ``csv``: one row per poster, one column per genre probability and threshold, the
  predicted set (the columns of ``predict``'s tables, see :mod:`postergenre.tables`).

Failures are rows too (their ``kind``/``status`` and message) in every format but text;
they are always reported on stderr as well.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from postergenre.errors import ConfigError

if TYPE_CHECKING:
    from postergenre.analysis import Analysis, Failure

#: JSON keys that only --explain adds (--card computes them too, to draw them).
EXPLAIN_KEYS = ("explanations", "objects", "faces", "palette", "imagenet", "gradcam")
#: Formats that cannot hold an explanation's nested cues.
FLAT_FORMATS = frozenset({"table", "csv"})


class OutputFormat(StrEnum):
    text = "text"
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


_BY_EXTENSION = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def resolve_format(fmt: str | None, as_json: bool, out: str | None) -> str:
    """The format asked for: ``--format``, else ``--json`` (jsonl), else ``--out``'s
    extension (.csv, .json, .jsonl), else text. ``--json`` with another ``--format`` is
    a contradiction (ConfigError)."""
    if as_json and fmt not in (None, "jsonl"):
        raise ConfigError(f"--json means --format jsonl, not {fmt}: give one of them")
    if fmt is not None:
        return fmt
    if as_json:
        return "jsonl"
    if out is not None and out != "-":
        return _BY_EXTENSION.get(Path(out).suffix.lower(), "text")
    return "text"


class ResultSink:
    """Writes each result, as it comes, in one format to stdout or a file."""

    def __init__(
        self,
        fmt: str,
        out: str | None,
        genres: list[str],
        *,
        explain: bool = False,
        cues: int = 5,
        prior: dict[str, Any] | None = None,
        verbose: bool = False,
    ) -> None:
        self.fmt = fmt
        self.genres = genres
        self.explain = explain
        self.cues = cues
        self.verbose = verbose
        self.prior = prior
        self.to_file = out is not None and out != "-"
        # CSV goes through the table writer, which opens the file itself.
        self.owns_stream = self.to_file and fmt != "csv"
        self.stream: IO[str] = (
            open(out, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed in close())
            if self.owns_stream and out is not None
            else sys.stdout
        )
        self.rows: list[tuple[str, str, str]] = []  # table: poster, predicted, probabilities
        self._first = True
        self.console: Any = None
        self.writer: Any = None
        if fmt in ("text", "table"):
            from rich.console import Console

            if self.to_file:
                self.console = Console(file=self.stream, soft_wrap=True, color_system=None)
            else:
                from postergenre.cli.analyze import _stdout_console

                self.console = _stdout_console()
        elif fmt == "csv":
            from postergenre.tables import TableLayout, TableWriter

            self.layout = TableLayout(tuple(genres), poster_id=False)
            self.writer = TableWriter(out if self.to_file and out else "-", "csv", self.layout)
        elif fmt == "json":
            self.stream.write("[")

    def note(self, text: str) -> None:
        """A line for people (the adapted prior): text and table only."""
        if self.console is not None:
            self.console.print(text, highlight=False)

    def result(self, a: Analysis, card_path: Path | None = None) -> None:
        if self.fmt == "text":
            from postergenre.cli.analyze import render_text

            render_text(
                self.console, a, explain=self.explain, cues=self.cues, card_path=card_path,
                verbose=self.verbose,
            )  # fmt: skip
        elif self.fmt == "table":
            from postergenre.cli.analyze import _pct

            top = ", ".join(f"{g} {_pct(p)}" for g, p in list(a.probabilities.items())[:3])
            self.rows.append((a.path or "poster", ", ".join(a.predicted), top))
        elif self.fmt == "csv":
            self._csv_rows([a])
        else:
            obj = a.to_dict(self.cues)
            if not self.explain:
                for key in EXPLAIN_KEYS:
                    obj.pop(key, None)
            if card_path is not None:
                obj["card"] = str(card_path)
            if self.prior is not None:
                obj["prior"] = self.prior
            self._json(obj)

    def failure(self, f: Failure) -> None:
        if self.fmt == "table":
            self.rows.append((f.path or "poster", f"[{f.kind}]", f.message))
        elif self.fmt == "csv":
            self._csv_rows([f])
        elif self.fmt in ("json", "jsonl"):
            self._json(f.to_dict())

    def close(self) -> None:
        if self.fmt == "table" and self.rows:
            from rich.markup import escape
            from rich.table import Table

            table = Table(box=None, pad_edge=False, header_style="bold")
            table.add_column("poster", overflow="fold")
            table.add_column("predicted")
            table.add_column("most probable", overflow="fold")
            for row in self.rows:
                table.add_row(*(escape(c) for c in row))
            if not self.console.is_terminal:
                # A file or a pipe: one line per poster, however long its path.
                widths = [max(len(r[k]) for r in [("poster", "predicted", "most probable"),
                                                   *self.rows]) for k in range(3)]  # fmt: skip
                self.console.width = max(self.console.width, sum(widths) + 4)
            self.console.print(table)
        if self.writer is not None:
            self.writer.close()
        elif self.fmt == "json":
            self.stream.write("\n]\n" if not self._first else "]\n")
        self.stream.flush()
        if self.owns_stream:
            self.stream.close()

    def _csv_rows(self, results: list[Any]) -> None:
        from postergenre.tables import analysis_rows

        self.writer.write(analysis_rows(results, self.genres, self.layout))

    def _json(self, obj: dict[str, Any]) -> None:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
        if self.fmt == "jsonl":
            self.stream.write(text + "\n")
        else:
            self.stream.write(("\n" if self._first else ",\n") + text)
        self._first = False
        self.stream.flush()


def check_out_file(out: str | None) -> None:
    """Refuse an --out that cannot be a file, before any model is loaded."""
    if out is None or out == "-":
        return
    if os.path.isdir(out):
        raise ConfigError(f"--out {out} is a folder", hint="give a file name, e.g. genres.csv")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise ConfigError(f"--out {out}: folder {parent} does not exist")
