"""Extraction on Ray Data: the same store as the local engine, faults stop it, kill -9 resumes.

The tests marked ``ray`` start a real local Ray (2 CPUs, shut down at the end of the
module) and skip with a reason where Ray Data is not installed. Extractors: the real
``color`` and ``gist`` and a numpy toy defined here (shipped to the actors by value).
The actor-pool plumbing (GPUs per actor, map_batches arguments) is tested without a
cluster; no GPU is needed anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from conftest import encode, make_poster

from postergenre.errors import ConfigError, PosterError
from postergenre.features.base import Extractor
from postergenre.features.ray_engine import (
    INSTALL_HINT,
    ActorPlan,
    RayOptions,
    plan_actors,
    require_ray,
)
from postergenre.features.runner import ExtractionError, RunOptions, run_extraction
from postergenre.store import FeatureStore

NEEDS_RAY = "needs Ray Data: pip install 'postergenre[ray]'"


@dataclass(frozen=True)
class ToyConfig:
    scale: float = 1.0


class ToyExtractor(Extractor):
    """Channel means and stds; refuses a blank poster (a PosterError: a failure row)."""

    name: ClassVar[str] = "toy"
    version: ClassVar[str] = "1"
    Config: ClassVar[type[Any]] = ToyConfig

    def feature_names(self) -> list[str]:
        return [f"{self.name}.{s}.{c}" for s in ("mean", "std") for c in "rgb"]

    def _load(self, device: str) -> None:
        pass

    def _extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        rows = []
        for img in images:
            if img.min() == img.max():
                raise PosterError("toy", "extract_error", "cannot describe a blank poster")
            x = img.reshape(-1, 3).astype(np.float64)
            rows.append([*(x.mean(0) * self.config.scale), *x.std(0)])
        return np.asarray(rows, dtype=np.float32)


class BuggyExtractor(ToyExtractor):
    """The toy with a bug that a dark poster triggers (not the poster's fault)."""

    name: ClassVar[str] = "buggy"

    def _extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if any(float(img.mean()) < 8 for img in images):
            raise AttributeError("module 'numpy' has no attribute 'float'")
        return super()._extract(images)


class FixedExtractor(ToyExtractor):
    """The same extractor (name, version, features) once the bug is fixed."""

    name: ClassVar[str] = "buggy"


# -- plumbing: no cluster ------------------------------------------------------------------------


def test_actors_take_a_gpu_each_when_the_cluster_has_gpus() -> None:
    gpus = {"CPU": 16.0, "GPU": 2.0}
    assert plan_actors(gpus, "auto", RayOptions(), batches=100) == ActorPlan(2, 0.0, 1.0, "cuda")
    half = plan_actors(gpus, "cuda", RayOptions(gpus_per_actor=0.5), batches=100)
    assert (half.actors, half.num_gpus, half.device) == (4, 0.5, "cuda")
    # --device cpu never lets an actor touch a GPU it did not reserve.
    assert plan_actors(gpus, "cpu", RayOptions(), batches=100) == ActorPlan(16, 1.0, 0.0, "cpu")


def test_cpu_actors_fit_the_cluster_and_the_work() -> None:
    cpus = {"CPU": 8.0}
    assert plan_actors(cpus, "auto", RayOptions(), batches=100) == ActorPlan(8, 1.0, 0.0, "cpu")
    assert plan_actors(cpus, "auto", RayOptions(cpus_per_actor=2), batches=100).actors == 4
    assert plan_actors(cpus, "auto", RayOptions(), batches=3).actors == 3
    assert plan_actors(cpus, "auto", RayOptions(actors=5), batches=100).actors == 5
    with pytest.raises(ConfigError, match="no GPU"):
        plan_actors(cpus, "cuda", RayOptions(), batches=10)
    with pytest.raises(ConfigError, match="not enough for one actor"):
        plan_actors({"CPU": 1.0}, "cpu", RayOptions(cpus_per_actor=2), batches=10)
    with pytest.raises(ConfigError, match="actors"):
        RayOptions(actors=0)


def test_map_batches_uses_an_actor_pool_and_per_actor_resources() -> None:
    ray = pytest.importorskip("ray", reason=NEEDS_RAY)
    pytest.importorskip("ray.data", reason=NEEDS_RAY)
    from postergenre.features.ray_engine import map_batches_args

    gpu = map_batches_args(ray, ActorPlan(3, 0.0, 1.0, "cuda"), {"x": 1})
    assert isinstance(gpu["compute"], ray.data.ActorPoolStrategy)
    assert gpu["compute"].min_size == gpu["compute"].max_size == 3
    assert gpu["num_gpus"] == 1.0 and "num_cpus" not in gpu
    assert gpu["batch_size"] == 1 and gpu["fn_constructor_kwargs"] == {"x": 1}
    cpu = map_batches_args(ray, ActorPlan(2, 1.0, 0.0, "cpu"), {})
    assert cpu["num_cpus"] == 1.0 and "num_gpus" not in cpu
    # Only arguments the installed Ray documents as current (not `concurrency`, not
    # free-form **ray_remote_args).
    import inspect

    params = inspect.signature(ray.data.Dataset.map_batches).parameters
    assert set(cpu) | set(gpu) <= set(params) and "concurrency" not in cpu


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ConfigError) as err:
        require_ray()
    assert err.value.hint == INSTALL_HINT and "postergenre[ray]" in INSTALL_HINT
    from typer.testing import CliRunner

    from postergenre.cli import app

    r = CliRunner().invoke(app, ["extract", "x.jpg", "--out", "s", "--engine", "ray"])
    assert isinstance(r.exception, ConfigError) and "Ray Data" in str(r.exception)
    r = CliRunner().invoke(app, ["extract", "x.jpg", "--out", "s", "--address", "h:6379"])
    assert isinstance(r.exception, ConfigError) and "--engine ray" in str(r.exception)


def test_an_unreachable_cluster_is_refused_at_once() -> None:
    import socket

    from postergenre.features.ray_engine import check_address

    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t0 = time.monotonic()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(ConfigError, match="cannot reach the Ray cluster"):
            check_address(address, timeout=2)
    assert time.monotonic() - t0 < 10  # ray.init alone retries for minutes
    with pytest.raises(ConfigError, match="HOST:PORT"):
        check_address("headnode")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_address(f"127.0.0.1:{server.getsockname()[1]}")  # something listens: fine
    check_address(None)
    check_address("auto")


# -- a real local Ray ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray of 2 CPUs for this module; its GCS address. Always shut down."""
    ray = pytest.importorskip("ray", reason=NEEDS_RAY)
    pytest.importorskip("ray.data", reason=NEEDS_RAY)
    cloudpickle = pytest.importorskip("ray.cloudpickle", reason=NEEDS_RAY)
    if ray.is_initialized():
        pytest.skip("another Ray connection is open in this process")
    # The toys live in this test module, which Ray workers cannot import: send by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=300 * 1024**2,
        logging_level="ERROR",
    )
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def write_catalogue(folder: Path, n: int) -> list[Path]:
    """``n`` posters of assorted sizes, a duplicate, and the usual bad files."""
    folder.mkdir(parents=True)
    for i in range(n):
        size = (180 + 13 * (i % 5), 120 + 7 * (i % 3))
        (folder / f"p{i:03d}.jpg").write_bytes(encode(make_poster(i, size=size), "JPEG"))
    shutil.copyfile(folder / "p003.jpg", folder / "copy-of-p003.jpg")
    (folder / "corrupt.jpg").write_bytes(encode(make_poster(99), "JPEG")[:300])
    (folder / "text.png").write_bytes(b"this is not an image at all")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "tiny.png").write_bytes(encode(np.full((8, 8, 3), 200, np.uint8), "PNG"))
    (folder / "blank.png").write_bytes(encode(np.full((50, 77, 3), 90, np.uint8), "PNG"))
    return sorted(folder.iterdir())


OPTIONS = RunOptions(workers=1, device="cpu", shard_size=8, batch_size=4)
BAD = {
    "corrupt.jpg": "corrupt",
    "text.png": "not_image",
    "empty.jpg": "empty",
    "tiny.png": "too_small",
    "blank.png": "extract_error",
}


def assert_same_store(a: Path, b: Path, names: Sequence[str]) -> None:
    """Row by row: ids, paths, statuses, errors, features (float tolerance), manifests."""
    sa, sb = FeatureStore(a), FeatureStore(b)
    assert sa.read_plan() == sb.read_plan()
    assert {r.path: r.poster_id for r in sa.read_index()} == sb.index()
    for name in names:
        assert sa.done_shards(name) == sb.done_shards(name) != []
        ma, mb = sa.manifest(name), sb.manifest(name)
        for m in (ma, mb):
            m.pop("created")
        la, lb = ma.pop("libraries"), mb.pop("libraries")
        assert ma == mb and "input" in ma
        assert la["python"] == lb["python"] and la["numpy"] == lb["numpy"]
        features = ma["feature_names"]
        for shard in sa.done_shards(name):
            ta = sa.read_rows(name, shards=[shard]).to_pydict()
            tb = sb.read_rows(name, shards=[shard]).to_pydict()
            for col in ("poster_id", "path", "status", "error"):
                assert ta[col] == tb[col], (name, shard, col)
            xa = np.array([ta[c] for c in features], dtype=np.float64)
            xb = np.array([tb[c] for c in features], dtype=np.float64)
            np.testing.assert_allclose(xa, xb, rtol=1e-6, atol=1e-6, equal_nan=True)
            assert (
                sa.shard_stats(name, shard)["ids_sha256"]
                == sb.shard_stats(name, shard)["ids_sha256"]
            )


@pytest.mark.ray
@pytest.mark.slow
def test_ray_store_is_the_local_store_row_by_row(cluster: str, tmp_path: Path) -> None:
    from postergenre.features import get_extractor
    from postergenre.features.ray_engine import run_extraction_ray

    paths = [str(p) for p in write_catalogue(tmp_path / "posters", 24)]
    names = ["color", "gist", "toy"]

    def exts() -> list[Extractor]:
        return [get_extractor("color"), get_extractor("gist"), ToyExtractor()]

    local = run_extraction(paths, tmp_path / "local", exts(), OPTIONS)
    ray_run = run_extraction_ray(paths, tmp_path / "ray", exts(), OPTIONS)
    assert ray_run.extra["engine"] == "ray" and ray_run.workers == 2
    for field in ("paths", "posters", "ok", "failed", "failed_by_kind", "failures", "computed"):
        assert getattr(ray_run, field) == getattr(local, field), field
    assert {Path(f["path"]).name: f["status"] for f in ray_run.failures} == BAD
    # 30 files: 24 posters, a copy of one (the same poster id), 5 bad files.
    assert (ray_run.paths, ray_run.posters, ray_run.ok) == (30, 29, 24)
    assert_same_store(tmp_path / "local", tmp_path / "ray", names)
    # Every other command reads it unchanged: the same joined feature table.
    la, ra = FeatureStore(tmp_path / "local").load(), FeatureStore(tmp_path / "ray").load()
    assert la.ids == ra.ids and la.paths == ra.paths and la.feature_names == ra.feature_names
    np.testing.assert_allclose(la.X, ra.X, rtol=1e-6, atol=1e-6)
    # A finished store is finished for either engine.
    again = run_extraction_ray(paths, tmp_path / "local", exts(), OPTIONS)
    assert (again.computed, again.shards_computed) == (0, 0)


@pytest.mark.ray
def test_a_fault_of_the_code_stops_the_ray_run_and_the_fixed_rerun_resumes(
    cluster: str, tmp_path: Path
) -> None:
    from postergenre.features.ray_engine import run_extraction_ray

    folder = tmp_path / "posters"
    write_catalogue(folder, 14)
    files = sorted(folder.glob("p*.jpg"))  # the posters only
    victim = files[9]
    ramp = np.repeat(np.linspace(0, 10, 60).astype(np.uint8)[:, None], 40, axis=1)
    victim.write_bytes(encode(np.repeat(ramp[:, :, None], 3, axis=2), "PNG"))  # dark
    paths = [str(p) for p in files]
    out = tmp_path / "store"
    with pytest.raises(ExtractionError, match="AttributeError") as err:
        run_extraction_ray(paths, out, [BuggyExtractor()], OPTIONS)
    assert f"extractor buggy failed on {victim}" in str(err.value)
    assert "not a bad poster" in (err.value.hint or "")
    store = FeatureStore(out)
    victim_shard = store.read_plan()[hashlib.sha256(victim.read_bytes()).hexdigest()]
    done = store.done_shards("buggy")
    assert victim_shard not in done and store.failures() == []
    resumed = run_extraction_ray(paths, out, [FixedExtractor()], OPTIONS)
    assert (resumed.ok, resumed.failed) == (len(files), 0)
    assert resumed.shards_skipped == len(done)
    assert resumed.computed == len(files) - sum(store.shard_stats("buggy", s)["rows"] for s in done)


DRIVER = textwrap.dedent(
    """
    import json, sys, time
    from dataclasses import dataclass
    from typing import Any, ClassVar
    import numpy as np
    import ray
    from postergenre.features.base import Extractor
    from postergenre.features.ray_engine import run_extraction_ray
    from postergenre.features.runner import RunOptions

    @dataclass(frozen=True)
    class SlowConfig:
        pass

    class SlowExtractor(Extractor):
        name: ClassVar[str] = "slow"
        version: ClassVar[str] = "1"
        Config: ClassVar[type[Any]] = SlowConfig
        delay: ClassVar[float] = float(sys.argv[4])  # read here: actors have their own argv

        def feature_names(self):
            return ["slow.mean", "slow.height"]

        def _load(self, device):
            pass

        def _extract(self, images):
            time.sleep(self.delay)
            return np.array([[im.mean(), im.shape[0]] for im in images], dtype=np.float32)

    ray.init(address=sys.argv[3], logging_level="ERROR")
    paths = json.loads(open(sys.argv[1]).read())
    opts = RunOptions(device="cpu", shard_size=6, batch_size=3)
    summary = run_extraction_ray(paths, sys.argv[2], [SlowExtractor()], opts)
    print("SUMMARY", json.dumps(summary.to_dict()))
    """
)


@pytest.mark.ray
@pytest.mark.slow
def test_a_killed_ray_run_resumes_without_redoing_a_finished_shard(
    cluster: str, tmp_path: Path
) -> None:
    files = sorted(p for p in write_catalogue(tmp_path / "posters", 30) if p.name[0] == "p")
    (tmp_path / "paths.json").write_text(json.dumps([str(p) for p in files]))
    (tmp_path / "driver.py").write_text(DRIVER)
    out = tmp_path / "store"

    def driver(delay: float) -> subprocess.Popen[str]:
        args = [sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "paths.json"),
                str(out), cluster, str(delay)]  # fmt: skip
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    proc = driver(delay=1.0)  # 10 batches on 2 actors: about 5 s of work
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("slow/*.done.json")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no shard finished in 240 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # no cleanup, no finally
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    store = FeatureStore(out)
    done = store.done_shards("slow")
    planned = sorted(set(store.read_plan().values()))
    assert 0 < len(done) < len(planned), (done, planned)
    before = {s: store.done_file("slow", s).stat().st_mtime_ns for s in done}
    resumed_rows = len(files) - sum(store.shard_stats("slow", s)["rows"] for s in done)

    proc = driver(delay=0.0)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout.split("SUMMARY", 1)[1])
    assert summary["shards_skipped"] == len(done)
    assert summary["computed"] == resumed_rows
    assert summary["shards_computed"] == len(planned) - len(done)
    assert {s: store.done_file("slow", s).stat().st_mtime_ns for s in done} == before
    assert store.done_shards("slow") == planned and not list(out.glob("*/*.tmp-*"))
    data = store.load()
    assert len(data) == len(files) and summary["ok"] == len(files)


@pytest.mark.ray
def test_extract_cli_engine_ray(cluster: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from postergenre.cli import app

    files = write_catalogue(tmp_path / "posters", 4)
    r = CliRunner().invoke(
        app,
        ["extract", str(tmp_path / "posters"), "--out", str(tmp_path / "store"), "--extractors",
         "color", "--engine", "ray", "--device", "cpu", "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["extra"]["engine"] == "ray"
    assert summary["paths"] == len(files) and summary["failed"] == len(BAD) - 1  # no toy
    assert len(FeatureStore(tmp_path / "store").load()) == 5  # the blank poster is ok here


@pytest.mark.ray
def test_degraded_copies_are_the_local_engines(cluster: str, tmp_path: Path) -> None:
    from postergenre.features.ray_engine import run_extraction_ray
    from postergenre.input_scale import Degrade

    write_catalogue(tmp_path / "posters", 6)
    paths = [str(p) for p in sorted((tmp_path / "posters").glob("p*.jpg"))]
    degrade = Degrade(seed=3)
    run_extraction(paths, tmp_path / "local", [ToyExtractor()], OPTIONS, degrade=degrade)
    run_extraction_ray(paths, tmp_path / "ray", [ToyExtractor()], OPTIONS, degrade=degrade)
    assert_same_store(tmp_path / "local", tmp_path / "ray", ["toy"])
    assert FeatureStore(tmp_path / "ray").manifest("toy")["degrade"] == degrade.to_record()
