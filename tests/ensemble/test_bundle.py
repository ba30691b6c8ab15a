"""Bundles: exact round trip, no pickle ever, refusal of mismatched features."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from postergenre.ensemble.bundle import (
    default_bundle_path,
    feature_reference,
    load_bundle,
    save_bundle,
)
from postergenre.errors import ModelError


def _extractors(names: list[str]) -> list[dict[str, Any]]:
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(n.split(".")[0], []).append(n)
    return [
        {"extractor": g, "version": "1", "config": {"k": 1}, "feature_names": f}
        for g, f in groups.items()
    ]


@pytest.fixture(scope="module")
def saved(fitted: Any, data: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    X, _, names = data
    path = tmp_path_factory.mktemp("bundle") / "model"
    save_bundle(
        fitted,
        path,
        card={"name": "test"},
        extractors=_extractors(names),
        reference=feature_reference(X, names),
        threshold_ids=["ab" * 32],
        card_markdown="# test\n",
    )
    return path


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_round_trip_gives_identical_predictions(saved: Path, fitted: Any, data: Any) -> None:
    X, _, names = data
    b = load_bundle(saved)
    np.testing.assert_array_equal(b.model.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(b.model.predict(X), fitted.predict(X))
    e1, e2 = b.model.explain(X[:5]), fitted.explain(X[:5])
    np.testing.assert_array_equal(e1.contributions, e2.contributions)
    assert b.genres == fitted.genres_ and b.feature_names == names
    np.testing.assert_array_equal(b.thresholds, fitted.thresholds_)
    assert b.extractor_names == ["cnn", "objects", "faces", "color", "gist"]
    assert b.card == {"name": "test"}
    assert b.threshold_ids == frozenset({"ab" * 8})
    ref = b.reference["color.c0"]
    assert ref["p10"] <= ref["median"] <= ref["p90"]
    assert not any(k.startswith("cnn.") for k in b.reference)


def test_bundle_is_only_json_ubj_safetensors_and_small(saved: Path) -> None:
    suffixes = {p.suffix for p in saved.iterdir()}
    assert suffixes <= {".json", ".ubj", ".safetensors", ".md"}
    assert sum(p.stat().st_size for p in saved.iterdir()) < 25e6


@pytest.mark.parametrize("name", ["model.pkl", "extra.pickle", "m.joblib", "w.pt"])
def test_bundle_with_a_pickle_file_is_refused(saved: Path, tmp_path: Path, name: str) -> None:
    path = _copy(saved, tmp_path / "m")
    (path / name).write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ModelError, match="pickle"):
        load_bundle(path)


def test_bundle_with_object_npz_is_refused_but_plain_npz_is_not(
    saved: Path, tmp_path: Path
) -> None:
    path = _copy(saved, tmp_path / "m")
    np.savez(path / "plain.npz", a=np.arange(3))
    load_bundle(path)  # numeric arrays carry no code
    np.savez(path / "evil.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ModelError, match="object"):
        load_bundle(path)


def test_edited_file_is_refused(saved: Path, tmp_path: Path) -> None:
    path = _copy(saved, tmp_path / "m")
    ref = path / "reference.json"
    ref.write_text(ref.read_text().replace("median", "median "))
    with pytest.raises(ModelError, match="sha256"):
        load_bundle(path)


def test_mismatched_extractors_are_refused_with_the_difference(saved: Path, data: Any) -> None:
    _, _, names = data
    b = load_bundle(saved)
    good = _extractors(names)
    b.check_extractors(good)
    b.check_features(names)

    older = json.loads(json.dumps(good))
    older[1]["version"] = "0"
    with pytest.raises(ModelError, match=r"objects: version '0' in the store"):
        b.check_extractors(older)

    other = json.loads(json.dumps(good))
    other[0]["config"] = {"k": 2}
    with pytest.raises(ModelError, match=r"cnn: config k=2 in the store, 1 in the model"):
        b.check_extractors(other)

    renamed = json.loads(json.dumps(good))
    renamed[3]["feature_names"] = [n + "x" for n in renamed[3]["feature_names"]]
    with pytest.raises(ModelError, match=r"color: feature names differ"):
        b.check_extractors(renamed)

    with pytest.raises(ModelError, match=r"has no 'gist' features"):
        b.check_extractors(good[:4])

    with pytest.raises(ModelError, match=r"1 missing \(e.g. gist.s0.o7.r0c0\)"):
        b.check_features(names[:-1])


def test_store_made_otherwise_is_refused(tmp_path: Path) -> None:
    from postergenre.ensemble.stacker import GenreStacker
    from postergenre.ensemble.synthetic import make_labelled_store
    from postergenre.features.store import FeatureStore

    a = make_labelled_store(tmp_path / "a", n=30, seed=0, version="1")
    b = make_labelled_store(tmp_path / "b", n=30, seed=0, version="2")
    store_a = FeatureStore(a.store)
    m = GenreStacker(
        feature_names=a.feature_names, n_folds=2, xgb_rounds=2, mlp_epochs=1, mlp_hidden=4, n_jobs=1
    ).fit(a.X, a.Y)
    extractors = [store_a.manifest(n) for n in store_a.extractors()]
    save_bundle(m, tmp_path / "model", extractors=extractors)
    bundle = load_bundle(tmp_path / "model")
    bundle.check_store(store_a)
    with pytest.raises(ModelError, match="version '2' in the store, '1' in the model"):
        bundle.check_store(FeatureStore(b.store))


def test_save_checks_extractor_columns(fitted: Any, data: Any, tmp_path: Path) -> None:
    _, _, names = data
    with pytest.raises(ModelError, match="features do not match"):
        save_bundle(fitted, tmp_path / "m", extractors=_extractors(names)[:2])


def test_save_refuses_to_overwrite_a_folder_that_is_not_a_bundle(
    fitted: Any, tmp_path: Path
) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").write_text("mine")
    with pytest.raises(ModelError, match="not a model bundle"):
        save_bundle(fitted, tmp_path / "m")
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"


def test_missing_bundles_are_clear_model_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postergenre.ensemble import bundle as bundle_mod

    with pytest.raises(ModelError, match="no model bundle"):
        load_bundle(tmp_path)
    monkeypatch.setattr(bundle_mod, "default_bundle_path", lambda: tmp_path / "none")
    with pytest.raises(ModelError, match="no default model"):
        load_bundle()
    assert default_bundle_path().parts[-3:] == ("postergenre", "models", "default")


def test_round_trip_of_a_three_base_bagged_model(data: Any, tmp_path: Path) -> None:
    from postergenre.ensemble.stacker import GenreStacker

    X, Y, names = data
    m = GenreStacker(
        feature_names=names, bases=("xgb", "mlp", "mlp_all"), mlp_bags=2, n_folds=2,
        xgb_rounds=3, mlp_epochs=1, mlp_hidden=4, n_jobs=1,
    ).fit(X[:100], Y[:100])  # fmt: skip
    save_bundle(m, tmp_path / "m")
    b = load_bundle(tmp_path / "m")
    np.testing.assert_array_equal(b.model.predict_proba(X[100:]), m.predict_proba(X[100:]))
    assert b.model.base_names_ == ["xgb", "mlp", "mlp_all"]
