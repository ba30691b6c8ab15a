"""The feature store on its own: shards, done markers, joins, failures, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from postergenre.errors import StoreError
from postergenre.store import FeatureStore, IndexRow, StoreData, manifest_differences


def describe(name: str, d: int, version: str = "1", **config: object) -> dict[str, object]:
    return {
        "extractor": name,
        "version": version,
        "config": config,
        "feature_names": [f"{name}.f{j}" for j in range(d)],
    }


def add_shard(
    store: FeatureStore,
    name: str,
    shard: int,
    rows: dict[str, tuple[str, np.ndarray | None]],
    d: int,
) -> None:
    """rows: poster_id -> (status, features or None)."""
    ids = sorted(rows)
    feats = np.stack([rows[i][1] if rows[i][1] is not None else np.full(d, np.nan) for i in ids])
    store.write_shard(
        name,
        shard,
        ids,
        [f"/posters/{i}.jpg" for i in ids],
        [rows[i][0] for i in ids],
        ["" if rows[i][0] == "ok" else f"/posters/{i}.jpg: bad" for i in ids],
        feats.astype(np.float32),
        [f"{name}.f{j}" for j in range(d)],
        {"rows": len(ids)},
    )


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    s = FeatureStore(tmp_path / "store", create=True)
    s.write_manifest(describe("color", 2), {"numpy": np.__version__})
    s.write_manifest(describe("gist", 3), {"numpy": np.__version__})
    v = np.arange(10, dtype=np.float32)
    add_shard(s, "color", 0, {"b": ("ok", v[:2]), "a": ("ok", v[2:4]), "c": ("corrupt", None)}, 2)
    add_shard(s, "color", 1, {"d": ("ok", v[4:6])}, 2)
    add_shard(
        s, "gist", 0, {"b": ("ok", v[:3]), "a": ("extract_error", None), "c": ("corrupt", None)}, 3
    )
    add_shard(s, "gist", 1, {"d": ("ok", v[5:8])}, 3)
    s.write_index(
        [IndexRow(f"/posters/{i}.jpg", i, 1, 1) for i in "abcd"]
        + [IndexRow("/copy/b.jpg", "b", 1, 1)]
    )
    return s


def test_load_is_an_inner_join_of_ok_rows_sorted_by_id(store: FeatureStore) -> None:
    data = store.load()
    assert isinstance(data, StoreData)
    assert data.ids == ["b", "d"]  # a failed in gist, c everywhere
    assert data.paths == ["/copy/b.jpg", "/posters/d.jpg"]  # an id's first path, sorted
    assert data.feature_names == ["color.f0", "color.f1", "gist.f0", "gist.f1", "gist.f2"]
    assert data.X.dtype == np.float32
    np.testing.assert_array_equal(data.X, [[0, 1, 0, 1, 2], [4, 5, 5, 6, 7]])
    only_color = store.load(["color"])
    assert only_color.ids == ["a", "b", "d"]
    np.testing.assert_array_equal(only_color.X, [[2, 3], [0, 1], [4, 5]])


def test_to_pandas_failures_index_and_extractors(store: FeatureStore) -> None:
    frame = store.to_pandas(["gist"])
    assert list(frame.index) == ["b", "d"] and list(frame.columns) == [
        "path",
        "gist.f0",
        "gist.f1",
        "gist.f2",
    ]
    assert frame.loc["d", "gist.f2"] == 7
    fails = store.failures()
    assert [(f.poster_id, f.extractor, f.status) for f in fails] == [
        ("a", "gist", "extract_error"),
        ("c", "color", "corrupt"),
        ("c", "gist", "corrupt"),
    ]
    assert fails[0].error.endswith("bad")
    assert store.index()["/copy/b.jpg"] == "b"
    assert store.lookup(["/posters/d.jpg", "/elsewhere.jpg"]) == ["d", None]
    assert store.extractors() == ["color", "gist"]  # registry order


def test_a_shard_without_its_done_file_does_not_exist(store: FeatureStore) -> None:
    store.done_file("color", 1).unlink()
    assert store.done_shards("color") == [0]
    assert "d" not in store.load(["color"]).ids


def test_info_counts_rows_by_status(store: FeatureStore) -> None:
    info = store.info()
    color = info["extractors"]["color"]
    assert (color["rows"], color["ok"], color["failed"], color["features"]) == (4, 3, 1, 2)
    assert color["failed_by_kind"] == {"corrupt": 1}
    assert info["extractors"]["gist"]["failed_by_kind"] == {"corrupt": 1, "extract_error": 1}
    json.dumps(info)


def test_opening_what_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no feature store"):
        FeatureStore(tmp_path / "nothing")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("precious")
    with pytest.raises(StoreError, match="non-empty folder"):
        FeatureStore(tmp_path / "busy", create=True)
    empty = FeatureStore(tmp_path / "fresh", create=True)
    with pytest.raises(StoreError, match="holds no features"):
        empty.load()
    with pytest.raises(StoreError, match="no 'cnn' features"):
        empty.manifest("cnn")


def test_prepare_extractor_names_what_differs(store: FeatureStore) -> None:
    assert store.prepare_extractor(describe("color", 2), overwrite=False) is True
    with pytest.raises(StoreError, match=r"config k='<absent>' in the store, 7 now"):
        store.prepare_extractor(describe("color", 2, k=7), overwrite=False)
    assert store.prepare_extractor(describe("color", 2, k=7), overwrite=True) is False
    assert "color" not in store.extractors()
    assert store.prepare_extractor(describe("faces", 4), overwrite=False) is False
    # A manifest without any done shard protects nothing: a new setup replaces it.
    store.write_manifest(describe("faces", 4), {})
    assert store.prepare_extractor(describe("faces", 4, k=1), overwrite=False) is False
    assert "faces" not in store.extractors()


def test_manifest_differences() -> None:
    a = describe("cnn", 4, backbone="mobilenet_v2", size=224)
    assert manifest_differences(a, a) == []
    b = describe("cnn", 4, version="2", backbone="resnet18", size=224)
    diffs = manifest_differences(a, b)
    assert diffs[0] == "version '1' in the store, '2' now"
    assert diffs[1] == "config backbone='mobilenet_v2' in the store, 'resnet18' now"
    c = describe("cnn", 5, backbone="mobilenet_v2", size=224)
    assert manifest_differences(a, c) == ["feature names differ (4 in the store, 5 now)"]
    # Tuples in a config are lists once in JSON: not a difference.
    assert manifest_differences(describe("x", 1, t=[1, 2]), describe("x", 1, t=(1, 2))) == []


def test_writes_are_atomic_and_leave_no_temporaries(store: FeatureStore) -> None:
    assert not list(store.path.rglob("*.tmp-*"))
    leftover = store.path / "color" / "shard-00009.parquet.tmp-12345"
    leftover.write_bytes(b"partial")
    with store.writing():
        pass
    assert not leftover.exists()
