"""The extractor contract, checked for every name in the registry (default settings, CPU).

A registered name whose module or class is missing fails (the registry promises it);
extractors whose pretrained files are missing (checked offline: no test downloads) are
skipped with the reason, as the ``weights`` marker says.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_poster

from postergenre.errors import WeightsError
from postergenre.features import REGISTRY, available, extractor_class
from postergenre.features.base import Detection, Extractor


def odd_images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "poster": make_poster(0),
        "strip_16x1": rng.integers(0, 256, (16, 1, 3), dtype=np.uint8),
        "strip_1x16": rng.integers(0, 256, (1, 16, 3), dtype=np.uint8),
        "black": np.zeros((236, 160, 3), dtype=np.uint8),
        "huge_3000x2000": make_poster(1, size=(3000, 2000)),
    }


IMAGES = odd_images()


def build(name: str) -> Extractor:
    """The registered extractor ``name``, built; a test failure if it cannot be imported."""
    ref = REGISTRY[name]
    try:
        cls = extractor_class(name)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{name} is registered as {ref}, which cannot be imported: {exc}")
    return cls()


@pytest.fixture(scope="module", params=available())
def extractor(request: pytest.FixtureRequest) -> Extractor:
    name: str = request.param
    ext = build(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSTERGENRE_OFFLINE", "1")  # never download in a test
        try:
            ext.load("cpu")
        except WeightsError as exc:
            pytest.skip(
                f"{name}: pretrained files missing ({exc.message}); `postergenre weights fetch`"
            )
    return ext


@pytest.fixture(scope="module")
def outputs(extractor: Extractor) -> tuple[np.ndarray, np.ndarray]:
    """Two runs over the same batch of odd images."""
    batch = list(IMAGES.values())
    return extractor.extract(batch), extractor.extract(batch)


def test_names_are_unique_and_prefixed(extractor: Extractor) -> None:
    names = extractor.feature_names()
    assert names, "an extractor must produce at least one feature"
    assert len(set(names)) == len(names)
    assert all(
        n.startswith(f"{extractor.name}.") and len(n) > len(extractor.name) + 1 for n in names
    )


def test_shape_dtype_finite_on_odd_images(
    extractor: Extractor, outputs: tuple[np.ndarray, np.ndarray]
) -> None:
    out, _ = outputs
    assert out.shape == (len(IMAGES), len(extractor.feature_names()))
    assert out.dtype == np.float32
    bad = [name for name, row in zip(IMAGES, out, strict=True) if not np.isfinite(row).all()]
    assert not bad, f"non-finite features for {bad}"


def test_deterministic_across_calls(outputs: tuple[np.ndarray, np.ndarray]) -> None:
    first, second = outputs
    np.testing.assert_array_equal(first, second)


def test_each_image_is_its_own_row(extractor: Extractor) -> None:
    # Rows follow the input order: two different posters, swapped, swap their rows.
    a, b = make_poster(2), make_poster(3, size=(240, 150))
    ab = extractor.extract([a, b])
    ba = extractor.extract([b, a])
    np.testing.assert_allclose(ab[::-1], ba, rtol=1e-3, atol=1e-4)


def test_empty_batch(extractor: Extractor) -> None:
    assert extractor.extract([]).shape == (0, len(extractor.feature_names()))


def test_version_and_description_are_recordable(extractor: Extractor) -> None:
    assert isinstance(extractor.version, str) and extractor.version
    described = json.loads(json.dumps(extractor.describe()))
    assert described["extractor"] == extractor.name
    assert described["feature_names"] == extractor.feature_names()


def test_detections_lie_inside_their_images(extractor: Extractor) -> None:
    if not extractor.has_detections:
        pytest.skip(f"{extractor.name} has no detections")
    batch = list(IMAGES.values())
    found = extractor.detect(batch)
    assert len(found) == len(batch)
    for image, detections in zip(batch, found, strict=True):
        h, w = image.shape[:2]
        for d in detections:
            assert isinstance(d, Detection)
            x0, y0, x1, y1 = d.box
            assert -1 <= x0 <= x1 <= w + 1 and -1 <= y0 <= y1 <= h + 1, (d, (h, w))
            assert 0.0 <= d.score <= 1.0


@pytest.mark.parametrize("ref", ["postergenre.features.ghost:GhostExtractor",
                                 "postergenre.features.color:GhostExtractor"])  # fmt: skip
def test_a_registered_extractor_that_is_missing_fails(
    monkeypatch: pytest.MonkeyPatch, ref: str
) -> None:
    monkeypatch.setitem(REGISTRY, "ghost", ref)
    with pytest.raises(pytest.fail.Exception, match="registered as"):
        build("ghost")


def test_gpu_is_another_name_for_cuda_wherever_a_device_is_resolved() -> None:
    import torch

    from postergenre.errors import ConfigError
    from postergenre.features.base import canonical_device, resolve_device

    assert canonical_device("gpu") == "cuda" and canonical_device("gpu:1") == "cuda:1"
    assert canonical_device("cpu") == "cpu"
    if torch.cuda.is_available():
        assert resolve_device("gpu") == "cuda"
    else:
        with pytest.raises(ConfigError, match="'cuda' asked for"):
            resolve_device("gpu")
    with pytest.raises(ConfigError, match="expected auto, cpu or cuda"):
        resolve_device("tpu")
