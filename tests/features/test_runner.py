"""Extraction runs: inputs, dedupe, bad posters as rows, resume, added extractors, mismatches.

A toy extractor (numpy only, registered here) stands in for the real ones, so these tests
need no weights and no other extractor module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from conftest import encode, make_poster

from postergenre import features
from postergenre.errors import ConfigError, DataError, PosterError, StoreError
from postergenre.features.base import Extractor
from postergenre.features.inputs import discover
from postergenre.features.runner import ExtractionError, RunOptions, run_extraction
from postergenre.features.store import FeatureStore


@dataclass(frozen=True)
class ToyConfig:
    scale: float = 1.0


class ToyExtractor(Extractor):
    """Channel means and stds (times ``scale``) and the image size."""

    name: ClassVar[str] = "toy"
    version: ClassVar[str] = "1"
    Config: ClassVar[type[Any]] = ToyConfig
    #: Images seen, per class, in this process (to prove what was or was not computed).
    seen: ClassVar[list[int]] = []

    def feature_names(self) -> list[str]:
        return [f"{self.name}.{s}.{c}" for s in ("mean", "std") for c in "rgb"] + [
            f"{self.name}.height",
            f"{self.name}.width",
        ]

    def _load(self, device: str) -> None:
        pass

    def _extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        type(self).seen.append(len(images))
        kill_after = os.environ.get("TOY_KILL_AFTER")
        if kill_after is not None and sum(type(self).seen) > int(kill_after):
            import signal

            os.kill(os.getpid(), signal.SIGKILL)  # a crash: no cleanup, no finally
        rows = []
        for img in images:
            x = img.reshape(-1, 3).astype(np.float64)
            if img.min() == img.max():  # the poster's fault, as an extractor says it
                raise PosterError("toy", "extract_error", "cannot describe a blank poster")
            rows.append([*(x.mean(0) * self.config.scale), *x.std(0), *img.shape[:2]])
        return np.asarray(rows, dtype=np.float32)


class OtherToyExtractor(ToyExtractor):
    name: ClassVar[str] = "toy2"
    seen: ClassVar[list[int]] = []


class BrokenExtractor(ToyExtractor):
    name: ClassVar[str] = "broken"

    def _extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        raise RuntimeError("weights went missing")


@pytest.fixture(autouse=True)
def toys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, cls in (
        ("toy", "ToyExtractor"),
        ("toy2", "OtherToyExtractor"),
        ("broken", "BrokenExtractor"),
    ):
        monkeypatch.setitem(features.REGISTRY, name, f"{__name__}:{cls}")
    ToyExtractor.seen.clear()
    OtherToyExtractor.seen.clear()


def write_posters(folder: Path, n: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        p = folder / f"poster{i:03d}.jpg"
        p.write_bytes(encode(make_poster(i, size=(60 + i % 5, 40)), "JPEG", quality=90))
        paths.append(p)
    return paths


def run(paths: Sequence[Path | str], out: Path, names: Sequence[Any] = ("toy",), **kw: Any) -> Any:
    opts = {"workers": 0, "shard_size": 4, "batch_size": 3, "device": "cpu", **kw}
    return run_extraction(discover(paths).paths, out, list(names), RunOptions(**opts))


def toy_row(path: Path, scale: float = 1.0) -> np.ndarray:
    """The toy's row of one poster file, at the run's (default) input scale."""
    from postergenre.images import load_poster
    from postergenre.input_scale import DEFAULT_SCALE

    return ToyExtractor(scale=scale).extract([DEFAULT_SCALE.apply(load_poster(path))])[0]


# -- inputs ------------------------------------------------------------------------------
def test_discover_walks_folders_globs_and_csvs_sorted(tmp_path: Path) -> None:
    a = write_posters(tmp_path / "a", 2)
    b = write_posters(tmp_path / "b" / "deep", 2, start=5)
    (tmp_path / "b" / "UPPER.PNG").write_bytes(encode(make_poster(9), "PNG"))
    (tmp_path / "b" / "notes.txt").write_text("not a poster")
    csv = tmp_path / "labels.csv"
    csv.write_text("imdb_id,file,split\ntt1,a/poster000.jpg,train\ntt2,gone.jpg,val\n")

    found = discover([tmp_path / "b", str(tmp_path / "a" / "*.jpg")])
    expected = sorted([*map(str, a), *map(str, b), str(tmp_path / "b" / "UPPER.PNG")])
    assert found.paths == expected
    assert found.skipped == 1  # notes.txt
    in_b = sorted([*map(str, b), str(tmp_path / "b" / "UPPER.PNG")])
    assert discover([tmp_path / "b"], limit=2).paths == in_b[:2]
    # CSV paths are relative to the CSV; a listed file that is absent is kept (a row).
    assert discover([csv]).paths == [str(a[0]), str(tmp_path / "gone.jpg")]


def test_discover_refuses_what_is_not_there(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        discover([tmp_path / "nope"])
    with pytest.raises(ConfigError, match="no files match"):
        discover([str(tmp_path / "*.jpg")])
    bad = tmp_path / "bad.csv"
    bad.write_text("imdb_id,path\ntt1,x.jpg\n")
    with pytest.raises(DataError, match="'file' column"):
        discover([bad])


# -- runs ----------------------------------------------------------------------------------
def test_run_writes_rows_equal_to_the_extractor_on_each_poster(tmp_path: Path) -> None:
    paths = write_posters(tmp_path / "p", 6)
    summary = run(paths, tmp_path / "store", workers=1)  # through a worker process
    assert (summary.ok, summary.failed, summary.posters) == (6, 0, 6)
    data = FeatureStore(tmp_path / "store").load()
    assert data.X.dtype == np.float32 and data.X.shape == (6, 8)
    assert data.ids == sorted(data.ids)
    by_path = dict(zip(data.paths, data.X, strict=True))
    for p in paths:
        np.testing.assert_array_equal(by_path[str(p)], toy_row(p))
    assert data.feature_names[0] == "toy.mean.r"
    manifest = FeatureStore(tmp_path / "store").manifest("toy")
    assert manifest["version"] == "1" and manifest["config"] == {"scale": 1.0}
    assert "numpy" in manifest["libraries"] and manifest["created"]


def test_identical_bytes_are_extracted_once(tmp_path: Path) -> None:
    paths = write_posters(tmp_path / "p", 3)
    copy = tmp_path / "p" / "copy_of_0.jpg"
    copy.write_bytes(paths[0].read_bytes())
    summary = run([tmp_path / "p"], tmp_path / "store")
    assert summary.paths == 4 and summary.posters == 3
    assert sum(ToyExtractor.seen) == 3
    store = FeatureStore(tmp_path / "store")
    index = store.index()
    assert index[str(copy)] == index[str(paths[0])]
    assert len(store.load()) == 3


def test_bad_posters_become_rows_and_the_run_completes(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    good = write_posters(folder, 3)
    (folder / "corrupt.jpg").write_bytes(encode(make_poster(7), "JPEG")[:300])
    (folder / "text.png").write_bytes(b"this is not an image at all")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "tiny.png").write_bytes(encode(np.full((8, 8, 3), 200, np.uint8), "PNG"))
    locked = folder / "locked.jpg"
    locked.write_bytes(encode(make_poster(11, size=(50, 40)), "JPEG"))
    locked.chmod(0)
    (folder / "readme.txt").write_text("skipped: not an image extension")
    blank = folder / "blank.png"  # decodes, but the toy extractor refuses a blank poster
    blank.write_bytes(encode(np.full((50, 77, 3), 90, np.uint8), "PNG"))
    try:
        summary = run([folder], tmp_path / "store", workers=1)
    finally:
        locked.chmod(0o644)
    root = os.geteuid() == 0  # root reads mode-000 files: then it is a valid poster
    expected = {
        "corrupt.jpg": "corrupt",
        "text.png": "not_image",
        "empty.jpg": "empty",
        "tiny.png": "too_small",
        "blank.png": "extract_error",
    }
    if not root:
        expected["locked.jpg"] = "unreadable"
    got = {Path(f["path"]).name: f["status"] for f in summary.failures}
    assert got == expected
    assert summary.failed_by_kind == {
        k: list(expected.values()).count(k) for k in set(expected.values())
    }
    n_good = len(good) + (1 if root else 0)
    assert summary.ok == n_good
    store = FeatureStore(tmp_path / "store")
    data = store.load()
    assert set(data.paths) == {str(p) for p in good} | ({str(locked)} if root else set())
    failures = {Path(f.path).name: (f.status, f.error) for f in store.failures()}
    assert {k: v[0] for k, v in failures.items()} == expected
    assert "blank poster" in failures["blank.png"][1]


# -- faults of the code are never recorded as the posters' --------------------------------
@pytest.fixture
def bug() -> Iterator[pytest.MonkeyPatch]:
    """A fault injected into the code: ``bug.undo()`` is the fix (and the teardown)."""
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def first_computed(paths: Sequence[Path]) -> Path:
    """The poster a run computes first (shards and batches follow sorted poster ids)."""
    return min(paths, key=lambda p: hashlib.sha256(p.read_bytes()).hexdigest())


def _assert_rerun_computes_everything(paths: Sequence[Path], out: Path, **kw: Any) -> None:
    """After the fault is gone, the same run computes every poster, none failed."""
    ToyExtractor.seen.clear()
    summary = run(paths, out, **kw)
    assert (summary.ok, summary.failed, summary.computed) == (len(paths), 0, len(paths))
    assert sum(ToyExtractor.seen) == len(paths)
    assert len(FeatureStore(out).load()) == len(paths)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_an_extractor_failing_on_everything_stops_the_run(tmp_path: Path, batch_size: int) -> None:
    paths = write_posters(tmp_path / "p", 4)
    with pytest.raises(ExtractionError, match="weights went missing") as err:
        run(paths, tmp_path / "store", names=["broken"], batch_size=batch_size)
    assert f"extractor broken failed on {first_computed(paths)}" in str(err.value)
    # No shard was marked done: a fixed extractor resumes from nothing.
    assert FeatureStore(tmp_path / "store").done_shards("broken") == []


@pytest.mark.parametrize("batch_size", [1, 3])
def test_a_decoding_bug_stops_the_run_and_the_rerun_computes_every_poster(
    tmp_path: Path, bug: pytest.MonkeyPatch, batch_size: int
) -> None:
    import postergenre.images

    paths = write_posters(tmp_path / "p", 6)

    def buggy(data: bytes, name: str = "", **kw: Any) -> np.ndarray:
        raise AttributeError("'NoneType' object has no attribute 'mode'")  # a library bug

    bug.setattr(postergenre.images, "decode_poster", buggy)
    with pytest.raises(ExtractionError, match="AttributeError") as err:
        run(paths, tmp_path / "store", batch_size=batch_size)
    message = str(err.value)
    assert f"decoding {first_computed(paths)}" in message and "not a bad poster" in message
    store = FeatureStore(tmp_path / "store")
    assert store.done_shards("toy") == [] and store.failures() == []
    bug.undo()
    _assert_rerun_computes_everything(paths, tmp_path / "store", batch_size=batch_size)


@pytest.mark.parametrize(("batch_size", "workers"), [(1, 0), (3, 0), (3, 1)])
def test_an_extractor_bug_stops_the_run_and_the_rerun_computes_every_poster(
    tmp_path: Path, bug: pytest.MonkeyPatch, batch_size: int, workers: int
) -> None:
    paths = write_posters(tmp_path / "p", 6)

    def buggy(self: ToyExtractor, images: Sequence[np.ndarray]) -> np.ndarray:
        raise AttributeError("module 'numpy' has no attribute 'float'")  # an upgrade broke it

    bug.setattr(ToyExtractor, "_extract", buggy)
    with pytest.raises(ExtractionError, match="AttributeError") as err:
        run(paths, tmp_path / "store", batch_size=batch_size, workers=workers)
    assert f"extractor toy failed on {first_computed(paths)}" in str(err.value)
    store = FeatureStore(tmp_path / "store")
    assert store.done_shards("toy") == [] and store.failures() == []
    bug.undo()
    _assert_rerun_computes_everything(paths, tmp_path / "store", batch_size=batch_size)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_an_extractor_bug_on_one_poster_leaves_its_shard_not_done(
    tmp_path: Path, bug: pytest.MonkeyPatch, batch_size: int
) -> None:
    paths = write_posters(tmp_path / "p", 8)  # shards of 4
    victim = paths[5]  # in shard 1: shard 0 is done before the fault
    ramp = np.repeat(np.linspace(0, 10, 60).astype(np.uint8)[:, None], 40, axis=1)
    victim.write_bytes(encode(np.repeat(ramp[:, :, None], 3, axis=2), "PNG"))  # dark
    original = ToyExtractor._extract

    def buggy(self: ToyExtractor, images: Sequence[np.ndarray]) -> np.ndarray:
        if any(float(img.mean()) < 8 for img in images):  # the victim: the bug's trigger
            raise ValueError("cannot reshape array of size 0")
        return original(self, images)

    bug.setattr(ToyExtractor, "_extract", buggy)
    with pytest.raises(ExtractionError, match=re.escape(f"failed on {victim} with ValueError")):
        run(paths, tmp_path / "store", batch_size=batch_size)
    store = FeatureStore(tmp_path / "store")
    victim_shard = store.read_plan()[hashlib.sha256(victim.read_bytes()).hexdigest()]
    done = store.done_shards("toy")
    assert victim_shard not in done and done == list(range(victim_shard))
    assert store.failures() == []
    bug.undo()
    ToyExtractor.seen.clear()
    summary = run(paths, tmp_path / "store", batch_size=batch_size)
    assert (summary.ok, summary.failed, summary.computed) == (8, 0, 8 - 4 * len(done))
    assert sum(ToyExtractor.seen) == 8 - 4 * len(done)


def test_retry_failed_recomputes_only_the_failure_rows(
    tmp_path: Path, bug: pytest.MonkeyPatch
) -> None:
    import postergenre.images

    paths = write_posters(tmp_path / "p", 7)
    clean = tmp_path / "clean"
    run(paths, clean)
    # An older decoder that cannot read one of the posters: a row of the poster's kind.
    real = postergenre.images.decode_poster

    def older(data: bytes, name: str = "", **kw: Any) -> np.ndarray:
        if name == str(paths[5]):
            raise PosterError(name, "corrupt", "unsupported JPEG variant")
        return real(data, name=name, **kw)

    bug.setattr(postergenre.images, "decode_poster", older)
    first = run(paths, tmp_path / "store")
    assert first.failed_by_kind == {"corrupt": 1}
    bug.undo()
    ToyExtractor.seen.clear()
    resumed = run(paths, tmp_path / "store")  # resume keeps finished rows, failures too
    assert ToyExtractor.seen == [] and resumed.failed == 1
    store = FeatureStore(tmp_path / "store")
    plan = store.read_plan()
    failed_shard = plan[hashlib.sha256(paths[5].read_bytes()).hexdigest()]
    other = 1 - failed_shard  # 7 posters, shards of 4
    untouched = store.shard_file("toy", other).stat().st_mtime_ns
    retried = run(paths, tmp_path / "store", retry_failed=True)
    assert sum(ToyExtractor.seen) == 1  # only the failed poster
    assert (retried.ok, retried.failed, retried.computed, retried.shards_computed) == (7, 0, 1, 1)
    assert store.shard_file("toy", other).stat().st_mtime_ns == untouched
    stats = store.shard_stats("toy", failed_shard)
    assert store.failures() == [] and stats["ok"] == stats["rows"] == [4, 3][failed_shard]
    a, b = FeatureStore(clean).load(), store.load()
    assert a.ids == b.ids and a.paths == b.paths
    np.testing.assert_array_equal(a.X, b.X)
    ToyExtractor.seen.clear()
    again = run(paths, tmp_path / "store", retry_failed=True)  # nothing left to retry
    assert ToyExtractor.seen == [] and again.computed == 0


def test_the_decoder_health_check_reads_its_own_posters() -> None:
    from postergenre.features.runner import _decoder_works

    assert _decoder_works()


def test_interrupted_run_resumes_to_the_same_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = write_posters(tmp_path / "p", 11)
    clean = run(paths, tmp_path / "clean")
    assert clean.shards_computed == 3  # 11 posters, 4 per shard

    calls = {"n": 0}
    original = ToyExtractor._extract

    def interrupting(self: ToyExtractor, images: Sequence[np.ndarray]) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 4:  # batches of 3, shards of 4: 2 batches per shard
            raise KeyboardInterrupt
        return original(self, images)

    monkeypatch.setattr(ToyExtractor, "_extract", interrupting)
    with pytest.raises(KeyboardInterrupt):
        run(paths, tmp_path / "resumed")
    store = FeatureStore(tmp_path / "resumed")
    assert store.done_shards("toy") == [0]
    done_stat = store.done_file("toy", 0).stat().st_mtime_ns
    # A half-written shard of the killed run is left behind: it must not count.
    store.shard_file("toy", 1).write_bytes(b"half a parquet file")
    (tmp_path / "resumed" / "toy" / "shard-00002.parquet.tmp-999").write_bytes(b"junk")

    monkeypatch.setattr(ToyExtractor, "_extract", original)
    ToyExtractor.seen.clear()
    resumed = run(paths, tmp_path / "resumed")
    assert resumed.shards_computed == 2 and resumed.shards_skipped == 1
    assert sum(ToyExtractor.seen) == 7  # only the unfinished shards' posters
    assert store.done_file("toy", 0).stat().st_mtime_ns == done_stat
    assert not list((tmp_path / "resumed").glob("*/*.tmp-*"))
    a, b = FeatureStore(tmp_path / "clean").load(), store.load()
    assert a.ids == b.ids and a.paths == b.paths
    np.testing.assert_array_equal(a.X, b.X)
    assert (resumed.ok, resumed.failed) == (clean.ok, clean.failed) == (11, 0)


def test_adding_an_extractor_computes_only_that_extractor(tmp_path: Path) -> None:
    paths = write_posters(tmp_path / "p", 6)
    run(paths, tmp_path / "store")
    store = FeatureStore(tmp_path / "store")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "store" / "toy").iterdir()}
    ToyExtractor.seen.clear()
    summary = run(paths, tmp_path / "store", names=["toy", "toy2"])
    assert ToyExtractor.seen == [] and sum(OtherToyExtractor.seen) == 6
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "store" / "toy").iterdir()}
    assert after == before
    assert store.extractors() == ["toy", "toy2"]
    data = store.load()
    assert data.X.shape == (6, 16)
    np.testing.assert_array_equal(data.X[:, :8], data.X[:, 8:])  # same maths, two names
    assert summary.computed == 6


def test_rerun_of_a_finished_store_does_nothing(tmp_path: Path) -> None:
    paths = write_posters(tmp_path / "p", 5)
    run(paths, tmp_path / "store")
    ToyExtractor.seen.clear()
    summary = run(paths, tmp_path / "store")
    assert ToyExtractor.seen == [] and summary.computed == 0 and summary.ok == 5


def test_new_posters_go_to_new_shards(tmp_path: Path) -> None:
    first = write_posters(tmp_path / "p", 5)
    run(first, tmp_path / "store")
    store = FeatureStore(tmp_path / "store")
    plan_before = store.read_plan()
    more = write_posters(tmp_path / "p", 3, start=5)
    ToyExtractor.seen.clear()
    summary = run([*first, *more], tmp_path / "store")
    assert sum(ToyExtractor.seen) == 3 and summary.ok == 8
    plan_after = store.read_plan()
    assert {k: plan_after[k] for k in plan_before} == plan_before


def test_a_changed_file_gets_a_new_id(tmp_path: Path) -> None:
    paths = write_posters(tmp_path / "p", 3)
    run(paths, tmp_path / "store")
    old_id = FeatureStore(tmp_path / "store").index()[str(paths[1])]
    paths[1].write_bytes(encode(make_poster(99, size=(70, 45)), "JPEG"))
    os.utime(paths[1], ns=(1, 1))  # a different mtime whatever the clock's resolution
    summary = run(paths, tmp_path / "store")
    store = FeatureStore(tmp_path / "store")
    new_id = store.index()[str(paths[1])]
    assert new_id != old_id and summary.computed == 1
    row = store.load().X[store.load().ids.index(new_id)]
    np.testing.assert_array_equal(row, toy_row(paths[1]))


def test_a_store_made_otherwise_is_refused_or_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = write_posters(tmp_path / "p", 4)
    run(paths, tmp_path / "store")
    with pytest.raises(StoreError, match=r"scale=1\.0 in the store, 2\.0 now") as err:
        run(paths, tmp_path / "store", names=[ToyExtractor(scale=2.0)])
    assert "--mode overwrite" in str(err.value)
    monkeypatch.setattr(ToyExtractor, "version", "2")
    with pytest.raises(StoreError, match="version '1' in the store, '2' now"):
        run(paths, tmp_path / "store")
    monkeypatch.setattr(ToyExtractor, "version", "1")

    run(paths, tmp_path / "store", names=[ToyExtractor(scale=2.0)], mode="overwrite")
    store = FeatureStore(tmp_path / "store")
    assert store.manifest("toy")["config"] == {"scale": 2.0}
    data = store.load()
    by_path = dict(zip(data.paths, data.X, strict=True))
    np.testing.assert_array_equal(by_path[str(paths[0])], toy_row(paths[0], scale=2.0))


def test_two_runs_cannot_write_one_store(tmp_path: Path) -> None:
    paths = write_posters(tmp_path / "p", 2)
    run(paths, tmp_path / "store")
    store = FeatureStore(tmp_path / "store")
    with store.writing():
        with pytest.raises(StoreError, match="another run is writing"):
            run(paths, tmp_path / "store")


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="mode"):
        RunOptions(mode="append")
    with pytest.raises(ConfigError, match="batch size"):
        RunOptions(batch_size=0)


def test_summary_is_json(tmp_path: Path) -> None:
    paths = write_posters(tmp_path / "p", 2)
    summary = run(paths, tmp_path / "store")
    doc = json.loads(json.dumps(summary.to_dict()))
    assert doc["ok"] == 2 and doc["extractors"] == ["toy"] and "toy" in doc["seconds"]
