"""mini-XCEPTION in torch: TF padding rules, shapes, weight loading, parity with Keras."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import require_weights  # noqa: E402

from postergenre.errors import WeightsError  # noqa: E402
from postergenre.features import expression  # noqa: E402
from postergenre.features.expression import (  # noqa: E402
    EXPRESSIONS,
    MaxPoolSame,
    MiniXception,
    crop_faces,
    load_mini_xception,
    tf_same_padding,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "expression_reference.npz"


def _random_bn_stats(net: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics, so that fusing or mis-wiring BN shows in the output."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (60, 3, 2, (0, 1)),
        (15, 3, 2, (1, 1)),
        (8, 3, 2, (0, 1)),
        (64, 3, 1, (1, 1)),
        (60, 1, 2, (0, 0)),
    ],
)
def test_tf_same_padding_puts_the_odd_pixel_at_the_end(size, kernel, stride, expected):
    assert tf_same_padding(size, kernel, stride) == expected


def test_maxpool_same_sizes_and_windows_match_tensorflow():
    x = torch.arange(60 * 60, dtype=torch.float32).reshape(1, 1, 60, 60) * -1.0
    out = MaxPoolSame(3, 2)(x)
    assert out.shape == (1, 1, 30, 30)
    # TF windows start at 0, 2, 4...: the first output is the max of rows/cols 0..2 (the
    # top-left cell, as values decrease), never a padded cell, although all values are < 0.
    assert out[0, 0, 0, 0].item() == 0.0
    assert out[0, 0, 1, 1].item() == x[0, 0, 2, 2].item()
    assert MaxPoolSame(3, 2)(torch.zeros(1, 1, 15, 15)).shape == (1, 1, 8, 8)


def test_random_net_shapes_and_probabilities():
    torch.manual_seed(0)
    net = MiniXception().eval()
    x = torch.rand(3, 1, 64, 64) * 2 - 1
    assert net(x).shape == (3, len(EXPRESSIONS))
    p = net.predict(x)
    assert torch.allclose(p.sum(dim=1), torch.ones(3), atol=1e-5)
    assert (p >= 0).all()


def test_fused_batchnorm_gives_the_same_outputs():
    torch.manual_seed(1)
    net = MiniXception().eval()
    _random_bn_stats(net)
    x = torch.rand(4, 1, 64, 64) * 2 - 1
    before = net(x)
    net.fuse_batchnorm()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert torch.allclose(net(x), before, atol=1e-4)


def test_crop_faces_is_grey_scaled_and_clipped_not_padded():
    white = torch.full((50, 80, 3), 255, dtype=torch.uint8)
    red = torch.zeros((50, 80, 3), dtype=torch.uint8)
    red[..., 0] = 255
    # The second box sticks out of the image: clipped, so no black border enters the crop.
    boxes = torch.tensor([[10.0, 10.0, 30.0, 40.0], [60.0, -20.0, 100.0, 30.0]])
    crops = crop_faces([white, red], [boxes, boxes[:1]], margin=0.2)
    assert crops.shape == (3, 1, 64, 64)
    assert torch.allclose(crops[:2], torch.ones_like(crops[:2]))
    # ITU-R 601 luma of pure red, scaled to [-1, 1].
    assert torch.allclose(crops[2], torch.full_like(crops[2], 0.299 * 255 / 127.5 - 1), atol=1e-5)


def test_crop_faces_keeps_the_face_region():
    img = torch.zeros((100, 100, 3), dtype=torch.uint8)
    img[40:60, 40:60] = 255  # a bright square "face" on black
    crop = crop_faces([img], [torch.tensor([[40.0, 40.0, 60.0, 60.0]])], margin=0.5)[0, 0]
    # margin 0.5: the 20 px box becomes 30 px, so the middle two thirds of the crop are bright.
    assert crop[32, 32].item() == pytest.approx(1.0)
    assert crop[2, 2].item() == pytest.approx(-1.0)
    assert crop[32, 2].item() == pytest.approx(-1.0)


def test_crop_faces_without_boxes_is_empty():
    img = torch.zeros((20, 20, 3), dtype=torch.uint8)
    assert crop_faces([img], [torch.zeros((0, 4))]).shape == (0, 1, 64, 64)
    assert crop_faces([], []).shape == (0, 1, 64, 64)


def test_not_an_hdf5_file_is_a_weights_error(tmp_path):
    bad = tmp_path / "emotion_model.hdf5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(WeightsError, match="not a readable Keras HDF5"):
        load_mini_xception(bad)


def test_other_keras_graph_is_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "other.hdf5"
    layers = [{"class_name": "InputLayer", "config": {"name": "in"}},
              {"class_name": "Dense", "config": {"name": "dense_1"}}]  # fmt: skip
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {"layers": layers}})
        f.create_group("model_weights")
    with pytest.raises(WeightsError, match="not the FER2013 mini-XCEPTION"):
        load_mini_xception(path)


@pytest.mark.weights
def test_keras_config_matches_the_torch_net():
    require_weights("emotion_minixception")
    from postergenre import weights

    layers, arrays = expression.read_keras_model(weights.resolve("emotion_minixception"))
    assert [layer["class_name"] for layer in layers] == expression.EXPECTED_KERAS_CLASSES
    eps = {layer["config"]["epsilon"] for layer in layers if "epsilon" in layer["config"]}
    assert eps == {1e-3}
    assert arrays["conv2d_7"][0].shape == (3, 3, 128, 7)


@pytest.mark.weights
@pytest.mark.parametrize("fuse", [True, False])
def test_parity_with_keras_reference(fuse):
    """The torch net agrees with Keras (scripts/record_expression_reference.py wrote them)."""
    require_weights("emotion_minixception")
    from postergenre import weights

    ref = np.load(FIXTURE)
    net = load_mini_xception(weights.resolve("emotion_minixception"), "cpu", fuse=fuse)
    x = torch.from_numpy(ref["inputs"])
    with torch.inference_mode():
        logits = net(x).numpy()
        probs = net.predict(x).numpy()
    np.testing.assert_allclose(logits, ref["logits"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(probs, ref["probs"], atol=1e-4, rtol=0)
    names = list(ref["names"])
    assert EXPRESSIONS[int(probs[names.index("astronaut_face")].argmax())] == "happy"
