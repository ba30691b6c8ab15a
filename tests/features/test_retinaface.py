"""RetinaFace in torch: shapes and priors with random weights; decoding, NMS and the mapping
back to image pixels with a stub network; the real detector where its weights are present."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import require_weights  # noqa: E402

from postergenre.features import retinaface as rf  # noqa: E402


@pytest.fixture(scope="module")
def random_net() -> rf.RetinaFace:
    torch.manual_seed(0)
    return rf.RetinaFace().eval()


@pytest.mark.parametrize(("h", "w"), [(96, 128), (100, 75), (236, 160)])
def test_output_shapes_match_the_prior_count(random_net, h, w):
    with torch.inference_mode():
        loc, logits, marks = random_net(torch.randn(2, 3, h, w))
    p = rf.num_priors(h, w)
    assert loc.shape == (2, p, 4)
    assert logits.shape == (2, p, 2)
    assert marks.shape == (2, p, 10)
    assert rf.prior_boxes(h, w).shape == (p, 4)


def test_prior_count_by_hand():
    # 96 x 128: 12x16, 6x8 and 3x4 cells, two anchors each.
    assert rf.num_priors(96, 128) == 2 * (12 * 16 + 6 * 8 + 3 * 4)


def test_priors_follow_head_order():
    h, w = 64, 96
    priors = rf.prior_boxes(h, w)
    # First cell of stride 8: centre (4, 4) px, anchors 16 then 32 px.
    np.testing.assert_allclose(priors[0], [4 / w, 4 / h, 16 / w, 16 / h], rtol=1e-6)
    np.testing.assert_allclose(priors[1], [4 / w, 4 / h, 32 / w, 32 / h], rtol=1e-6)
    # Next along the row (column 1), before the next row.
    np.testing.assert_allclose(priors[2, :2], [12 / w, 4 / h], rtol=1e-6)
    np.testing.assert_allclose(priors[2 * (w // 8), :2], [4 / w, 12 / h], rtol=1e-6)
    # The last prior: bottom-right cell of stride 32, 512 px anchor.
    rows, cols = math.ceil(h / 32), math.ceil(w / 32)
    np.testing.assert_allclose(
        priors[-1], [(cols - 0.5) * 32 / w, (rows - 0.5) * 32 / h, 512 / w, 512 / h], rtol=1e-6
    )


def test_decode_boxes():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    zero = rf.decode_boxes(torch.zeros(1, 4), priors)
    np.testing.assert_allclose(zero, [[0.4, 0.3, 0.6, 0.7]], atol=1e-6)
    # dx = 1 moves the centre by variance[0] * width; dw = log(2) / variance[1] doubles it.
    loc = torch.tensor([[1.0, 0.0, math.log(2) / 0.2, 0.0]])
    np.testing.assert_allclose(
        rf.decode_boxes(loc, priors), [[0.52 - 0.2, 0.3, 0.52 + 0.2, 0.7]], atol=1e-6
    )


def test_decode_landmarks():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    marks = torch.zeros(1, 10)
    marks[0, 2:4] = torch.tensor([1.0, -1.0])  # second point
    out = rf.decode_landmarks(marks, priors).reshape(5, 2)
    np.testing.assert_allclose(out[0], [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(out[1], [0.5 + 0.1 * 0.2, 0.5 - 0.1 * 0.4], atol=1e-6)


def test_module_prefix_is_stripped_and_keys_load_strictly(random_net):
    state = {f"module.{k}": v for k, v in random_net.state_dict().items()}
    fresh = rf.RetinaFace()
    fresh.load_state_dict(rf.clean_state_dict(state), strict=True)
    assert "body.stage1.0.0.weight" in rf.clean_state_dict(state)


def test_fused_batchnorm_gives_the_same_outputs():
    torch.manual_seed(3)
    net = rf.RetinaFace().eval()
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        before = net(x)
        after = rf.fuse_batchnorm(net)(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


class StubNet(torch.nn.Module):
    """Says "face" (with zero offsets, i.e. the prior box itself) at chosen stride-8 cells."""

    def __init__(self, cells: list[tuple[int, int, int, int, float]]) -> None:
        super().__init__()
        #: (image, row, col, anchor, score)
        self.cells = cells
        self.seen: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor):
        n, _, h, w = x.shape
        self.seen = tuple(x.shape)
        p = rf.num_priors(h, w)
        logits = torch.zeros(n, p, 2)
        logits[..., 0] = 10.0  # background everywhere
        cols = math.ceil(w / 8)
        for img, row, col, anchor, score in self.cells:
            idx = (row * cols + col) * rf.NUM_ANCHORS + anchor
            logits[img, idx] = torch.tensor([0.0, math.log(score / (1 - score))])
        return torch.zeros(n, p, 4), logits, torch.zeros(n, p, 10)


def test_detector_maps_boxes_back_to_each_image():
    big = np.zeros((236, 160, 3), np.uint8)
    small = np.zeros((118, 80, 3), np.uint8)
    # Image 0: cell (row 5, col 3), 32-px anchor; image 1: cell (2, 2), 16-px anchor.
    stub = StubNet([(0, 5, 3, 1, 0.9), (1, 2, 2, 0, 0.8)])
    det = rf.FaceDetector(stub, "cpu", input_size=320, confidence=0.5)
    found = det([big, small])
    # Both are resized to a long side of 320; the canvas is padded to a multiple of 8.
    assert stub.seen == (2, 3, 320, 224)
    s0, s1 = 320 / 236, 320 / 118
    cx, cy = 3 * 8 + 4, 5 * 8 + 4
    np.testing.assert_allclose(
        found[0].boxes,
        [[(cx - 16) / s0, (cy - 16) / s0, (cx + 16) / s0, (cy + 16) / s0]],
        rtol=1e-5,
    )
    np.testing.assert_allclose(found[0].scores, [0.9], rtol=1e-5)
    np.testing.assert_allclose(found[1].boxes, [[12 / s1, 12 / s1, 28 / s1, 28 / s1]], rtol=1e-5)
    assert found[1].landmarks.shape == (1, 10)
    np.testing.assert_allclose(found[1].landmarks[0, :2], [20 / s1, 20 / s1], rtol=1e-5)


def test_detector_threshold_nms_and_max_faces():
    image = np.zeros((160, 160, 3), np.uint8)
    cells = [
        (0, 4, 4, 0, 0.95),  # a face
        (0, 4, 4, 1, 0.90),  # the same place, bigger anchor: IoU 0.25 with the first, kept
        (0, 4, 5, 0, 0.85),  # one cell over: IoU 0.33 with the first, kept at nms_iou 0.4
        (0, 10, 10, 0, 0.60),  # under the threshold
    ]
    det = rf.FaceDetector(StubNet(cells), "cpu", input_size=160, confidence=0.7, nms_iou=0.4)
    assert len(det([image])[0]) == 3
    strict = rf.FaceDetector(StubNet(cells), "cpu", input_size=160, confidence=0.7, nms_iou=0.2)
    assert np.allclose(strict([image])[0].scores, [0.95])
    top2 = rf.FaceDetector(StubNet(cells), "cpu", input_size=160, confidence=0.7, max_faces=2)
    assert np.allclose(top2([image])[0].scores, [0.95, 0.90])


def test_boxes_are_clipped_to_the_image():
    image = np.zeros((64, 64, 3), np.uint8)
    # Cell (0, 0) with the 32-px anchor reaches 12 px past the top-left corner.
    det = rf.FaceDetector(StubNet([(0, 0, 0, 1, 0.9)]), "cpu", input_size=64, confidence=0.5)
    np.testing.assert_allclose(det([image])[0].boxes, [[0, 0, 20, 20]], atol=1e-5)


@pytest.fixture(scope="module")
def real_detector() -> rf.FaceDetector:
    require_weights("retinaface_mnet025")
    from postergenre import weights

    net = rf.load_retinaface(str(weights.resolve("retinaface_mnet025")), "cpu")
    return rf.FaceDetector(net, "cpu", input_size=416, confidence=0.7)


@pytest.mark.weights
def test_weights_file_matches_the_network():
    require_weights("retinaface_mnet025")
    from postergenre import weights

    state = torch.load(weights.resolve("retinaface_mnet025"), map_location="cpu", weights_only=True)
    expected = {k: tuple(v.shape) for k, v in rf.RetinaFace().state_dict().items()}
    got = {k: tuple(v.shape) for k, v in rf.clean_state_dict(state).items()}
    assert got == expected


@pytest.mark.weights
def test_astronaut_face_and_landmarks(real_detector):
    from skimage import data

    found = real_detector([data.astronaut()])[0]
    assert len(found) == 1
    x0, y0, x1, y1 = found.boxes[0]
    assert 165 <= x0 <= 195 and 255 <= x1 <= 285 and 40 <= y0 <= 75 and 160 <= y1 <= 190
    assert found.scores[0] > 0.95
    eye_l, eye_r, nose, mouth_l, mouth_r = found.landmarks[0].reshape(5, 2)
    assert eye_l[0] < nose[0] < eye_r[0]
    assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
