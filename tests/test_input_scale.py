"""The canonical input scale: one size for every poster, recorded in stores and bundles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_poster, require_weights

from postergenre.errors import ConfigError
from postergenre.input_scale import DEFAULT_SCALE, NATIVE, InputScale


def test_fit_keeps_the_aspect_and_fills_the_box() -> None:
    s = InputScale(160, 236)
    assert s.target_size(1000, 1500) == (157, 236)
    assert s.target_size(2000, 2000) == (160, 160)
    assert s.target_size(80, 118) == (160, 236)  # thumbnails are enlarged too
    big = make_poster(1, size=(1416, 960))
    out = s.apply(big)
    assert out.shape == (236, 160, 3) and out.dtype == np.uint8
    same = make_poster(2, size=(236, 160))
    assert s.apply(same) is same  # already at scale: untouched


def test_records_round_trip_and_old_records_are_native() -> None:
    assert InputScale.from_record(DEFAULT_SCALE.to_record()) == DEFAULT_SCALE
    assert InputScale.from_record(None).native
    assert InputScale.from_record(NATIVE).native
    assert InputScale.parse("200x300") == InputScale(200, 300)
    assert InputScale.parse("native").native
    with pytest.raises(ConfigError, match="WIDTHxHEIGHT"):
        InputScale.parse("large")
    with pytest.raises(ConfigError, match="16..4096"):
        InputScale(4, 4)


def test_a_store_made_at_another_scale_is_refused(tmp_path: Path) -> None:
    from conftest import encode

    from postergenre.errors import StoreError
    from postergenre.features.runner import RunOptions, run_extraction

    files = []
    for i in range(3):
        p = tmp_path / f"p{i}.png"
        p.write_bytes(encode(make_poster(i, size=(472, 320)), "PNG"))
        files.append(str(p))
    store = tmp_path / "store"
    opts = RunOptions(workers=0)
    run_extraction(files, store, ["color"], opts)
    import json

    manifest = json.loads((store / "color" / "manifest.json").read_text())
    assert manifest["input"] == DEFAULT_SCALE.to_record()
    with pytest.raises(StoreError, match="input scale 160x236 in the store, 100x150 now"):
        run_extraction(files, store, ["color"], opts, scale=InputScale(100, 150))


@pytest.mark.slow
@pytest.mark.weights
def test_the_shipped_model_reads_a_scan_and_its_thumbnail_alike(tmp_path: Path) -> None:
    """A poster at its original size, the same poster upscaled 2x, and the same fitted to the
    training scale: probabilities within 0.05 of each other (real extractors)."""
    require_weights("mobilenet_v2", "yolo11n-seg", "retinaface_mnet025", "emotion_minixception")
    import cv2

    import postergenre

    analyzer = postergenre.load_model(device="cpu")
    assert not analyzer.bundle.input_scale.native
    original = make_poster(11, size=(354, 240))
    versions = [
        original,
        cv2.resize(original, (480, 708), interpolation=cv2.INTER_CUBIC),
        analyzer.bundle.input_scale.apply(original),
    ]
    probs = [np.array(list(analyzer.analyze(v).probabilities.values())) for v in versions]
    for p in probs[1:]:
        assert np.abs(p - probs[0]).max() < 0.05


def test_degraded_copies_are_deterministic_per_poster() -> None:
    from postergenre.input_scale import Degrade

    art = make_poster(3, size=(472, 320))
    d = Degrade(seed=1)
    a = d.apply(art, "id-a", DEFAULT_SCALE)
    assert a.shape == (236, 160, 3)
    np.testing.assert_array_equal(a, d.apply(art, "id-a", DEFAULT_SCALE))
    assert not np.array_equal(a, d.apply(art, "id-b", DEFAULT_SCALE))
    assert not np.array_equal(a, Degrade(seed=2).apply(art, "id-a", DEFAULT_SCALE))
    clean = DEFAULT_SCALE.apply(art)
    assert 0 < np.abs(a.astype(int) - clean.astype(int)).mean() < 40
    with pytest.raises(ConfigError, match="jpeg"):
        Degrade(jpeg=(90, 30))


def test_a_degraded_store_is_never_mixed_with_plain_features(tmp_path: Path) -> None:
    from conftest import encode

    from postergenre.errors import StoreError
    from postergenre.features.runner import RunOptions, run_extraction
    from postergenre.input_scale import Degrade

    files = []
    for i in range(2):
        p = tmp_path / f"p{i}.png"
        p.write_bytes(encode(make_poster(i, size=(300, 200)), "PNG"))
        files.append(str(p))
    opts = RunOptions(workers=0)
    run_extraction(files, tmp_path / "aug", ["color"], opts, degrade=Degrade(seed=0))
    with pytest.raises(StoreError, match="degraded copies"):
        run_extraction(files, tmp_path / "aug", ["color"], opts)


def test_copies_of_a_poster_share_its_fold() -> None:
    from postergenre.ensemble.stacker import GenreStacker

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3)).astype(np.float32)
    Y = (rng.random((120, 2)) < 0.4).astype(np.uint8)
    Y[:, 0] = X[:, 0] > 0
    groups = np.r_[np.arange(60), np.arange(60)]  # rows 60.. are copies of rows 0..59
    m = GenreStacker(bases=("xgb",), n_folds=3, xgb_rounds=5, n_jobs=1)
    m.fit(X, Y, groups=groups)
    np.testing.assert_array_equal(m.folds_[:60], m.folds_[60:])
