"""Which poster files an extraction run reads: files, folders, globs and labels CSVs.

Every input becomes absolute paths (symlinks kept as named), deduplicated and sorted, so
the same command lists the same files in the same order on every run: the extraction plan,
and therefore resume, depend on it.
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from postergenre.errors import ConfigError, DataError

#: Extensions a folder walk takes (compared lower-case). Explicitly named files are taken
#: whatever their extension: the user asked for them, and a bad one becomes a failure row.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Inputs:
    """The discovered poster paths (absolute, sorted, unique).

    ``skipped`` counts files a folder walk passed over because of their extension.
    """

    paths: list[str]
    skipped: int = 0
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def discover(inputs: Sequence[str | os.PathLike[str]], limit: int | None = None) -> Inputs:
    """Expand ``inputs`` into poster paths.

    Each input is a poster file, a folder (walked recursively for image extensions), a glob
    (``posters/**/*.jpg``), or a labels CSV (``*.csv``) whose ``file`` column holds paths
    relative to the CSV. Files listed in a CSV are taken even when missing: they become
    ``missing`` rows of the store. A named path that does not exist and matches nothing is
    a usage error (ConfigError). ``limit`` keeps the first ``limit`` paths of the sorted list.
    """
    if limit is not None and limit < 0:
        raise ConfigError(f"limit: expected >= 0, got {limit}")
    found: set[str] = set()
    skipped = 0
    for raw in inputs:
        text = os.fspath(raw)
        path = Path(text)
        if path.is_dir():
            files, n_skipped = _walk(path)
            found.update(files)
            skipped += n_skipped
        elif path.is_file() or path.is_symlink():
            if path.suffix.lower() == ".csv":
                found.update(read_labels_csv(path))
            else:
                found.add(_absolute(path))
        elif _GLOB_CHARS & set(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise ConfigError(f"no files match {text!r}", hint="check the pattern and quote it")
            for match in matches:
                m = Path(match)
                if m.is_dir():
                    files, n_skipped = _walk(m)
                    found.update(files)
                    skipped += n_skipped
                else:
                    found.add(_absolute(m))
        else:
            raise ConfigError(
                f"no such file or folder: {text}",
                hint="give poster files, folders, globs or a labels CSV",
            )
    paths = sorted(found)
    if limit is not None:
        paths = paths[:limit]
    return Inputs(paths=paths, skipped=skipped, sources=[os.fspath(s) for s in inputs])


def read_labels_csv(csv_path: str | os.PathLike[str]) -> list[str]:
    """Absolute poster paths from a labels CSV's ``file`` column (relative to the CSV)."""
    csv_path = Path(csv_path)
    base = csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "file" not in reader.fieldnames:
                raise DataError(
                    f"{csv_path}: expected a labels CSV with a 'file' column, "
                    f"got columns {reader.fieldnames or []}",
                    hint="the file column holds poster paths relative to the CSV",
                )
            out = [
                _absolute(base / row["file"].strip())
                for row in reader
                if row.get("file") and row["file"].strip()
            ]
    except OSError as exc:
        raise DataError(f"{csv_path}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path}: not a readable CSV ({exc})") from None
    return out


def _walk(folder: Path) -> tuple[list[str], int]:
    files: list[str] = []
    skipped = 0
    # os.walk ignores unreadable sub-folders (onerror=None): a folder we cannot list holds
    # no posters we could read anyway. Symlinked folders are not followed (no cycles).
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in filenames:
            if is_image_name(name):
                files.append(_absolute(Path(dirpath) / name))
            else:
                skipped += 1
    return files, skipped


def _absolute(path: Path) -> str:
    return os.path.abspath(os.fspath(path))


def common_root(paths: Iterable[str]) -> str:
    """The deepest folder holding all ``paths`` (for short display)."""
    paths = list(paths)
    if not paths:
        return ""
    try:
        return os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:  # different drives
        return ""
