"""Prediction tables: one row per poster, one column per genre, in Parquet, CSV or JSON.

``predict`` (from a feature store) and ``analyze --format csv|json|jsonl`` write the same
columns, so a catalogue team can swap one for the other::

    path, [poster_id], status, error, predicted, [true], proba.<genre>..., threshold.<genre>...

``status`` is ``ok`` or why the row has no probabilities (the store's failure kinds, plus
``not_done`` for a poster whose extraction did not finish); ``predicted`` and ``true`` are
lists of genres (``Comedy|Drama`` in CSV); probabilities and thresholds are float64, null
where the row failed. Writers take the rows a chunk at a time (a :class:`pyarrow.Table`
each), so a table of a million posters is never held whole.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from postergenre.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

#: Table formats, and the file extensions that select them.
FORMATS: tuple[str, ...] = ("parquet", "csv", "jsonl", "json")
EXTENSIONS: dict[str, str] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
PROBA_PREFIX = "proba."
THRESHOLD_PREFIX = "threshold."
#: How a list of genres is written in a CSV cell (as in labels CSVs).
LIST_SEPARATOR = "|"


def format_for(path: str | os.PathLike[str] | None, explicit: str | None = None) -> str:
    """The format to write: ``explicit`` when given, else the one ``path``'s extension names.

    Raises ConfigError when neither says (or they name an unknown format).
    """
    if explicit is not None:
        if explicit not in FORMATS:
            raise ConfigError(f"format: expected one of {', '.join(FORMATS)}, got {explicit!r}")
        return explicit
    suffix = Path(os.fspath(path)).suffix.lower() if path is not None else ""
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    known = ", ".join(sorted(EXTENSIONS))
    where = "stdout" if path is None or os.fspath(path) == "-" else os.fspath(path)
    raise ConfigError(
        f"cannot tell the table format of {where} (expected one of {known})",
        hint="name the file with one of those extensions, or pass --format",
    )


@dataclass(frozen=True)
class TableLayout:
    """The columns of a prediction table.

    ``genres`` (G,) in the model's order; ``poster_id``: a ``poster_id`` column (predict);
    ``labels``: a ``true`` column of the labelled genres.
    """

    genres: tuple[str, ...]
    poster_id: bool = True
    labels: bool = False

    def schema(self) -> pa.Schema:
        import pyarrow as pa

        fields = [pa.field("path", pa.string())]
        if self.poster_id:
            fields.append(pa.field("poster_id", pa.string()))
        fields += [
            pa.field("status", pa.string()),
            pa.field("error", pa.string()),
            pa.field("predicted", pa.list_(pa.string())),
        ]
        if self.labels:
            fields.append(pa.field("true", pa.list_(pa.string())))
        fields += [pa.field(PROBA_PREFIX + g, pa.float64()) for g in self.genres]
        fields += [pa.field(THRESHOLD_PREFIX + g, pa.float64()) for g in self.genres]
        return pa.schema(fields)

    def table(self, columns: dict[str, Any]) -> pa.Table:
        """A chunk from ``columns`` (name -> list or array; every column of the schema:
        ``proba`` and ``threshold`` may be given as (n, G) arrays with NaN for nulls)."""
        import numpy as np
        import pyarrow as pa

        schema = self.schema()
        arrays: list[pa.Array] = []
        n = len(columns["path"])
        for f in schema:
            if f.name.startswith(PROBA_PREFIX) or f.name.startswith(THRESHOLD_PREFIX):
                prefix = PROBA_PREFIX if f.name.startswith(PROBA_PREFIX) else THRESHOLD_PREFIX
                block = np.asarray(columns[prefix.rstrip(".")], dtype=np.float64).reshape(n, -1)
                col = block[:, self.genres.index(f.name[len(prefix) :])]
                arrays.append(pa.array(col, pa.float64(), mask=np.isnan(col)))
            else:
                arrays.append(pa.array(columns[f.name], f.type))
        return pa.Table.from_arrays(arrays, schema=schema)


class TableWriter:
    """Write prediction chunks to ``out`` (a path, or ``-`` for stdout) in ``fmt``.

    Parquet goes through a temporary file renamed at :meth:`close`, so an interrupted run
    leaves no truncated table; CSV and JSON lines are written row by row as chunks come.
    ``metadata`` (JSON-able) is stored in the Parquet schema under ``postergenre``.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        fmt: str,
        layout: TableLayout,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.fmt = format_for(out, fmt)
        self.layout = layout
        self.out = os.fspath(out)
        self.to_stdout = self.out == "-"
        if self.to_stdout and self.fmt == "parquet":
            raise ConfigError("parquet is a binary file format: give --out a file name")
        self.metadata = metadata or {}
        self.rows = 0
        self._pq: Any = None
        self._fh: IO[str] | None = None
        self._tmp: Path | None = None
        self._first_json = True
        self._open()

    def _open(self) -> None:
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            target = Path(self.out)
            self._tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            schema = self.layout.schema().with_metadata(
                {"postergenre": json.dumps(self.metadata, allow_nan=False)}
            )
            self._pq = pq.ParquetWriter(str(self._tmp), schema)
            return
        if self.to_stdout:
            self._fh = sys.stdout
        else:
            self._fh = open(self.out, "w", newline="", encoding="utf-8")  # noqa: SIM115
        if self.fmt == "csv":
            import csv

            self._csv = csv.writer(self._fh)
            self._csv.writerow(self.layout.schema().names)
        elif self.fmt == "json":
            self._fh.write("[")

    def write(self, table: pa.Table) -> None:
        """Append a chunk (rows with :meth:`TableLayout.schema`'s columns)."""
        self.rows += table.num_rows
        if self._pq is not None:
            self._pq.write_table(table.cast(self._pq.schema))
            return
        assert self._fh is not None
        names = table.schema.names
        if self.fmt == "csv":
            for row in zip(*(table[c].to_pylist() for c in names), strict=True):
                self._csv.writerow([_csv_cell(v) for v in row])
            return
        for record in table.to_pylist():
            text = json.dumps(_json_ready(record), ensure_ascii=False, allow_nan=False)
            if self.fmt == "jsonl":
                self._fh.write(text + "\n")
            else:
                self._fh.write(("\n" if self._first_json else ",\n") + text)
                self._first_json = False
        self._fh.flush()

    def close(self) -> None:
        """Finish the file (Parquet: rename it into place)."""
        if self._pq is not None:
            self._pq.close()
            self._pq = None
            assert self._tmp is not None
            os.replace(self._tmp, self.out)
            self._tmp = None
        if self._fh is not None:
            if self.fmt == "json":
                self._fh.write("\n]\n" if not self._first_json else "]\n")
            self._fh.flush()
            if not self.to_stdout:
                self._fh.close()
            self._fh = None

    def abort(self) -> None:
        """Stop without finishing: a Parquet file is not put in place."""
        if self._pq is not None:
            self._pq.close()
            self._pq = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
        if self._fh is not None and not self.to_stdout:
            self._fh.close()
        self._fh = None

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return LIST_SEPARATOR.join(value)
    if isinstance(value, float):
        return repr(value)  # every digit: a CSV reads back the same float64
    return value


def _json_ready(record: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()
    }


def analysis_rows(results: Sequence[Any], genres: Sequence[str], layout: TableLayout) -> pa.Table:
    """Analyze results (:class:`~postergenre.analysis.Analysis` or ``Failure``) as a chunk."""
    import numpy as np

    G = len(genres)
    cols: dict[str, list[Any]] = {"path": [], "status": [], "error": [], "predicted": []}
    proba = np.full((len(results), G), np.nan)
    thr = np.full((len(results), G), np.nan)
    for i, r in enumerate(results):
        cols["path"].append(r.path)
        if hasattr(r, "probabilities"):
            cols["status"].append("ok")
            cols["error"].append(None)
            cols["predicted"].append(list(r.predicted))
            proba[i] = [r.probabilities[g] for g in genres]
            thr[i] = [r.thresholds[g] for g in genres]
        else:
            cols["status"].append(r.kind)
            cols["error"].append(r.message)
            cols["predicted"].append(None)
    if layout.poster_id:
        cols["poster_id"] = [None] * len(results)
    if layout.labels:
        cols["true"] = [None] * len(results)
    return layout.table({**cols, "proba": proba, "threshold": thr})
