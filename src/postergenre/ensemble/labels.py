"""Genre labels: read a labels CSV, build the genre vocabulary, join labels to store rows.

A labels CSV has a ``genres`` column (pipe-separated, ``Comedy|Drama``) and either a
``file`` column (a poster path relative to the CSV) or a ``poster_id`` column (sha256 of
the poster file's bytes); optionally a split column (``train``/``val``). Rows are joined
to a feature store by poster_id, computed here from the labelled file's bytes, so a store
made elsewhere (other paths, moved folders) still joins.

Nothing is dropped silently: rows without a poster file, without features in the store,
whose extraction failed, or with no genre in the vocabulary are counted in a
:class:`JoinReport`, which the CLI prints and the model card records.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from postergenre.errors import DataError

GENRE_SEPARATOR = "|"
DEFAULT_MIN_COUNT = 100


@dataclass(frozen=True)
class LabelRow:
    """One row of a labels CSV. ``poster_id`` is None when the file could not be read."""

    line: int
    poster_id: str | None
    genres: tuple[str, ...]
    split: str | None
    file: str | None = None
    problem: str | None = None
    #: The collection the poster comes from (the group column), None without one.
    group: str | None = None


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_genres(text: str) -> tuple[str, ...]:
    """``"Comedy|Drama"`` -> ("Comedy", "Drama"); blanks and repeats removed, order kept."""
    seen: dict[str, None] = {}
    for part in (text or "").split(GENRE_SEPARATOR):
        part = part.strip()
        if part:
            seen.setdefault(part, None)
    return tuple(seen)


def read_labels(
    csv_path: str | os.PathLike[str],
    split_column: str | None = "split",
    group_column: str | None = None,
) -> list[LabelRow]:
    """Read a labels CSV; hash every labelled file to get its poster_id.

    ``split_column`` may be None (no splits) or a column that must then exist; so may
    ``group_column`` (which collection each poster comes from; an empty cell is the
    group ``"unknown"``).
    Raises DataError for a missing file, missing columns or an empty CSV.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise DataError(f"labels file {path} does not exist")
    root = path.parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            records = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable labels CSV ({exc})") from None
    if "genres" not in columns or not ({"file", "poster_id"} & set(columns)):
        raise DataError(
            f"{path}: expected columns 'genres' and 'file' or 'poster_id', got {columns}",
            hint="see data/README or the shared labels.csv for the format",
        )
    if split_column and split_column not in columns:
        raise DataError(
            f"{path}: no split column {split_column!r} (columns: {', '.join(columns)})",
            hint="pass --split-column, or leave splits out",
        )
    if group_column and group_column not in columns:
        raise DataError(
            f"{path}: no group column {group_column!r} (columns: {', '.join(columns)})",
            hint="pass --group-column with the column naming each poster's collection",
        )
    if not records:
        raise DataError(f"{path}: no label rows")
    rows = []
    for i, rec in enumerate(records, start=2):  # line 1 is the header
        genres = parse_genres(rec.get("genres") or "")
        split = (rec.get(split_column) or "").strip() or None if split_column else None
        pid = (rec.get("poster_id") or "").strip().lower() or None
        file = (rec.get("file") or "").strip() or None
        problem = None
        if pid is None:
            if file is None:
                problem = "no_file"
            else:
                target = root / file
                try:
                    pid = sha256_file(target)
                except FileNotFoundError:
                    problem = "missing_file"
                except OSError:
                    problem = "unreadable_file"
        group = ((rec.get(group_column) or "").strip() or "unknown") if group_column else None
        rows.append(LabelRow(i, pid, genres, split, file, problem, group))
    return rows


def build_vocabulary(
    genre_lists: Iterable[Sequence[str]], min_count: int = DEFAULT_MIN_COUNT
) -> tuple[list[str], Counter[str]]:
    """Genres with at least ``min_count`` posters, alphabetical; and every genre's count."""
    counts: Counter[str] = Counter()
    for genres in genre_lists:
        counts.update(set(genres))
    vocab = sorted(g for g, c in counts.items() if c >= min_count)
    return vocab, counts


@dataclass
class JoinReport:
    """What happened to every label row. ``kept`` + the drop counts = ``label_rows``."""

    label_rows: int = 0
    kept: int = 0
    no_file: int = 0
    missing_file: int = 0
    unreadable_file: int = 0
    not_in_store: int = 0
    failed_extraction: dict[str, int] = field(default_factory=dict)
    no_known_genre: int = 0
    other_split: int = 0
    duplicate_poster: int = 0
    rare_genre_tags: dict[str, int] = field(default_factory=dict)
    kept_by_split: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return self.label_rows - self.kept - self.other_split

    def note(self, reason: str, example: str) -> None:
        ex = self.examples.setdefault(reason, [])
        if len(ex) < 3:
            ex.append(example)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_rows": self.label_rows,
            "kept": self.kept,
            "kept_by_split": dict(sorted(self.kept_by_split.items())),
            "other_split": self.other_split,
            "dropped": {
                "no_file_or_id": self.no_file,
                "missing_file": self.missing_file,
                "unreadable_file": self.unreadable_file,
                "not_in_store": self.not_in_store,
                "failed_extraction": dict(sorted(self.failed_extraction.items())),
                "no_known_genre": self.no_known_genre,
            },
            "duplicate_poster_rows_kept": self.duplicate_poster,
            "rare_genre_tags_ignored": dict(sorted(self.rare_genre_tags.items())),
            "examples": self.examples,
        }

    def lines(self) -> list[str]:
        """A short human summary (for stderr and the model card)."""
        out = [f"{self.label_rows} label rows, {self.kept} used"]
        if self.kept_by_split:
            out[0] += (
                " (" + ", ".join(f"{k}: {v}" for k, v in sorted(self.kept_by_split.items())) + ")"
            )
        if self.other_split:
            out.append(f"{self.other_split} rows of other splits not used")
        drops = [
            ("no file or poster_id", self.no_file),
            ("poster file missing", self.missing_file),
            ("poster file unreadable", self.unreadable_file),
            ("poster not in the store", self.not_in_store),
            ("no genre in the vocabulary", self.no_known_genre),
        ]
        for text, n in drops:
            if n:
                out.append(f"dropped {n}: {text}")
        failed = sum(self.failed_extraction.values())
        if failed:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.failed_extraction.items()))
            out.append(f"dropped {failed}: feature extraction failed ({kinds})")
        if self.duplicate_poster:
            out.append(f"{self.duplicate_poster} rows share a poster file with another row (kept)")
        if self.rare_genre_tags:
            tags = ", ".join(
                f"{g} {n}" for g, n in sorted(self.rare_genre_tags.items(), key=lambda t: -t[1])
            )
            out.append(f"genre tags outside the vocabulary ignored: {tags}")
        return out


@dataclass
class JoinedLabels:
    """Label rows matched to store rows.

    ``store_rows`` (n,) row index into the store's arrays; ``Y`` (n, G) uint8;
    ``splits`` (n,) split of each row (None without splits); ``poster_ids`` (n,).
    """

    store_rows: np.ndarray
    Y: np.ndarray
    splits: list[str | None]
    poster_ids: list[str]
    genres: list[str]
    report: JoinReport
    #: (n,) collection of each row (None without a group column).
    groups: list[str | None] = field(default_factory=list)


def join_labels(
    rows: Sequence[LabelRow],
    store_ids: Sequence[str],
    genres: Sequence[str],
    failures: Mapping[str, str] | None = None,
    splits: Sequence[str] | None = None,
) -> JoinedLabels:
    """Match label rows to store rows by poster_id and encode genres as a 0/1 matrix.

    ``failures``: poster_id -> status of posters whose extraction failed (from the
    store). ``splits``: keep only rows of these splits (None keeps every row).
    """
    position = {pid: i for i, pid in enumerate(store_ids)}
    gindex = {g: j for j, g in enumerate(genres)}
    failures = failures or {}
    report = JoinReport(label_rows=len(rows))
    keep_rows: list[int] = []
    ys: list[np.ndarray] = []
    kept_splits: list[str | None] = []
    kept_ids: list[str] = []
    kept_groups: list[str | None] = []
    seen: set[str] = set()
    wanted = set(splits) if splits is not None else None
    for row in rows:
        where = f"line {row.line}" + (f" ({row.file})" if row.file else "")
        if wanted is not None and row.split not in wanted:
            report.other_split += 1
            continue
        if row.problem is not None or row.poster_id is None:
            reason = row.problem or "no_file"
            setattr(report, reason, getattr(report, reason) + 1)
            report.note(reason, where)
            continue
        if row.poster_id not in position:
            status = failures.get(row.poster_id)
            if status is not None:
                report.failed_extraction[status] = report.failed_extraction.get(status, 0) + 1
                report.note("failed_extraction", f"{where}: {status}")
            else:
                report.not_in_store += 1
                report.note("not_in_store", where)
            continue
        y = np.zeros(len(genres), dtype=np.uint8)
        for g in row.genres:
            j = gindex.get(g)
            if j is None:
                report.rare_genre_tags[g] = report.rare_genre_tags.get(g, 0) + 1
            else:
                y[j] = 1
        if not y.any():
            report.no_known_genre += 1
            report.note("no_known_genre", f"{where}: {'|'.join(row.genres) or '(empty)'}")
            continue
        if row.poster_id in seen:
            report.duplicate_poster += 1
            report.note("duplicate_poster", where)
        seen.add(row.poster_id)
        keep_rows.append(position[row.poster_id])
        ys.append(y)
        kept_splits.append(row.split)
        kept_ids.append(row.poster_id)
        kept_groups.append(row.group)
        key = row.split or "all"
        report.kept_by_split[key] = report.kept_by_split.get(key, 0) + 1
    report.kept = len(keep_rows)
    Y = np.stack(ys) if ys else np.zeros((0, len(genres)), dtype=np.uint8)
    return JoinedLabels(
        store_rows=np.asarray(keep_rows, dtype=np.int64),
        Y=Y,
        splits=kept_splits,
        poster_ids=kept_ids,
        genres=list(genres),
        report=report,
        groups=kept_groups,
    )
