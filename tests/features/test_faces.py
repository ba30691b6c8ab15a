"""The ``faces`` extractor: features from boxes, config checks, random-weight runs, and with
the real weights: the astronaut's one happy face, none on flat or striped posters, two on a
poster holding her twice."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import make_poster, require_weights

from postergenre.errors import ConfigError
from postergenre.features import get_extractor
from postergenre.features.base import Detection
from postergenre.features.faces import EXPRESSIONS, FEATURE_NAMES, poster_features

COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


def test_feature_names():
    names = get_extractor("faces").feature_names()
    assert names == list(FEATURE_NAMES)
    assert len(set(names)) == len(names) == 14
    assert [f"faces.{e}" for e in EXPRESSIONS] == names[6:13]
    assert {"faces.count", "faces.largest_area", "faces.max_expression"} <= set(names)


def test_building_does_not_import_torch():
    code = (
        "import sys; from postergenre.features import get_extractor; "
        "e = get_extractor('faces', confidence=0.8); e.feature_names(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "override",
    [{"confidence": 1.5}, {"confidence": 0.0}, {"input_size": 8}, {"max_faces": 0},
     {"nms_iou": 0.0}, {"crop_margin": -0.1}, {"batch_size": 0}],
)  # fmt: skip
def test_bad_config_is_refused(override):
    with pytest.raises(ConfigError, match="faces: "):
        get_extractor("faces", **override)


def test_unknown_option_is_refused():
    with pytest.raises(ConfigError, match="unknown option"):
        get_extractor("faces", treshold=0.5)


def test_no_face_gives_zeros():
    row = poster_features(np.zeros((0, 4)), np.zeros((0, 7)), 236, 160)
    assert row.shape == (len(FEATURE_NAMES),)
    assert not row.any()


def test_features_from_two_faces():
    h, w = 200, 100
    boxes = np.array([[10.0, 20.0, 50.0, 60.0], [60.0, 100.0, 80.0, 120.0]])  # 40x40, 20x20
    happy = np.array([0.0, 0.0, 0.0, 0.9, 0.0, 0.0, 0.1])
    neutral = np.array([0.05, 0.0, 0.0, 0.0, 0.15, 0.0, 0.8])
    row = poster_features(boxes, np.stack([happy, neutral]), h, w)
    a1, a2 = 1600 / (h * w), 400 / (h * w)
    assert row[COL["faces.count"]] == 2
    assert row[COL["faces.total_area"]] == pytest.approx(a1 + a2)
    assert row[COL["faces.largest_area"]] == pytest.approx(a1)
    assert row[COL["faces.mean_area"]] == pytest.approx((a1 + a2) / 2)
    assert row[COL["faces.largest_cx"]] == pytest.approx(30 / w)
    assert row[COL["faces.largest_cy"]] == pytest.approx(40 / h)
    # Area-weighted: the big happy face counts four times the small neutral one.
    assert row[COL["faces.happy"]] == pytest.approx(0.9 * 4 / 5)
    assert row[COL["faces.neutral"]] == pytest.approx((0.1 * 4 + 0.8) / 5)
    assert row[COL["faces.angry"] : COL["faces.neutral"] + 1].sum() == pytest.approx(1.0)
    assert row[COL["faces.max_expression"]] == pytest.approx(0.9)


def test_max_expression_leaves_neutral_out():
    neutral = np.array([[0.02, 0.0, 0.03, 0.05, 0.1, 0.0, 0.8]])
    row = poster_features(np.array([[0.0, 0.0, 10.0, 10.0]]), neutral, 100, 100)
    assert row[COL["faces.max_expression"]] == pytest.approx(0.1)


@pytest.fixture(scope="module")
def random_faces():
    # A low threshold so that the random network does report "faces".
    return get_extractor(
        "faces", pretrained=False, confidence=0.3, max_faces=5, input_size=160
    ).load("cpu")


def test_random_weights_extract_and_detect_agree(random_faces):
    images = [make_poster(i, size=(236 + 9 * i, 160 - 4 * i)) for i in range(3)]
    feats = random_faces.extract(images)
    found = random_faces.detect(images)
    assert feats.shape == (3, len(FEATURE_NAMES)) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    counts = feats[:, COL["faces.count"]]
    assert counts.tolist() == [len(d) for d in found]
    assert counts.max() <= 5 and counts.sum() > 0
    for dets in found:
        for d in dets:
            assert isinstance(d, Detection) and d.label == "face"
            assert set(d.extra) == set(EXPRESSIONS)
            assert sum(d.extra.values()) == pytest.approx(1.0, abs=1e-4)


def test_batch_size_does_not_change_results(random_faces):
    images = [make_poster(i) for i in range(5)]
    small = get_extractor(
        "faces", pretrained=False, confidence=0.3, max_faces=5, input_size=160, batch_size=2
    )
    # Random weights give many equal-sized boxes: which one is "largest" is a coin toss that
    # rounding (another batch shape) may flip, so its position is left out here.
    keep = [i for n, i in COL.items() if n not in ("faces.largest_cx", "faces.largest_cy")]
    np.testing.assert_allclose(
        small.load("cpu").extract(images)[:, keep], random_faces.extract(images)[:, keep], atol=1e-4
    )


def test_detect_on_nothing(random_faces):
    assert random_faces.detect([]) == []
    with pytest.raises(ConfigError, match="expected an \\(H, W, 3\\) uint8"):
        random_faces.detect([np.zeros((10, 10), np.uint8)])


# -- real weights ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faces():
    require_weights("retinaface_mnet025", "emotion_minixception")
    return get_extractor("faces").load("cpu")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.mark.weights
def test_astronaut_has_one_happy_face(faces, astronaut):
    (found,) = faces.detect([astronaut])
    assert len(found) == 1
    x0, y0, x1, y1 = found[0].box
    # Her face (by eye: x 175-270, y 60-165 of 512x512), hair excluded.
    assert 165 <= x0 <= 195 and 255 <= x1 <= 285 and 40 <= y0 <= 75 and 160 <= y1 <= 190
    assert max(found[0].extra, key=found[0].extra.get) == "happy"

    row = faces.extract([astronaut])[0]
    assert row[COL["faces.count"]] == 1
    assert row[COL["faces.happy"]] > 0.9
    assert row[COL["faces.max_expression"]] == pytest.approx(row[COL["faces.happy"]], abs=1e-6)
    assert 0.38 < row[COL["faces.largest_cx"]] < 0.50
    assert 0.17 < row[COL["faces.largest_cy"]] < 0.30
    assert 0.025 < row[COL["faces.largest_area"]] < 0.06


@pytest.mark.weights
def test_flat_and_striped_posters_have_no_face(faces):
    flat = np.full((236, 160, 3), (200, 60, 40), np.uint8)
    stripes = np.zeros((236, 160, 3), np.uint8)
    stripes[(np.arange(236) // 12) % 2 == 0] = 255
    vertical = np.ascontiguousarray(stripes.transpose(1, 0, 2))
    feats = faces.extract([flat, stripes, vertical, make_poster(4)])
    assert feats[:, COL["faces.count"]].tolist() == [0, 0, 0, 0]
    assert not feats.any()


@pytest.mark.weights
def test_two_copies_give_two_faces(faces, astronaut):
    twice = np.concatenate([astronaut, astronaut], axis=1)  # 512 x 1024
    (found,) = faces.detect([twice])
    assert len(found) == 2
    left, right = sorted(found, key=lambda d: d.box[0])
    assert left.box[2] < 512 <= right.box[0]
    assert right.box[0] - left.box[0] == pytest.approx(512, abs=8)
    assert all(max(d.extra, key=d.extra.get) == "happy" for d in found)
    row = faces.extract([twice])[0]
    assert row[COL["faces.count"]] == 2
    assert row[COL["faces.total_area"]] == pytest.approx(2 * row[COL["faces.mean_area"]])


@pytest.mark.weights
def test_batch_companions_do_not_change_a_poster(faces, astronaut):
    alone = faces.detect([astronaut])[0]
    # A companion of another size and aspect changes the shared canvas (padding) only.
    mixed = faces.detect([make_poster(5, size=(300, 500)), astronaut])[1]
    assert len(mixed) == len(alone) == 1
    np.testing.assert_allclose(mixed[0].box, alone[0].box, atol=2.0)
    assert mixed[0].score == pytest.approx(alone[0].score, abs=0.02)


@pytest.mark.weights
@pytest.mark.gpu
def test_cuda_matches_cpu(faces, astronaut):
    twice = np.concatenate([astronaut, astronaut], axis=1)
    batch = [astronaut, twice, make_poster(6)]
    cuda = get_extractor("faces").load("cuda")
    np.testing.assert_allclose(cuda.extract(batch), faces.extract(batch), atol=2e-3)
    assert [len(d) for d in cuda.detect(batch)] == [1, 2, 0]
