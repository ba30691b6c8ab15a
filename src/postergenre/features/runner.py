"""Extraction runs: poster files -> feature store, resumable.

A run is reader -> workers -> writer:

1. scan: every input path gets its ``poster_id`` (sha256 of its bytes). The store's index
   remembers (path, size, mtime) -> id, so a rerun hashes only new or changed files.
2. plan: ids the store has never planned are sorted and cut into fixed-size shards,
   appended to the store's plan, which is written before any work. A shard's contents
   therefore never change, and a rerun finds exactly the (extractor, shard) pairs that
   have no done file.
3. work: worker processes read each poster once, check its hash and decode it
   (:func:`postergenre.images.decode_poster`); a bounded window of batches is decoded
   ahead while the main process, which holds the models, runs every pending extractor on
   the current batch. One decoded array serves all extractors.
4. write: when a shard's last batch is done, each extractor's rows are written (temp file,
   rename) and then its done file.

Per-poster failures are rows (status + error), never crashes: a run that completes has
done its job even when some posters are bad. A row records only what is the poster's
fault: a :class:`PosterError` (its ``kind`` is the status), raised while reading and
decoding or by an extractor, or a file that crashes the decoder by itself while the
decoder still reads a poster it made itself. Any other exception, in decoding or in an
extractor, is a fault of the code or of a library it uses: the run stops with an
:class:`ExtractionError` that names the extractor (or decoding) and the poster, before
the shard is written, so a rerun after the fix computes it. This holds for any batch
size, and :func:`decode_items` and :func:`extract_batch` are the rule for any engine.
``RunOptions(retry_failed=True)`` recomputes the failure rows of finished shards (for
posters a newer version may read).
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from postergenre.errors import ConfigError, PosterError, PosterGenreError
from postergenre.features.store import NOHASH_PREFIX, OK, FeatureStore, _IndexRow

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    from postergenre.features.base import Extractor
    from postergenre.input_scale import Degrade, InputScale

MODES = ("resume", "overwrite")
#: Libraries whose versions a manifest records, when the extractor imported them.
_LIBRARIES = (
    "numpy", "pyarrow", "PIL", "torch", "torchvision", "ultralytics", "cv2", "h5py",
    "safetensors", "scipy", "skimage", "sklearn",
)  # fmt: skip
_DIST_NAMES = {
    "PIL": "pillow",
    "cv2": "opencv-python-headless",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
}


class ExtractionError(PosterGenreError):
    """A run-level failure of an extraction run (not a bad poster)."""


#: Status of a decoded item whose reading or decoding raised something other than a
#: PosterError. Never written to a store: the run stops on it.
_FAULT = "fault"
#: What a fault message tells the user to do; the run resumes at the shard that stopped it.
_FAULT_HINT = (
    "this is a bug in postergenre or in a library it uses (a recent upgrade?), not a bad "
    "poster: fix it or go back to the library version that worked, then rerun the same "
    "command; the shards it stopped are not done and are computed then"
)


@dataclass(frozen=True)
class RunOptions:
    """How a run works; none of this changes the features it computes."""

    device: str = "auto"
    #: Posters per model call.
    batch_size: int = 32
    #: Decoding processes; 0 decodes in the main process. None: :func:`default_workers`.
    workers: int | None = None
    #: ``resume`` keeps finished shards; ``overwrite`` rebuilds the requested extractors.
    mode: str = "resume"
    #: Posters per shard (for shards this run plans; planned shards keep their size).
    shard_size: int = 512
    #: Batches decoded ahead of the one the models work on, per worker.
    prefetch: int = 2
    #: torch threads in the main process; None leaves torch's default.
    torch_threads: int | None = None
    #: Recompute the failure rows of finished shards (``resume`` keeps them otherwise).
    retry_failed: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode: expected one of {', '.join(MODES)}, got {self.mode!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size: expected >= 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"workers: expected >= 0, got {self.workers}")
        if self.shard_size < 1:
            raise ConfigError(f"shard size: expected >= 1, got {self.shard_size}")
        if self.prefetch < 1:
            raise ConfigError(f"prefetch: expected >= 1, got {self.prefetch}")


def default_workers() -> int:
    # Decoding a 160x236 poster takes a few ms against hundreds of ms of models on a CPU:
    # on 2 cores one worker keeps the models fed and leaves them the cores (measured in
    # benchmarks/extract.py: 1 worker beat 0 and 2). Bigger machines feed a GPU: up to 4.
    return max(1, min(4, (os.cpu_count() or 1) // 2))


class RunObserver:
    """Hooks a run calls as it goes (progress display); the defaults do nothing.

    Any object with these methods will do (the CLI's display does not inherit).
    """

    def scanning(self, n_paths: int) -> None: ...
    def scanned(self, n_paths: int, n_ids: int, n_hashed: int) -> None: ...
    def loading(self, names: Sequence[str]) -> None: ...
    def started(self, total: int, shards_todo: int, shards_done: int) -> None: ...
    def advanced(self, n: int, failed: int) -> None: ...
    def shard_written(self, shard: int, names: Sequence[str]) -> None: ...


@dataclass
class RunSummary:
    """What a run did, and the state of its posters in the store afterwards."""

    store: str
    extractors: list[str]
    paths: int
    posters: int
    ok: int
    failed: int
    failed_by_kind: dict[str, int]
    #: One entry per failing (path, extractor): path, poster_id, extractor, status, error.
    failures: list[dict[str, str]]
    computed: int
    shards_computed: int
    shards_skipped: int
    seconds: dict[str, float]
    posters_per_s: float
    device: str | None = None
    workers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Decoded:
    poster_id: str
    status: str
    error: str
    image: np.ndarray | None


@dataclass
class _Batch:
    shard: int
    items: list[tuple[str, str]]  # (poster_id, path)
    names: tuple[str, ...]  # extractors to run on it
    last: bool  # last batch of its shard
    #: Recomputes some rows of a done shard (retry): merged into it when written.
    merge: bool = False


# -- workers ---------------------------------------------------------------------------
def _worker_init() -> None:
    import signal
    import threading

    # Ctrl-C goes to the whole process group; the main process alone decides what to do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker waits on its task queue forever, even once the main process is gone
    # (kill -9): it must notice by itself, or every killed run leaves orphans behind.
    threading.Thread(target=_exit_with_parent, daemon=True).start()


def _exit_with_parent() -> None:
    import multiprocessing as mp

    parent = mp.parent_process()
    if parent is None:
        return
    # The parent's sentinel is a pipe the main process holds open: it reads EOF the moment
    # that process dies, even while it lingers as an unreaped zombie (a pid check would not).
    parent.join()
    os._exit(1)


def decode_items(items: Sequence[tuple[str, str]]) -> tuple[list[_Decoded], float]:
    """Read, hash-check and decode posters; one result per item. Runs in the workers."""
    from postergenre.images import decode_poster, read_bytes

    start = time.perf_counter()
    out = []
    for poster_id, path in items:
        try:
            data = read_bytes(path)
            if poster_id.startswith(NOHASH_PREFIX) or hashlib.sha256(data).hexdigest() != poster_id:
                raise PosterError(
                    path, "changed", "the file changed during the run", "run the same command again"
                )
            out.append(_Decoded(poster_id, OK, "", decode_poster(data, name=path)))
        except PosterError as exc:
            out.append(_Decoded(poster_id, exc.kind, exc.message, None))
        except Exception as exc:
            # A bug here or in a library (PIL, numpy), not a bad poster: recorded as the
            # poster's it would be skipped by every resume. The main process stops on it.
            out.append(_Decoded(poster_id, _FAULT, _describe_fault(exc), None))
    return out, time.perf_counter() - start


def check_decoded(items: Sequence[tuple[str, str]], decoded: Sequence[_Decoded]) -> None:
    """Raise ExtractionError when decoding any of ``items`` failed by a fault of the code."""
    for (_, path), d in zip(items, decoded, strict=True):
        if d.status == _FAULT:
            raise ExtractionError(
                f"decoding {path} failed with {d.error}; the run stopped before writing "
                "its shard, and no poster was recorded as bad",
                hint=_FAULT_HINT,
            )


def _decoder_works() -> bool:
    """Decode posters made here, in each format a catalogue mostly holds (runs in a
    worker): whether the decoder itself works, to tell a file that crashes it from a
    decoder that crashes on everything."""
    from PIL import Image

    from postergenre.images import decode_poster

    pixels = np.zeros((48, 32, 3), dtype=np.uint8)
    pixels[:, :, 0] = np.arange(48, dtype=np.uint8)[:, None] * 5
    for fmt in ("JPEG", "PNG"):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format=fmt)
        decode_poster(buf.getvalue(), name=f"<control {fmt}>")
    return True


# -- the run ---------------------------------------------------------------------------
def run_extraction(
    paths: Sequence[str],
    out: str | os.PathLike[str],
    extractors: Sequence[str | Extractor],
    options: RunOptions | None = None,
    observer: RunObserver | Any = None,
    scale: InputScale | None = None,
    degrade: Degrade | None = None,
) -> RunSummary:
    """Extract ``extractors`` for the poster files ``paths`` into the store at ``out``.

    ``paths`` are poster files (see :func:`postergenre.features.inputs.discover`);
    ``extractors`` are registry names or built :class:`Extractor` objects (for configs).
    Every decoded poster is first brought to ``scale`` (default: the canonical
    :data:`~postergenre.input_scale.DEFAULT_SCALE`), which each manifest records.
    Returns the run's summary; raises StoreError for a store made with another extractor
    version, config or input scale (unless ``options.mode == "overwrite"``).
    """
    from postergenre.features import get_extractor
    from postergenre.input_scale import DEFAULT_SCALE

    scale = DEFAULT_SCALE if scale is None else scale

    options = options or RunOptions()
    observer = observer or RunObserver()
    exts = [get_extractor(e) if isinstance(e, str) else e for e in extractors]
    names = [e.name for e in exts]
    if not exts:
        raise ConfigError("no extractors asked for")
    if len(set(names)) != len(names):
        raise ConfigError(f"extractors: each at most once, got {names}")
    t_start = time.perf_counter()
    paths = sorted({os.path.abspath(p) for p in paths})
    store = FeatureStore(out, create=True)
    with store.writing():
        descriptions = {e.name: {**e.describe(), "input": scale.to_record()} for e in exts}
        if degrade is not None:
            # A store of degraded copies (training augmentation) is never mixed with one
            # of the posters as they are.
            for d in descriptions.values():
                d["degrade"] = degrade.to_record()
        for e in exts:
            store.prepare_extractor(descriptions[e.name], overwrite=options.mode == "overwrite")

        observer.scanning(len(paths))
        t0 = time.perf_counter()
        path_ids, n_hashed = _scan(store, paths)
        run_ids = sorted(set(path_ids.values()))
        observer.scanned(len(paths), len(run_ids), n_hashed)
        plan = _extend_plan(store, run_ids, options.shard_size)
        scan_seconds = time.perf_counter() - t0

        # The path of an id's row: its first path in this run, else the first one known.
        id_path: dict[str, str] = {}
        for p in paths:  # sorted
            id_path.setdefault(path_ids[p], p)
        known_paths = store._first_paths()
        by_shard: dict[int, list[str]] = {}
        for pid, shard in plan.items():
            by_shard.setdefault(shard, []).append(pid)
        touched = sorted({plan[i] for i in run_ids})
        jobs: list[tuple[int, tuple[str, ...]]] = []
        for shard in touched:
            todo = tuple(n for n in names if not store.is_done(n, shard))
            if todo:
                jobs.append((shard, todo))
        retries = _failed_to_retry(store, names, touched, run_ids) if options.retry_failed else []
        total = sum(len(by_shard[s]) for s, _ in jobs) + sum(len(ids) for _, _, ids in retries)
        computed_shards = sorted({s for s, _ in jobs} | {s for s, _, _ in retries})

        seconds: dict[str, float] = {"scan": scan_seconds, "decode": 0.0}
        seconds.update({n: 0.0 for n in names})
        device = None
        workers = default_workers() if options.workers is None else options.workers
        if jobs or retries:
            batches = _make_batches(jobs, by_shard, id_path, known_paths, options.batch_size)
            batches += _retry_batches(retries, id_path, known_paths, options.batch_size)
            pipeline = _Pipeline(
                store,
                {e.name: e for e in exts},
                workers,
                options,
                observer,
                seconds,
                scale,
                degrade,
            )
            try:
                # Workers start and decode the first batches while the models load.
                pipeline.start(batches)
                needed = {n for _, todo in jobs for n in todo}
                needed |= {n for _, todo, _ in retries for n in todo}
                observer.loading([n for n in names if n in needed])
                t0 = time.perf_counter()
                for e in exts:
                    if e.name in needed:
                        e.load(options.device)
                        device = e.device
                seconds["load"] = time.perf_counter() - t0
                _set_torch_threads(options.torch_threads)
                libraries = _library_versions()
                for e in exts:
                    if e.name in needed:
                        store.write_manifest(descriptions[e.name], libraries)
                observer.started(total, len(computed_shards), len(touched) - len(computed_shards))
                t0 = time.perf_counter()
                pipeline.run()
                seconds["work"] = time.perf_counter() - t0
            finally:
                pipeline.close()
        else:
            observer.started(0, 0, len(touched))
        seconds["total"] = time.perf_counter() - t_start
        return _summarise(
            store, names, paths, path_ids, touched, computed_shards, total, seconds, device,
            workers,
        )  # fmt: skip


def _scan(store: FeatureStore, paths: Sequence[str]) -> tuple[dict[str, str], int]:
    """path -> poster_id, hashing only files the index does not know unchanged."""
    cached = {row.path: row for row in store.read_index()}
    result: dict[str, str] = {}
    rows: dict[str, _IndexRow] = {}
    to_hash: list[tuple[str, int, int]] = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            to_hash.append((p, -1, -1))
            continue
        row = cached.get(p)
        if (
            row is not None
            and row.size == st.st_size
            and row.mtime_ns == st.st_mtime_ns
            and row.size >= 0
        ):
            result[p] = row.poster_id
            rows[p] = row
        else:
            to_hash.append((p, st.st_size, st.st_mtime_ns))
    if to_hash:
        # Hashing is file I/O plus sha256 (which releases the GIL): threads suffice.
        with ThreadPoolExecutor(max_workers=8) as pool:
            for (p, size, mtime), pid in zip(
                to_hash, pool.map(_hash_file, [t[0] for t in to_hash]), strict=True
            ):
                if pid.startswith(NOHASH_PREFIX):
                    size, mtime = -1, -1  # never trusted: rescanned next time
                result[p] = pid
                rows[p] = _IndexRow(p, pid, size, mtime)
    merged = {**cached, **rows}
    store.write_index(list(merged.values()))
    return result, len(to_hash)


def _hash_file(path: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    except OSError:
        # No bytes, no content id: the id comes from the path, and decoding reports why.
        return NOHASH_PREFIX + hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()
    return h.hexdigest()


def _extend_plan(store: FeatureStore, run_ids: Sequence[str], shard_size: int) -> dict[str, int]:
    plan = store.read_plan()
    new = [i for i in run_ids if i not in plan]  # run_ids is sorted
    if new:
        next_shard = max(plan.values(), default=-1) + 1
        for k, pid in enumerate(new):
            plan[pid] = next_shard + k // shard_size
        store.write_plan(plan)
    return plan


def _make_batches(
    jobs: Sequence[tuple[int, tuple[str, ...]]],
    by_shard: dict[int, list[str]],
    id_path: dict[str, str],
    known_paths: dict[str, str],
    batch_size: int,
) -> list[_Batch]:
    batches = []
    for shard, todo in jobs:
        ids = sorted(by_shard[shard])
        items = [(i, id_path.get(i) or known_paths.get(i, "")) for i in ids]
        for k in range(0, len(items), batch_size):
            chunk = items[k : k + batch_size]
            batches.append(_Batch(shard, chunk, todo, last=k + batch_size >= len(items)))
    return batches


def _failed_to_retry(
    store: FeatureStore, names: Sequence[str], shards: Sequence[int], run_ids: Sequence[str]
) -> list[tuple[int, tuple[str, ...], list[str]]]:
    """(shard, extractors, poster ids): the failure rows of this run's posters in done
    shards, grouped so that posters failed in several extractors are decoded once."""
    wanted = set(run_ids)
    out = []
    for shard in shards:
        by_ids: dict[tuple[str, ...], list[str]] = {}
        for name in names:
            if not store.is_done(name, shard):
                continue  # computed in full anyway
            stats = store.shard_stats(name, shard)
            if stats.get("failed_by_kind") == {} and stats.get("ok") == stats.get("rows"):
                continue  # nothing failed: no need to read the shard
            table = store.read_rows(name, columns=["poster_id", "status"], shards=[shard])
            failed = tuple(
                sorted(
                    pid
                    for pid, status in zip(
                        table["poster_id"].to_pylist(), table["status"].to_pylist(), strict=True
                    )
                    if status != OK and pid in wanted
                )
            )
            if failed:
                by_ids.setdefault(failed, []).append(name)
        for ids, todo in sorted(by_ids.items()):
            out.append((shard, tuple(todo), list(ids)))
    return out


def _retry_batches(
    retries: Sequence[tuple[int, tuple[str, ...], list[str]]],
    id_path: dict[str, str],
    known_paths: dict[str, str],
    batch_size: int,
) -> list[_Batch]:
    batches = []
    for shard, todo, ids in retries:
        items = [(i, id_path.get(i) or known_paths.get(i, "")) for i in ids]
        for k in range(0, len(items), batch_size):
            chunk = items[k : k + batch_size]
            last = k + batch_size >= len(items)
            batches.append(_Batch(shard, chunk, todo, last=last, merge=True))
    return batches


class _ShardRows:
    """Rows of one shard for one extractor, gathered batch by batch."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.paths: list[str] = []
        self.statuses: list[str] = []
        self.errors: list[str] = []
        self.blocks: list[np.ndarray] = []
        self.seconds = 0.0


class _Pipeline:
    def __init__(
        self,
        store: FeatureStore,
        extractors: dict[str, Extractor],
        workers: int,
        options: RunOptions,
        observer: RunObserver,
        seconds: dict[str, float],
        scale: InputScale,
        degrade: Degrade | None = None,
    ) -> None:
        self.store = store
        self.scale = scale
        self.degrade = degrade
        self.extractors = extractors
        self.workers = workers
        self.options = options
        self.observer = observer
        self.seconds = seconds
        self.rows: dict[str, _ShardRows] = {}
        self.pool: ProcessPoolExecutor | None = None

    def start(self, batches: list[_Batch]) -> None:
        """Start the workers and queue the first batches (before the models load)."""
        self.todo = iter(batches)
        self.pending: deque[tuple[_Batch, Future[tuple[list[_Decoded], float]]]] = deque()
        if self.workers > 0:
            self.pool = self._new_pool()
            self._fill()

    def _fill(self) -> None:
        assert self.pool is not None
        while len(self.pending) < self.workers * (1 + self.options.prefetch):
            nxt = next(self.todo, None)
            if nxt is None:
                break
            self.pending.append((nxt, self.pool.submit(decode_items, nxt.items)))

    def run(self) -> None:
        if self.pool is None:
            for batch in self.todo:
                decoded, secs = decode_items(batch.items)
                self.seconds["decode"] += secs
                check_decoded(batch.items, decoded)
                self._process(batch, decoded)
            return
        while self.pending:
            batch, future = self.pending.popleft()
            self._fill()  # keep the workers busy while the models run on this batch
            decoded = self._result(batch, future, self.pending)
            check_decoded(batch.items, decoded)
            self._process(batch, decoded)
            self._fill()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def _new_pool(self) -> ProcessPoolExecutor:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # fork is unsafe with torch threads in the parent; forkserver forks from a clean,
        # small server process (spawn where there is none).
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(["postergenre.features.runner", "postergenre.images"])
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=ctx,
            initializer=_worker_init,
        )

    def _result(
        self,
        batch: _Batch,
        future: Future[tuple[list[_Decoded], float]],
        pending: deque[tuple[_Batch, Future[tuple[list[_Decoded], float]]]],
    ) -> list[_Decoded]:
        from concurrent.futures.process import BrokenProcessPool

        try:
            decoded, secs = future.result()
            self.seconds["decode"] += secs
            return decoded
        except BrokenProcessPool:
            pass
        # A worker died (a decoder crash, or the OOM killer): find the poster that kills
        # it by decoding one at a time, then resubmit what was queued on the dead pool.
        assert self.pool is not None
        self.pool.shutdown(wait=False, cancel_futures=True)
        decoded = []
        for item in batch.items:
            self.pool = self._new_pool()
            try:
                result, secs = self.pool.submit(decode_items, [item]).result()
                self.seconds["decode"] += secs
                decoded.extend(result)
            except BrokenProcessPool:
                decoded.append(
                    _Decoded(
                        item[0], "crashed", f"{item[1]}: the decoder crashed on this file", None
                    )
                )
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = self._new_pool()
                self._check_decoder(item[1])
        resubmitted = [(b, self.pool.submit(decode_items, b.items)) for b, _ in pending]
        pending.clear()
        pending.extend(resubmitted)
        return decoded

    def _check_decoder(self, path: str) -> None:
        """After ``path`` crashed a worker by itself: stop unless the decoder still reads
        posters it made itself (else every poster would be recorded as crashed)."""
        from concurrent.futures.process import BrokenProcessPool

        assert self.pool is not None
        try:
            self.pool.submit(_decoder_works).result()
            return
        except BrokenProcessPool:
            why = "crashes on posters it made itself too"
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new_pool()
        except Exception as exc:
            why = f"fails on posters it made itself too ({_describe(exc)})"
        raise ExtractionError(
            f"the decoder crashed on {path}, and {why}: the decoder is broken, not the "
            "posters; the run stopped before writing this shard",
            hint=_FAULT_HINT,
        )

    def _process(self, batch: _Batch, decoded: list[_Decoded]) -> None:
        ok = [k for k, d in enumerate(decoded) if d.status == OK]
        if self.degrade is not None:
            images = [
                self.degrade.apply(decoded[k].image, decoded[k].poster_id, self.scale)  # type: ignore[arg-type]
                for k in ok
            ]
        else:
            images = [self.scale.apply(decoded[k].image) for k in ok]  # type: ignore[arg-type]
        paths = [p for _, p in batch.items]
        failed = {k for k, d in enumerate(decoded) if d.status != OK}
        for name in batch.names:
            ext = self.extractors[name]
            d = len(ext.feature_names())
            feats = np.full((len(decoded), d), np.nan, dtype=np.float32)
            statuses = [x.status for x in decoded]
            errors = [x.error for x in decoded]
            t0 = time.perf_counter()
            if images:
                values, errs = extract_batch(
                    ext,
                    images,  # type: ignore[arg-type]
                    [paths[k] for k in ok],
                )
                for k, row, err in zip(ok, values, errs, strict=True):
                    if err is None:
                        feats[k] = row
                    else:
                        statuses[k], errors[k] = err.kind, f"{paths[k]}: {name}: {err.message}"
                        failed.add(k)
            secs = time.perf_counter() - t0
            self.seconds[name] += secs
            acc = self.rows.setdefault(name, _ShardRows())
            acc.ids.extend(pid for pid, _ in batch.items)
            acc.paths.extend(paths)
            acc.statuses.extend(statuses)
            acc.errors.extend(errors)
            acc.blocks.append(feats)
            acc.seconds += secs
        self.observer.advanced(len(decoded), len(failed))
        if batch.last:
            self._write(batch.shard, batch.names, merge=batch.merge)

    def _write(self, shard: int, names: Sequence[str], merge: bool = False) -> None:
        for name in names:
            acc = self.rows.pop(name)
            ext = self.extractors[name]
            if merge:
                acc = self._merged(name, shard, acc)
            counts: dict[str, int] = {}
            for s in acc.statuses:
                counts[s] = counts.get(s, 0) + 1
            stats = {
                "extractor": name,
                "version": ext.version,
                "shard": shard,
                "rows": len(acc.ids),
                "ok": counts.pop(OK, 0),
                "failed_by_kind": dict(sorted(counts.items())),
                "seconds": round(acc.seconds, 3),
                "ids_sha256": hashlib.sha256("\n".join(acc.ids).encode()).hexdigest(),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            self.store.write_shard(
                name, shard, acc.ids, acc.paths, acc.statuses, acc.errors,
                np.concatenate(acc.blocks), ext.feature_names(), stats,
            )  # fmt: skip
        self.observer.shard_written(shard, names)

    def _merged(self, name: str, shard: int, new: _ShardRows) -> _ShardRows:
        """The done shard's rows, with those of ``new`` in place of their old rows."""
        table = self.store.read_rows(name, shards=[shard])
        old_X = np.column_stack(
            [table[c].to_numpy(zero_copy_only=False) for c in self.extractors[name].feature_names()]
        ).astype(np.float32)  # failure rows are null: NaN here
        new_X = np.concatenate(new.blocks)
        replaced = {pid: j for j, pid in enumerate(new.ids)}
        out = _ShardRows()
        out.seconds = new.seconds
        old = {c: table[c].to_pylist() for c in ("poster_id", "path", "status", "error")}
        rows = []
        for k, pid in enumerate(old["poster_id"]):
            j = replaced.get(pid)
            out.ids.append(pid)
            if j is None:
                out.paths.append(old["path"][k])
                out.statuses.append(old["status"][k])
                out.errors.append(old["error"][k] or "")
                rows.append(old_X[k])
            else:
                out.paths.append(new.paths[j])
                out.statuses.append(new.statuses[j])
                out.errors.append(new.errors[j])
                rows.append(new_X[j])
        out.blocks = [np.stack(rows)]
        return out


def extract_batch(
    ext: Extractor, images: Sequence[np.ndarray], paths: Sequence[str] | None = None
) -> tuple[np.ndarray, list[PosterError | None]]:
    """Run ``ext`` on a batch: (n, d) rows and, per poster, None or the PosterError that
    makes its row a failure row (NaN features).

    When the batch fails, it is retried poster by poster to find the bad ones. Only a
    :class:`PosterError` is the poster's fault; any other exception is the extractor's
    (or a library's), whatever the batch size, and raises ExtractionError naming the
    extractor and the poster (``paths``, for messages): recorded as the poster's, it would
    be skipped by every resume after the fix.
    """
    n = len(images)
    where = list(paths) if paths is not None else [f"image {k}" for k in range(n)]
    try:
        return ext.extract(images), [None] * n
    except PosterError as exc:
        if n == 1:
            return np.full((1, len(ext.feature_names())), np.nan, np.float32), [exc]
    except Exception as exc:
        if n == 1:
            raise _extractor_fault(ext, where[0], exc) from exc
    values = np.full((n, len(ext.feature_names())), np.nan, np.float32)
    errors: list[PosterError | None] = []
    for k, image in enumerate(images):
        try:
            values[k] = ext.extract([image])[0]
            errors.append(None)
        except PosterError as exc:
            errors.append(exc)
        except Exception as exc:
            raise _extractor_fault(ext, where[k], exc) from exc
    return values, errors


def _extractor_fault(ext: Extractor, path: str, exc: Exception) -> ExtractionError:
    return ExtractionError(
        f"extractor {ext.name} failed on {path} with {_describe_fault(exc)}; the run "
        "stopped before writing its shard, and no poster was recorded as bad",
        hint=_FAULT_HINT,
    )


def _describe_fault(exc: BaseException) -> str:
    """``Type: message (at file:line in function)``: where the fault was raised."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        where = f" (at {os.path.basename(last.filename)}:{last.lineno} in {last.name})"
    return f"{_describe(exc)}{where}"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _set_torch_threads(n: int | None) -> None:
    if n is None or "torch" not in sys.modules:
        return
    import torch

    torch.set_num_threads(max(1, n))


def _library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for mod in _LIBRARIES:
        if mod in sys.modules:
            try:
                out[mod] = metadata.version(_DIST_NAMES.get(mod, mod))
            except metadata.PackageNotFoundError:
                out[mod] = str(getattr(sys.modules[mod], "__version__", "?"))
    return out


def _summarise(
    store: FeatureStore,
    names: Sequence[str],
    paths: Sequence[str],
    path_ids: dict[str, str],
    touched: Sequence[int],
    computed_shards: Sequence[int],
    computed: int,
    seconds: dict[str, float],
    device: str | None,
    workers: int,
) -> RunSummary:
    run_ids = set(path_ids.values())
    status: dict[str, dict[str, tuple[str, str]]] = {}  # id -> extractor -> (status, error)
    for name in names:
        table = store.read_rows(name, columns=["poster_id", "status", "error"], shards=touched)
        for pid, s, err in zip(
            *(table[c].to_pylist() for c in ("poster_id", "status", "error")), strict=True
        ):
            if pid in run_ids:
                status.setdefault(pid, {})[name] = (s, err or "")
    ok_ids = {
        i for i in run_ids if all(status.get(i, {}).get(n, ("?", ""))[0] == OK for n in names)
    }
    failed_by_kind: dict[str, int] = {}
    for i in sorted(run_ids - ok_ids):
        kinds = {s for s, _ in status.get(i, {}).values() if s != OK} or {"not_done"}
        kind = sorted(kinds)[0]
        failed_by_kind[kind] = failed_by_kind.get(kind, 0) + 1
    failures = []
    for p in paths:
        pid = path_ids[p]
        if pid in ok_ids:
            continue
        seen = set()
        for name in names:
            s, err = status.get(pid, {}).get(name, ("not_done", "no row (the run did not finish)"))
            if s == OK or (s, err) in seen:
                continue  # a decode failure is the same for every extractor: say it once
            seen.add((s, err))
            failures.append(
                {"path": p, "poster_id": pid, "extractor": name, "status": s, "error": err}
            )
    work = seconds.get("work", 0.0)
    return RunSummary(
        store=os.path.abspath(store.path),
        extractors=list(names),
        paths=len(paths),
        posters=len(run_ids),
        ok=len(ok_ids),
        failed=len(run_ids) - len(ok_ids),
        failed_by_kind=dict(sorted(failed_by_kind.items())),
        failures=failures,
        computed=computed,
        shards_computed=len(computed_shards),
        shards_skipped=len(touched) - len(computed_shards),
        seconds={k: round(v, 3) for k, v in seconds.items()},
        posters_per_s=round(computed / work, 3) if work > 0 else 0.0,
        device=device,
        workers=workers,
    )


def iter_failures_text(summary: RunSummary, limit: int | None = None) -> Iterable[str]:
    """Human lines for a summary's failures (``limit`` of them, then a count)."""
    rows = summary.failures
    shown = rows if limit is None else rows[:limit]
    for f in shown:
        where = "" if f["status"] != "extract_error" else f" [{f['extractor']}]"
        yield f"{f['path']}: {f['status']}{where}: {_strip_path(f['error'], f['path'])}"
    if limit is not None and len(rows) > limit:
        more = len(rows) - limit
        yield f"... and {more} more (`postergenre store info {summary.store} --failures`)"


def _strip_path(message: str, path: str) -> str:
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message
