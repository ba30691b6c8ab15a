"""The feature store: a directory of parquet shards, one subdirectory per extractor.

Layout::

    STORE/
      store.json                 format marker
      index.parquet              path -> poster_id (+ size, mtime_ns: lets a rerun skip hashing)
      plan.parquet               poster_id -> shard; append-only, so shards never change
      .lock                      held (flock) by the one run writing to the store
      <extractor>/
        manifest.json            extractor, version, config, feature_names, libraries, created
        shard-00000.parquet      poster_id, path, status, error, one float32 column per feature
        shard-00000.done.json    stats; written last: a shard without it is not done

``poster_id`` is the sha256 of the file's bytes, so posters with identical bytes are one
row. ``status`` is ``ok`` or why the row has no features: a :class:`PosterError` kind
(``missing``, ``empty``, ``unreadable``, ``not_image``, ``corrupt``, ``too_large``,
``too_small``), ``changed`` (the file changed during the run), ``crashed`` (the decoder
crashed on it) or ``extract_error`` (the extractor failed on that poster).

Files are written to a temporary name, fsynced and renamed, so a killed run leaves either
the old file or the new one, never half of one. Readers only read shards that are done.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from postergenre.errors import StoreError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

FORMAT = "postergenre.feature-store"
FORMAT_VERSION = 1
#: Ids of files whose bytes could not be read when scanned are made from the path instead.
NOHASH_PREFIX = "nohash-"
META_COLUMNS: tuple[str, ...] = ("poster_id", "path", "status", "error")
OK = "ok"

_STORE_FILE = "store.json"
_INDEX_FILE = "index.parquet"
_PLAN_FILE = "plan.parquet"
_MANIFEST = "manifest.json"
_TMP_MARK = ".tmp-"


@dataclass(frozen=True, eq=False)
class StoreData:
    """Features of the posters that are ``ok`` in every requested extractor.

    ``ids`` (n,) sorted poster ids; ``paths`` (n,) one path per id; ``X`` float32
    (n, d); ``feature_names`` (d,), extractor by extractor in ``extractors`` order.
    """

    ids: list[str]
    paths: list[str]
    X: np.ndarray
    feature_names: list[str]
    extractors: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


class Failure(NamedTuple):
    poster_id: str
    path: str
    extractor: str
    status: str
    error: str


@dataclass
class IndexRow:
    """One file a run has seen: its path, poster id, and the size and mtime it had then."""

    path: str
    poster_id: str
    size: int
    mtime_ns: int


#: The older private name (the runner and tests import it).
_IndexRow = IndexRow


class FeatureStore:
    """A feature store directory. ``FeatureStore(path)`` opens an existing store;
    ``FeatureStore(path, create=True)`` makes it when absent."""

    def __init__(self, path: str | os.PathLike[str], create: bool = False) -> None:
        self.path = Path(path)
        marker = self.path / _STORE_FILE
        if marker.is_file():
            try:
                meta = json.loads(marker.read_text())
            except (OSError, ValueError) as exc:
                raise StoreError(f"{marker}: unreadable store marker ({exc})") from None
            if meta.get("format") != FORMAT:
                raise StoreError(f"{self.path} is not a postergenre feature store")
            if int(meta.get("format_version", 0)) > FORMAT_VERSION:
                raise StoreError(
                    f"{self.path}: store format {meta.get('format_version')} is newer than "
                    f"this postergenre reads ({FORMAT_VERSION})",
                    hint="upgrade postergenre",
                )
            return
        if not create:
            raise StoreError(
                f"no feature store at {self.path}",
                hint=f"make one with `postergenre extract POSTERS --out {self.path}`",
            )
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path} exists and is not a directory")
        if self.path.is_dir() and any(self.path.iterdir()):
            raise StoreError(
                f"{self.path} is a non-empty folder that is not a feature store",
                hint="give a new or empty folder to --out",
            )
        self.path.mkdir(parents=True, exist_ok=True)
        _write_json(marker, {"format": FORMAT, "format_version": FORMAT_VERSION, "created": _now()})

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r})"

    # -- reading ------------------------------------------------------------------
    def extractors(self) -> list[str]:
        """Extractors with a manifest, in the registry's order, then alphabetical.

        The registry's names are all the store takes from the extractors' package: the
        conventional column order (cnn, objects, faces, color, gist) of ``load()``.
        """
        from postergenre.features import REGISTRY

        found = [p.name for p in self.path.iterdir() if (p / _MANIFEST).is_file()]
        order = {name: i for i, name in enumerate(REGISTRY)}
        return sorted(found, key=lambda n: (order.get(n, len(order)), n))

    def manifest(self, name: str) -> dict[str, Any]:
        path = self.path / name / _MANIFEST
        if not path.is_file():
            have = ", ".join(self.extractors()) or "none"
            raise StoreError(
                f"{self.path} has no {name!r} features (it has: {have})",
                hint=f"run `postergenre extract ... --out {self.path} --extractors {name}`",
            )
        result: dict[str, Any] = json.loads(path.read_text())
        return result

    def done_shards(self, name: str) -> list[int]:
        folder = self.path / name
        if not folder.is_dir():
            return []
        out = []
        for p in folder.glob("shard-*.done.json"):
            shard = int(p.name[len("shard-") : -len(".done.json")])
            if self.shard_file(name, shard).is_file():
                out.append(shard)
        return sorted(out)

    def shard_file(self, name: str, shard: int) -> Path:
        return self.path / name / f"shard-{shard:05d}.parquet"

    def done_file(self, name: str, shard: int) -> Path:
        return self.path / name / f"shard-{shard:05d}.done.json"

    def is_done(self, name: str, shard: int) -> bool:
        return self.done_file(name, shard).is_file() and self.shard_file(name, shard).is_file()

    def shard_stats(self, name: str, shard: int) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.done_file(name, shard).read_text())
        return result

    def read_rows(
        self, name: str, columns: Sequence[str] | None = None, shards: Sequence[int] | None = None
    ) -> pa.Table:
        """Rows of the done shards of ``name`` (all columns unless ``columns``)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        wanted = (
            self.done_shards(name)
            if shards is None
            else [s for s in shards if self.is_done(name, s)]
        )
        tables = [
            pq.read_table(self.shard_file(name, s), columns=list(columns) if columns else None)
            for s in wanted
        ]
        if not tables:
            manifest = self.manifest(name)
            cols = list(columns) if columns else [*META_COLUMNS, *manifest["feature_names"]]
            return pa.table(
                {
                    c: pa.array([], type=pa.string() if c in META_COLUMNS else pa.float32())
                    for c in cols
                }
            )
        return pa.concat_tables(tables)

    def load(self, names: Sequence[str] | None = None) -> StoreData:
        """Inner join over ``names`` (default: every extractor) of the rows ok in all."""
        import pyarrow.compute as pc

        names = list(names) if names is not None else self.extractors()
        if not names:
            raise StoreError(f"{self.path} holds no features yet", hint="run `postergenre extract`")
        parts: list[tuple[dict[str, int], np.ndarray, list[str]]] = []
        row_paths: dict[str, str] = {}
        for name in names:
            feature_names = list(self.manifest(name)["feature_names"])
            table = self.read_rows(name)
            table = table.filter(pc.equal(table["status"], OK))
            ids = table["poster_id"].to_pylist()
            for pid, p in zip(ids, table["path"].to_pylist(), strict=True):
                row_paths.setdefault(pid, p)
            if len(ids):
                X = np.column_stack(
                    [table[c].to_numpy(zero_copy_only=False) for c in feature_names]
                ).astype(np.float32, copy=False)
            else:
                X = np.zeros((0, len(feature_names)), dtype=np.float32)
            parts.append(({pid: i for i, pid in enumerate(ids)}, X, feature_names))
        common = set(parts[0][0])
        for rows, _, _ in parts[1:]:
            common &= set(rows)
        ids = sorted(common)
        blocks = []
        for rows, X, _ in parts:
            take = np.fromiter((rows[i] for i in ids), dtype=np.int64, count=len(ids))
            blocks.append(X[take])
        X_all = np.ascontiguousarray(
            np.hstack(blocks) if blocks else np.zeros((len(ids), 0)), dtype=np.float32
        )
        first_path = self._first_paths()
        paths = [first_path.get(i, row_paths[i]) for i in ids]
        feature_names = [n for _, _, fn in parts for n in fn]
        return StoreData(
            ids=ids, paths=paths, X=X_all, feature_names=feature_names, extractors=names
        )

    def to_pandas(self, names: Sequence[str] | None = None) -> pd.DataFrame:
        """``load`` as a DataFrame indexed by ``poster_id``, with a ``path`` column first."""
        import pandas as pd

        data = self.load(names)
        frame = pd.DataFrame(
            data.X, index=pd.Index(data.ids, name="poster_id"), columns=data.feature_names
        )
        frame.insert(0, "path", data.paths)
        return frame

    def failures(self) -> list[Failure]:
        """Every row that is not ok, in every extractor, of a poster the index still knows."""
        import pyarrow.compute as pc

        known = set(self._id_paths())
        out: list[Failure] = []
        for name in self.extractors():
            table = self.read_rows(name, columns=META_COLUMNS)
            table = table.filter(pc.not_equal(table["status"], OK))
            for pid, p, status, error in zip(
                *(table[c].to_pylist() for c in META_COLUMNS), strict=True
            ):
                # A file changed since: its old id is no poster any more.
                if known and pid not in known:
                    continue
                out.append(Failure(pid, p, name, status, error or ""))
        out.sort(key=lambda f: (f.path, f.extractor))
        return out

    def index(self) -> dict[str, str]:
        """path -> poster_id for every file any run has seen (absolute paths)."""
        return {row.path: row.poster_id for row in self.read_index()}

    def lookup(self, paths: Sequence[str | os.PathLike[str]]) -> list[str | None]:
        """poster_id of each path (None when the store has never seen it)."""
        index = self.index()
        return [index.get(os.path.abspath(os.fspath(p))) for p in paths]

    def info(self) -> dict[str, Any]:
        """A summary: per extractor version, config, features, rows ok/failed by kind."""
        import pyarrow.compute as pc

        plan = self.read_plan()
        n_shards = len(set(plan.values()))
        extractors: dict[str, Any] = {}
        for name in self.extractors():
            manifest = self.manifest(name)
            table = self.read_rows(name, columns=["poster_id", "status"])
            counts = pc.value_counts(table["status"]).to_pylist()
            by_status = {c["values"]: c["counts"] for c in counts}
            ok = by_status.pop(OK, 0)
            extractors[name] = {
                "version": manifest["version"],
                "config": manifest["config"],
                "features": len(manifest["feature_names"]),
                "rows": table.num_rows,
                "ok": ok,
                "failed": sum(by_status.values()),
                "failed_by_kind": dict(sorted(by_status.items())),
                "shards_done": len(self.done_shards(name)),
                "shards_planned": n_shards,
                "created": manifest.get("created"),
                "libraries": manifest.get("libraries", {}),
            }
        return {
            "store": str(self.path),
            "paths": len(self.read_index()),
            "posters": len(plan),
            "shards": n_shards,
            "extractors": extractors,
        }

    # -- plan and index (written by the runner) -------------------------------------
    def read_plan(self) -> dict[str, int]:
        """poster_id -> shard number."""
        import pyarrow.parquet as pq

        path = self.path / _PLAN_FILE
        if not path.is_file():
            return {}
        table = pq.read_table(path)
        return dict(zip(table["poster_id"].to_pylist(), table["shard"].to_pylist(), strict=True))

    def write_plan(self, plan: dict[str, int]) -> None:
        import pyarrow as pa

        ids = sorted(plan, key=lambda i: (plan[i], i))
        table = pa.table(
            {
                "poster_id": pa.array(ids, pa.string()),
                "shard": pa.array([plan[i] for i in ids], pa.int32()),
            }
        )
        self._write_parquet(self.path / _PLAN_FILE, table)

    def index_table(self) -> pa.Table:
        """The index as a table: ``path``, ``poster_id``, ``size``, ``mtime_ns`` (columnar,
        for catalogue-sized stores; :meth:`read_index` gives Python rows)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.path / _INDEX_FILE
        if not path.is_file():
            return pa.table(
                {
                    "path": pa.array([], pa.string()),
                    "poster_id": pa.array([], pa.string()),
                    "size": pa.array([], pa.int64()),
                    "mtime_ns": pa.array([], pa.int64()),
                }
            )
        return pq.read_table(path)

    def plan_table(self) -> pa.Table:
        """The plan as a table: ``poster_id``, ``shard`` (see :meth:`read_plan`)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.path / _PLAN_FILE
        if not path.is_file():
            return pa.table(
                {"poster_id": pa.array([], pa.string()), "shard": pa.array([], pa.int32())}
            )
        return pq.read_table(path)

    def read_index(self) -> list[IndexRow]:
        import pyarrow.parquet as pq

        path = self.path / _INDEX_FILE
        if not path.is_file():
            return []
        t = pq.read_table(path)
        return [
            IndexRow(*row)
            for row in zip(
                t["path"].to_pylist(),
                t["poster_id"].to_pylist(),
                t["size"].to_pylist(),
                t["mtime_ns"].to_pylist(),
                strict=True,
            )
        ]

    def write_index(self, rows: Sequence[IndexRow]) -> None:
        import pyarrow as pa

        rows = sorted(rows, key=lambda r: r.path)
        table = pa.table(
            {
                "path": pa.array([r.path for r in rows], pa.string()),
                "poster_id": pa.array([r.poster_id for r in rows], pa.string()),
                "size": pa.array([r.size for r in rows], pa.int64()),
                "mtime_ns": pa.array([r.mtime_ns for r in rows], pa.int64()),
            }
        )
        self._write_parquet(self.path / _INDEX_FILE, table)

    def _id_paths(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for row in self.read_index():
            out.setdefault(row.poster_id, []).append(row.path)
        for paths in out.values():
            paths.sort()
        return out

    def _first_paths(self) -> dict[str, str]:
        return {pid: paths[0] for pid, paths in self._id_paths().items()}

    # -- writing (used by the runner, under ``writing()``) ---------------------------
    @contextlib.contextmanager
    def writing(self) -> Iterator[FeatureStore]:
        """Hold the store's write lock; clear temporary files a killed run left behind."""
        lock_path = self.path / ".lock"
        with open(lock_path, "a+") as fh:
            try:
                import fcntl
            except ImportError:  # Windows: no advisory lock; one writer is on the user
                fcntl = None  # type: ignore[assignment]
            if fcntl is not None:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    raise StoreError(
                        f"another run is writing to {self.path}",
                        hint="wait for it to finish, or stop it; a later run resumes its work",
                    ) from None
            try:
                self._clean_temp()
                yield self
            finally:
                if fcntl is not None:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _clean_temp(self) -> None:
        for p in [*self.path.glob(f"*{_TMP_MARK}*"), *self.path.glob(f"*/*{_TMP_MARK}*")]:
            with contextlib.suppress(OSError):
                p.unlink()

    def prepare_extractor(self, description: dict[str, Any], overwrite: bool) -> bool:
        """Check (or, with ``overwrite``, clear) the stored data of one extractor.

        ``description`` is :meth:`Extractor.describe`. Returns True when the extractor's
        folder holds data made with the same version and config. Raises StoreError naming
        what differs when it was made otherwise and ``overwrite`` is False.
        """
        name = description["extractor"]
        folder = self.path / name
        manifest_path = folder / _MANIFEST
        if overwrite and folder.exists():
            shutil.rmtree(folder)
        if not manifest_path.is_file():
            return False
        stored = json.loads(manifest_path.read_text())
        diffs = manifest_differences(stored, description)
        if diffs and not self.done_shards(name):
            # Nothing was computed with the old setup (a run stopped while loading): there
            # is nothing to protect, so the new setup simply takes its place.
            shutil.rmtree(folder)
            return False
        if diffs:
            raise StoreError(
                f"{self.path} holds {name} features made with another setup: " + "; ".join(diffs),
                hint=f"use --mode overwrite to rebuild {name}, or another --out",
            )
        return True

    def write_manifest(self, description: dict[str, Any], libraries: dict[str, str]) -> None:
        folder = self.path / description["extractor"]
        folder.mkdir(exist_ok=True)
        if (folder / _MANIFEST).is_file():
            return
        _write_json(
            folder / _MANIFEST,
            {**_jsonable(description), "libraries": libraries, "created": _now()},
        )

    def write_shard(
        self,
        name: str,
        shard: int,
        ids: Sequence[str],
        paths: Sequence[str],
        statuses: Sequence[str],
        errors: Sequence[str],
        features: np.ndarray,
        feature_names: Sequence[str],
        stats: dict[str, Any],
    ) -> None:
        """Write one shard of ``name``, then its done file (the completion marker)."""
        import pyarrow as pa

        n = len(ids)
        if features.shape != (n, len(feature_names)):
            raise ValueError(
                f"features {features.shape} for {n} rows of {len(feature_names)} features"
            )
        failed = np.array([s != OK for s in statuses], dtype=bool)
        columns: dict[str, pa.Array] = {
            "poster_id": pa.array(list(ids), pa.string()),
            "path": pa.array(list(paths), pa.string()),
            "status": pa.array(list(statuses), pa.string()),
            "error": pa.array([e or None for e in errors], pa.string()),
        }
        feats = np.asarray(features, dtype=np.float32)
        for j, fname in enumerate(feature_names):
            columns[fname] = pa.array(feats[:, j], pa.float32(), mask=failed)
        (self.path / name).mkdir(exist_ok=True)
        self._write_parquet(self.shard_file(name, shard), pa.table(columns))
        _write_json(self.done_file(name, shard), stats)

    def _write_parquet(self, path: Path, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        tmp = path.with_name(f"{path.name}{_TMP_MARK}{os.getpid()}")
        pq.write_table(table, tmp)
        _fsync_replace(tmp, path)


def manifest_differences(
    stored: dict[str, Any], wanted: dict[str, Any], degrade: bool = True
) -> list[str]:
    """What differs between a stored manifest and an extractor's description.

    ``input`` (the canonical input scale) is part of it; absent means the native scale.
    So is ``degrade`` (a store of degraded copies for training augmentation), unless
    ``degrade`` is False (a model may be scored on degraded copies of its posters).
    """
    from postergenre.input_scale import NATIVE, InputScale

    stored, wanted = _jsonable(stored), _jsonable(wanted)
    diffs = []
    if stored.get("version") != wanted.get("version"):
        diffs.append(
            f"version {stored.get('version')!r} in the store, {wanted.get('version')!r} now"
        )
    s_cfg, w_cfg = stored.get("config") or {}, wanted.get("config") or {}
    for key in sorted(set(s_cfg) | set(w_cfg)):
        old, new = s_cfg.get(key, "<absent>"), w_cfg.get(key, "<absent>")
        if old != new:
            diffs.append(f"config {key}={old!r} in the store, {new!r} now")
    s_in, w_in = stored.get("input", NATIVE), wanted.get("input", NATIVE)
    if s_in != w_in:
        diffs.append(
            f"input scale {InputScale.from_record(s_in)} in the store, "
            f"{InputScale.from_record(w_in)} now"
        )
    if degrade and stored.get("degrade") != wanted.get("degrade"):
        diffs.append(
            f"degraded copies {stored.get('degrade') or 'none'} in the store, "
            f"{wanted.get('degrade') or 'none'} now"
        )
    if not diffs and stored.get("feature_names") != wanted.get("feature_names"):
        s_names, w_names = stored.get("feature_names") or [], wanted.get("feature_names") or []
        diffs.append(f"feature names differ ({len(s_names)} in the store, {len(w_names)} now)")
    return diffs


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f"{path.name}{_TMP_MARK}{os.getpid()}")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.write("\n")
    _fsync_replace(tmp, path)


def _fsync_replace(tmp: Path, path: Path) -> None:
    # fsync before the rename: after a crash the name points at complete bytes, not at a
    # file whose data never reached the disk.
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
