"""Extraction runs on Ray Data: the local engine's run, with the extractors in Ray actors.

:func:`run_extraction_ray` is :func:`~postergenre.features.runner.run_extraction` for a
catalogue that outgrows one machine. Everything that decides *what* is computed is the
local engine's own code: the scan (content ids), the append-only plan of shards, the
batches (the same posters in the same batches), which (extractor, shard) pairs are done,
the rule that a :class:`~postergenre.errors.PosterError` is a failure row while any other
exception is a fault of the code that stops the run (:func:`decode_items`,
:func:`check_decoded`, :func:`extract_batch`), the input scale, and the summary. Only
*where* it runs differs:

- driver (this process): scan, plan, write the store. Shards are written here, each as
  soon as all its rows are back, then its done file: a killed run leaves finished shards
  done and the others not, and the next run (local or Ray) computes only those.
- ``map_batches`` over one row per batch, with an actor class and
  ``compute=ray.data.ActorPoolStrategy(size=N)``: each actor loads the extractors once
  (``num_gpus`` per actor when the cluster has GPUs), decodes in a child process as the
  local engine's workers do (a file that crashes the decoder becomes a ``crashed`` row),
  and returns the rows of its batch.

The store must be a local or shared path that the driver can write; the poster files must
be readable at the same paths on every node (a shared file system). See the README's
"Catalogue scale" section for a cluster.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from postergenre.errors import ConfigError, PosterGenreError
from postergenre.features.runner import (
    _FAULT_HINT,
    ExtractionError,
    RunObserver,
    RunOptions,
    RunSummary,
    _Batch,
    _Decoded,
    _describe,
    _describe_fault,
    _extend_plan,
    _failed_to_retry,
    _library_versions,
    _make_batches,
    _retry_batches,
    _scan,
    _set_torch_threads,
    _summarise,
    check_decoded,
    decode_items,
    extract_batch,
)
from postergenre.store import OK, FeatureStore

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor
    from types import ModuleType

    from postergenre.features.base import Extractor
    from postergenre.input_scale import InputScale

ENGINES = ("local", "ray")
INSTALL_HINT = 'pip install "postergenre[ray]" (Ray Data; or pip install "ray[data]")'


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray run is; none of this changes the features it computes.

    ``address``: a running cluster (``ray://host:10001`` or ``host:6379``); None starts a
    local Ray (or joins the one ``RAY_ADDRESS`` names). ``actors``: how many extractor
    actors (default: one per ``gpus_per_actor`` GPUs when GPUs are used, else one per
    ``cpus_per_actor`` CPUs of the cluster).
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 1.0

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise ConfigError(f"ray actors: expected >= 1, got {self.actors}")
        if self.cpus_per_actor <= 0:
            raise ConfigError(f"ray CPUs per actor: expected > 0, got {self.cpus_per_actor}")
        if not 0 < self.gpus_per_actor <= 8:
            raise ConfigError(f"ray GPUs per actor: expected in (0, 8], got {self.gpus_per_actor}")


@dataclass(frozen=True)
class ActorPlan:
    """The actor pool a run asks Ray for: ``actors`` of ``num_cpus`` CPUs (or ``num_gpus``
    GPUs), whose extractors load on ``device``."""

    actors: int
    num_cpus: float
    num_gpus: float
    device: str


def plan_actors(
    resources: Mapping[str, float], device: str, options: RayOptions, batches: int
) -> ActorPlan:
    """The actor pool for a cluster with ``resources`` (``ray.cluster_resources()``).

    GPUs are used when the cluster has some and ``device`` is not ``cpu``: each actor then
    reserves ``gpus_per_actor`` of them (Ray gives it its own ``CUDA_VISIBLE_DEVICES``) and
    loads on ``cuda``; otherwise actors reserve CPUs and load on ``cpu`` (never on a GPU
    they did not reserve). No more actors than batches.
    """
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"device: expected auto, cpu or cuda, got {device!r}")
    cpus = float(resources.get("CPU", 0.0))
    gpus = float(resources.get("GPU", 0.0))
    if device.startswith("cuda") and gpus <= 0:
        raise ConfigError(
            f"device {device!r} asked for, but the Ray cluster has no GPU",
            hint="use --device cpu or --device auto, or add GPU nodes to the cluster",
        )
    use_gpus = gpus > 0 and device != "cpu"
    if use_gpus:
        per = options.gpus_per_actor
        fit = int(gpus // per)
    else:
        per = options.cpus_per_actor
        fit = int(cpus // per)
    if fit < 1 and options.actors is None:
        what = "GPU" if use_gpus else "CPU"
        have = gpus if use_gpus else cpus
        raise ConfigError(
            f"the Ray cluster has {have:g} {what}s: not enough for one actor of {per:g}",
            hint="lower the per-actor share, or add nodes",
        )
    actors = options.actors if options.actors is not None else fit
    actors = max(1, min(actors, max(batches, 1)))
    return ActorPlan(
        actors=actors,
        num_cpus=0.0 if use_gpus else options.cpus_per_actor,
        num_gpus=options.gpus_per_actor if use_gpus else 0.0,
        device="cuda" if use_gpus else "cpu",
    )


def require_ray() -> ModuleType:
    """The ``ray`` module with Ray Data, or ConfigError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"--engine ray needs Ray Data, which is not installed ({exc})", hint=INSTALL_HINT
        ) from None
    return ray


def map_batches_args(
    ray: ModuleType, plan: ActorPlan, actor_args: dict[str, Any]
) -> dict[str, Any]:
    """Keyword arguments of ``Dataset.map_batches`` for the extractor actors (the current
    API: an actor class with ``compute=ActorPoolStrategy``, resources as arguments)."""
    args: dict[str, Any] = {
        "fn_constructor_kwargs": actor_args,
        # One row is one batch of the plan: the actor sees exactly the local engine's batches.
        "batch_size": 1,
        "batch_format": "numpy",
        "compute": ray.data.ActorPoolStrategy(size=plan.actors),
    }
    if plan.num_gpus > 0:
        args["num_gpus"] = plan.num_gpus
    else:
        args["num_cpus"] = plan.num_cpus
    home = os.environ.get("POSTERGENRE_HOME")
    if home:
        # The weights cache: on a cluster, a folder every node sees (or the same path).
        args["runtime_env"] = {"env_vars": {"POSTERGENRE_HOME": home}}
    return args


# -- the actor -------------------------------------------------------------------------
def _x(name: str) -> str:
    return f"x.{name}"


def _status(name: str) -> str:
    return f"status.{name}"


def _error(name: str) -> str:
    return f"error.{name}"


class _ChildDecoder:
    """Decodes in a child process, as the local engine's workers do, so a file that
    crashes the decoder (a native library bug) becomes a ``crashed`` row, not a dead actor.

    The child is forked (not forkserver, which in a Ray worker leaves its resource
    tracker to die in arbitrary order at actor teardown, spamming the logs) and forked
    first thing in the actor, before any model starts threads; it only reads, hashes and
    decodes (PIL, numpy), nothing that threads. After a crash a new child is forked from
    the loaded actor: the rare path, and it still runs only the decoder.
    """

    def __init__(self) -> None:
        self.pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        self._renew()
        assert self.pool is not None
        self.pool.submit(os.getpid).result()  # fork now, while the actor has no model threads

    def _renew(self) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        from postergenre.features.runner import _worker_init

        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = ProcessPoolExecutor(
            max_workers=1, mp_context=mp.get_context("fork"), initializer=_worker_init
        )

    def decode(self, items: list[tuple[str, str]]) -> tuple[list[_Decoded], float]:
        from concurrent.futures.process import BrokenProcessPool

        if self.pool is None:
            self._renew()
        assert self.pool is not None
        try:
            return self.pool.submit(decode_items, items).result()
        except BrokenProcessPool:
            pass
        decoded: list[_Decoded] = []
        seconds = 0.0
        for item in items:  # find the file that kills the decoder
            self._renew()
            assert self.pool is not None
            try:
                result, secs = self.pool.submit(decode_items, [item]).result()
                decoded.extend(result)
                seconds += secs
            except BrokenProcessPool:
                decoded.append(
                    _Decoded(
                        item[0], "crashed", f"{item[1]}: the decoder crashed on this file", None
                    )
                )
                self._check_decoder(item[1])
        return decoded, seconds

    def _check_decoder(self, path: str) -> None:
        from concurrent.futures.process import BrokenProcessPool

        from postergenre.features.runner import _decoder_works

        self._renew()
        assert self.pool is not None
        try:
            self.pool.submit(_decoder_works).result()
            return
        except BrokenProcessPool:
            why = "crashes on posters it made itself too"
            self._renew()
        except Exception as exc:
            why = f"fails on posters it made itself too ({_describe(exc)})"
        raise ExtractionError(
            f"the decoder crashed on {path}, and {why}: the decoder is broken, not the "
            "posters; the run stopped before writing this shard",
            hint=_FAULT_HINT,
        )

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


class ExtractActor:
    """A Ray Data actor: the run's extractors, loaded once; one batch of posters per call.

    Never raises: a fault (a failed load, a fault of the code on a poster) comes back as
    the ``meta`` of the batch's first row, which stops the run on the driver with the
    message the local engine would give.
    """

    def __init__(
        self,
        extractors: list[Extractor],
        device: str,
        scale: InputScale,
        degrade: Any = None,
        torch_threads: int | None = None,
    ) -> None:
        self.extractors = {e.name: e for e in extractors}
        self.names = [e.name for e in extractors]
        self.dims = {e.name: len(e.feature_names()) for e in extractors}
        self.scale = scale
        self.degrade = degrade
        self.host = socket.gethostname()
        self.fault: tuple[str, str] | None = None
        self.loaded_in = 0.0
        self.device: str | None = None
        self.reported = False
        self.decoder = _ChildDecoder()
        t0 = time.perf_counter()
        try:
            self.decoder.start()
            for e in extractors:
                e.load(device)
                self.device = e.device
            _set_torch_threads(torch_threads)
        except PosterGenreError as exc:
            self.fault = (
                f"loading the extractors on Ray node {self.host}: {exc.message}",
                exc.hint,
            )
        except Exception as exc:
            self.fault = (
                f"loading the extractors on Ray node {self.host} failed with "
                f"{_describe_fault(exc)}",
                _FAULT_HINT,
            )
        self.loaded_in = time.perf_counter() - t0
        self.libraries = _library_versions()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        index = int(batch["batch"][0])
        ids = [str(i) for i in batch["ids"][0]]
        paths = [str(p) for p in batch["paths"][0]]
        names = [n for n in str(batch["names"][0]).split(",") if n]
        rows = self._empty(index, ids)
        meta: dict[str, Any] = {"batch": index, "seconds": {}}
        if not self.reported:
            meta.update(
                load=self.loaded_in, libraries=self.libraries, device=self.device, host=self.host
            )
            self.reported = True
        try:
            if self.fault is not None:
                raise ExtractionError(*self.fault)
            self._process(list(zip(ids, paths, strict=True)), names, rows, meta["seconds"])
        except PosterGenreError as exc:
            meta["fault"] = {"message": exc.message, "hint": exc.hint}
        except Exception as exc:  # a bug in this module: the run must stop, never record it
            meta["fault"] = {"message": f"a Ray worker failed with {_describe_fault(exc)}",
                             "hint": _FAULT_HINT}  # fmt: skip
        rows["meta"][0] = json.dumps(meta)
        return rows

    def _empty(self, index: int, ids: list[str]) -> dict[str, np.ndarray]:
        n = len(ids)
        rows: dict[str, np.ndarray] = {
            "batch": np.full(n, index, dtype=np.int64),
            "poster_id": np.array(ids, dtype=object),
            "meta": np.array([""] * n, dtype=object),
        }
        for name in self.names:
            rows[_status(name)] = np.array([""] * n, dtype=object)
            rows[_error(name)] = np.array([""] * n, dtype=object)
            rows[_x(name)] = np.full((n, self.dims[name]), np.nan, dtype=np.float32)
        return rows

    def _process(
        self,
        items: list[tuple[str, str]],
        names: list[str],
        rows: dict[str, np.ndarray],
        seconds: dict[str, float],
    ) -> None:
        """The local engine's per-batch work (``_Pipeline._process``), into ``rows``."""
        decoded, secs = self.decoder.decode(items)
        seconds["decode"] = secs
        check_decoded(items, decoded)
        ok = [k for k, d in enumerate(decoded) if d.status == OK]
        images = [self._prepare(decoded[k]) for k in ok]
        paths = [p for _, p in items]
        for name in names:
            ext = self.extractors[name]
            statuses = [d.status for d in decoded]
            errors = [d.error for d in decoded]
            feats = rows[_x(name)]
            t0 = time.perf_counter()
            if images:
                values, errs = extract_batch(ext, images, [paths[k] for k in ok])
                for k, row, err in zip(ok, values, errs, strict=True):
                    if err is None:
                        feats[k] = row
                    else:
                        statuses[k], errors[k] = err.kind, f"{paths[k]}: {name}: {err.message}"
            seconds[name] = time.perf_counter() - t0
            rows[_status(name)][:] = statuses
            rows[_error(name)][:] = errors

    def _prepare(self, d: _Decoded) -> np.ndarray:
        assert d.image is not None
        if self.degrade is not None:
            image: np.ndarray = self.degrade.apply(d.image, d.poster_id, self.scale)
            return image
        return self.scale.apply(d.image)

    def __del__(self) -> None:
        self.decoder.close()


# -- the driver ------------------------------------------------------------------------
@dataclass
class _Unit:
    """The batches of one (shard, extractors) job, written together when all are back."""

    shard: int
    names: tuple[str, ...]
    merge: bool
    ids: list[str]
    paths: list[str]
    got: int = 0


class _Collector:
    """Rows coming back from the actors, per unit; writes a unit's shard once complete."""

    def __init__(
        self,
        store: FeatureStore,
        extractors: dict[str, Extractor],
        batches: list[_Batch],
        observer: RunObserver | Any,
        seconds: dict[str, float],
        write_manifests: Any,
    ) -> None:
        self.store = store
        self.extractors = extractors
        self.observer = observer
        self.seconds = seconds
        self.write_manifests = write_manifests
        self.units: list[_Unit] = []
        self.unit_of: list[int] = []
        self.batch_names: list[tuple[str, ...]] = []
        current: _Unit | None = None
        for b in batches:
            if current is None:
                current = _Unit(b.shard, b.names, b.merge, [], [])
                self.units.append(current)
            current.ids.extend(pid for pid, _ in b.items)
            current.paths.extend(p for _, p in b.items)
            self.unit_of.append(len(self.units) - 1)
            self.batch_names.append(b.names)
            if b.last:
                current = None
        # unit -> extractor -> poster_id -> (status, error, features)
        self.rows: dict[int, dict[str, dict[str, tuple[str, str, np.ndarray]]]] = {}
        self.unit_seconds: dict[int, dict[str, float]] = {}
        self.load_seconds = 0.0
        self.device: str | None = None
        self.manifests_written = False
        #: When the first batch came back, and what it took in its actor.
        self.first_at: float | None = None
        self.first_batch_seconds = 0.0

    def add(self, block: dict[str, np.ndarray]) -> None:
        metas = [json.loads(m) for m in block["meta"] if m]
        for meta in metas:
            fault = meta.get("fault")
            if fault:
                raise ExtractionError(fault["message"], hint=fault.get("hint") or None)
        for meta in metas:
            if "libraries" in meta:
                self.load_seconds = max(self.load_seconds, float(meta.get("load", 0.0)))
                self.device = self.device or meta.get("device")
                if not self.manifests_written:
                    self.write_manifests(meta["libraries"])
                    self.manifests_written = True
            if self.first_at is None:
                self.first_at = time.perf_counter()
                self.first_batch_seconds = sum(float(v) for v in meta["seconds"].values())
            u = self.unit_of[int(meta["batch"])]
            spent = self.unit_seconds.setdefault(u, {})
            for k, v in meta["seconds"].items():
                self.seconds[k] = self.seconds.get(k, 0.0) + float(v)
                spent[k] = spent.get(k, 0.0) + float(v)
        touched: set[int] = set()
        failed = 0
        for r, (b, pid) in enumerate(zip(block["batch"], block["poster_id"], strict=True)):
            u = self.unit_of[int(b)]
            names = self.batch_names[int(b)]
            acc = self.rows.setdefault(u, {})
            bad = False
            for name in names:
                status = str(block[_status(name)][r])
                error = str(block[_error(name)][r])
                acc.setdefault(name, {})[str(pid)] = (status, error, block[_x(name)][r])
                bad = bad or status != OK
            failed += bad
            self.units[u].got += 1
            touched.add(u)
        self.observer.advanced(len(block["batch"]), failed)
        for u in sorted(touched):
            if self.units[u].got == len(self.units[u].ids):
                self._write(u)

    def _write(self, u: int) -> None:
        import hashlib

        unit = self.units[u]
        acc = self.rows.pop(u)
        spent = self.unit_seconds.pop(u, {})
        for name in unit.names:
            ext = self.extractors[name]
            got = acc[name]
            ids, paths = list(unit.ids), list(unit.paths)
            statuses = [got[pid][0] for pid in ids]
            errors = [got[pid][1] for pid in ids]
            X = np.stack([got[pid][2] for pid in ids]).astype(np.float32, copy=False)
            if unit.merge:
                ids, paths, statuses, errors, X = self._merged(name, unit.shard, got)
            counts: dict[str, int] = {}
            for s in statuses:
                counts[s] = counts.get(s, 0) + 1
            stats = {
                "extractor": name,
                "version": ext.version,
                "shard": unit.shard,
                "rows": len(ids),
                "ok": counts.pop(OK, 0),
                "failed_by_kind": dict(sorted(counts.items())),
                "seconds": round(spent.get(name, 0.0), 3),
                "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "engine": "ray",
            }
            self.store.write_shard(
                name, unit.shard, ids, paths, statuses, errors, X, ext.feature_names(), stats
            )
        self.observer.shard_written(unit.shard, unit.names)

    def _merged(
        self, name: str, shard: int, new: dict[str, tuple[str, str, np.ndarray]]
    ) -> tuple[list[str], list[str], list[str], list[str], np.ndarray]:
        """The done shard's rows, with the retried ones in place of their old rows (the
        local engine's ``--retry-failed`` rule: paths stay, statuses and features change)."""
        table = self.store.read_rows(name, shards=[shard])
        old_X = np.column_stack(
            [table[c].to_numpy(zero_copy_only=False) for c in self.extractors[name].feature_names()]
        ).astype(np.float32)
        cols = {c: table[c].to_pylist() for c in ("poster_id", "path", "status", "error")}
        ids, paths, statuses, errors, rows = [], [], [], [], []
        for k, pid in enumerate(cols["poster_id"]):
            ids.append(pid)
            paths.append(cols["path"][k])
            if pid in new:
                status, error, x = new[pid]
                statuses.append(status)
                errors.append(error)
                rows.append(x)
            else:
                statuses.append(cols["status"][k])
                errors.append(cols["error"][k] or "")
                rows.append(old_X[k])
        return ids, paths, statuses, errors, np.stack(rows)


def run_extraction_ray(
    paths: Sequence[str],
    out: str | os.PathLike[str],
    extractors: Sequence[str | Extractor],
    options: RunOptions | None = None,
    observer: RunObserver | Any = None,
    scale: InputScale | None = None,
    degrade: Any = None,
    ray_options: RayOptions | None = None,
) -> RunSummary:
    """:func:`~postergenre.features.runner.run_extraction` with the extractors in Ray
    actors (see the module docstring): the same store, rows, failure rows and resume rule.

    ``options.workers`` and ``options.prefetch`` do not apply (each actor decodes its own
    batches); ``options.device`` picks GPUs or CPUs for the actors (see
    :func:`plan_actors`). Raises ConfigError when Ray Data is not installed.
    """
    from postergenre.features import get_extractor
    from postergenre.input_scale import DEFAULT_SCALE

    ray = require_ray()
    scale = DEFAULT_SCALE if scale is None else scale
    options = options or RunOptions()
    ray_options = ray_options or RayOptions()
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

        id_path: dict[str, str] = {}
        for p in paths:
            id_path.setdefault(path_ids[p], p)
        known_paths = store._first_paths()
        by_shard: dict[int, list[str]] = {}
        for pid, shard in plan.items():
            by_shard.setdefault(shard, []).append(pid)
        touched = sorted({plan[i] for i in run_ids})
        jobs = [
            (shard, todo)
            for shard in touched
            if (todo := tuple(n for n in names if not store.is_done(n, shard)))
        ]
        retries = _failed_to_retry(store, names, touched, run_ids) if options.retry_failed else []
        total = sum(len(by_shard[s]) for s, _ in jobs) + sum(len(ids) for _, _, ids in retries)
        computed_shards = sorted({s for s, _ in jobs} | {s for s, _, _ in retries})

        seconds: dict[str, float] = {"scan": scan_seconds, "decode": 0.0}
        seconds.update({n: 0.0 for n in names})
        device = None
        actors = 0
        if jobs or retries:
            batches = _make_batches(jobs, by_shard, id_path, known_paths, options.batch_size)
            batches += _retry_batches(retries, id_path, known_paths, options.batch_size)
            needed = [n for n in names if any(n in b.names for b in batches)]

            def write_manifests(libraries: dict[str, str]) -> None:
                for e in exts:
                    if e.name in needed:
                        store.write_manifest(descriptions[e.name], libraries)

            collector = _Collector(
                store, {e.name: e for e in exts}, batches, observer, seconds, write_manifests
            )
            with _RaySession(ray, ray_options.address):
                plan_ = plan_actors(
                    ray.cluster_resources(), options.device, ray_options, len(batches)
                )
                actors = plan_.actors
                observer.loading(needed)
                actor_args = {
                    "extractors": [e for e in exts if e.name in needed],
                    "device": plan_.device,
                    "scale": scale,
                    "degrade": degrade,
                    "torch_threads": options.torch_threads,
                }
                items = [
                    {
                        "batch": k,
                        "ids": [pid for pid, _ in b.items],
                        "paths": [p for _, p in b.items],
                        "names": ",".join(b.names),
                    }
                    for k, b in enumerate(batches)
                ]
                ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                    ExtractActor, **map_batches_args(ray, plan_, actor_args)
                )
                observer.started(total, len(computed_shards), len(touched) - len(computed_shards))
                t0 = time.perf_counter()
                blocks = ds.iter_batches(batch_size=None, batch_format="numpy")
                try:
                    for block in blocks:
                        collector.add(block)
                except ray.exceptions.RayError as exc:
                    # Ray itself failed (a node lost, an actor that cannot start): a run-level
                    # failure; finished shards are kept.
                    line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    raise ExtractionError(
                        f"the Ray run failed: {type(exc).__name__}: {line}",
                        hint="see the Ray logs (/tmp/ray/session_latest/logs on the nodes); "
                        "run the same command again to resume",
                    ) from exc
                finally:
                    # Stop the dataset now (a fault, Ctrl-C), not when it is collected.
                    close = getattr(blocks, "close", None)
                    if close is not None:
                        close()
                t_end = time.perf_counter()
                # "work" as the local engine counts it, after the models are loaded: from
                # the first batch back (less the time that batch took) to the last one.
                # The rest is Ray scheduling, actors starting and loading: "startup".
                first = collector.first_at if collector.first_at is not None else t_end
                seconds["work"] = t_end - first + collector.first_batch_seconds
                seconds["startup"] = max(0.0, t_end - t0 - seconds["work"])
                seconds["load"] = collector.load_seconds
                device = collector.device
            unfinished = [u for u in collector.units if u.got < len(u.ids)]
            if unfinished:
                lost = sum(len(u.ids) - u.got for u in unfinished)
                raise ExtractionError(
                    f"the Ray run returned no rows for {lost} posters in {len(unfinished)} "
                    "shards; those shards are not done",
                    hint="run the same command again to compute them",
                )
        else:
            observer.started(0, 0, len(touched))
        seconds["total"] = time.perf_counter() - t_start
        summary = _summarise(
            store, names, paths, path_ids, touched, computed_shards, total, seconds, device,
            actors,
        )  # fmt: skip
        summary.extra["engine"] = "ray"
        return summary


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """Raise ConfigError unless something listens at a cluster ``address`` (``HOST:PORT``
    or ``ray://HOST:PORT``): ``ray.init`` itself retries an unreachable address for
    minutes. ``None``, ``auto`` and ``local`` are Ray's own choices and pass."""
    if address is None or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(
            f"--address: expected HOST:PORT or ray://HOST:PORT, got {address!r}",
            hint="the address `ray start --head` prints, e.g. 10.0.0.5:6379",
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc})",
            hint="start it with `ray start --head` on the head node and pass the address it "
            "prints; check that this machine can reach that port",
        ) from None


class _RaySession:
    """Connect to (or start) Ray for one run, quietly; disconnect after, unless the caller
    had already connected (then the connection and its cluster are the caller's)."""

    def __init__(self, ray: ModuleType, address: str | None) -> None:
        self.ray = ray
        self.address = address
        self.started = False
        self.saved: dict[str, Any] = {}
        self.saved_level = logging.NOTSET

    def __enter__(self) -> _RaySession:
        ray = self.ray
        if not ray.is_initialized():
            check_address(self.address)
            try:
                ray.init(
                    address=self.address,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    log_to_driver=True,
                )
            except ConnectionError as exc:
                raise ConfigError(
                    f"cannot reach the Ray cluster at {self.address}: {exc}",
                    hint="start it with `ray start --head` on the head node, and pass its "
                    "address (the one `ray start` prints)",
                ) from None
            self.started = True
        # Our own progress display and summary say what happens; Ray's would interleave.
        data_log = logging.getLogger("ray.data")
        self.saved_level = data_log.level
        data_log.setLevel(logging.ERROR)
        ctx = ray.data.DataContext.get_current()
        for key, value in (
            ("enable_progress_bars", False),
            ("print_on_execution_start", False),
        ):
            if hasattr(ctx, key):
                self.saved[key] = getattr(ctx, key)
                setattr(ctx, key, value)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("ray.data").setLevel(self.saved_level)
        ctx = self.ray.data.DataContext.get_current()
        for key, value in self.saved.items():
            setattr(ctx, key, value)
        if self.started:
            self.ray.shutdown()
