"""Our YOLO11 detection network: built from an architecture dict, it has Ultralytics' keys and
computes what Ultralytics' DetectionModel computes (random weights: no pretrained files)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from postergenre.errors import WeightsError  # noqa: E402
from postergenre.features import yolo  # noqa: E402

#: The architecture yolo11n-seg.pt records (Ultralytics' yolo11-seg.yaml at scale n).
YOLO11N_SEG: dict[str, Any] = {
    "nc": 80,
    "scales": {
        "n": [0.5, 0.25, 1024],
        "s": [0.5, 0.5, 1024],
        "m": [0.5, 1.0, 512],
        "l": [1.0, 1.0, 512],
        "x": [1.0, 1.5, 512],
    },
    "backbone": [
        [-1, 1, "Conv", [64, 3, 2]],
        [-1, 1, "Conv", [128, 3, 2]],
        [-1, 2, "C3k2", [256, False, 0.25]],
        [-1, 1, "Conv", [256, 3, 2]],
        [-1, 2, "C3k2", [512, False, 0.25]],
        [-1, 1, "Conv", [512, 3, 2]],
        [-1, 2, "C3k2", [512, True]],
        [-1, 1, "Conv", [1024, 3, 2]],
        [-1, 2, "C3k2", [1024, True]],
        [-1, 1, "SPPF", [1024, 5]],
        [-1, 2, "C2PSA", [1024]],
    ],
    "head": [
        [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],
        [[-1, 6], 1, "Concat", [1]],
        [-1, 2, "C3k2", [512, False]],
        [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],
        [[-1, 4], 1, "Concat", [1]],
        [-1, 2, "C3k2", [256, False]],
        [-1, 1, "Conv", [256, 3, 2]],
        [[-1, 13], 1, "Concat", [1]],
        [-1, 2, "C3k2", [512, False]],
        [-1, 1, "Conv", [512, 3, 2]],
        [[-1, 10], 1, "Concat", [1]],
        [-1, 2, "C3k2", [1024, True]],
        [[16, 19, 22], 1, "Segment", ["nc", 32, 256]],
    ],
    "scale": "n",
    "yaml_file": "yolo11n-seg.yaml",
    "ch": 3,
}
STRIDES = (8.0, 16.0, 32.0)


def _randomise_batchnorm(net: Any, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial, or folding them is a no-op
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)


def _ours(scale: str = "n", seed: int = 0) -> yolo.YoloDetector:
    arch = yolo.detection_arch({**YOLO11N_SEG, "scale": scale})
    torch.manual_seed(seed)
    net = yolo.YoloDetector(arch, STRIDES).eval()
    _randomise_batchnorm(net, seed)
    return net


def _ultralytics_detection_model(scale: str) -> Any:
    pytest.importorskip("ultralytics", reason="Ultralytics is the reference")
    from postergenre.features.objects import _configure_ultralytics

    _configure_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    cfg = copy.deepcopy({**YOLO11N_SEG, "scale": scale})
    source, repeats, _, _ = cfg["head"][-1]
    cfg["head"][-1] = [source, repeats, "Detect", ["nc"]]
    return DetectionModel(cfg, ch=3, nc=80, verbose=False).eval()


@pytest.mark.parametrize(("height", "width"), [(64, 64), (96, 160)])
def test_output_is_boxes_then_class_probabilities_per_anchor(height: int, width: int) -> None:
    net = _ours()
    with torch.inference_mode():
        out = net(torch.rand(2, 3, height, width))
    anchors = sum((height // s) * (width // s) for s in (8, 16, 32))
    assert out.shape == (2, 4 + 80, anchors)
    assert ((out[:, 4:] >= 0) & (out[:, 4:] <= 1)).all()  # sigmoid scores
    assert (out[:, 2:4] >= 0).all()  # widths and heights


def test_keys_and_shapes_follow_the_checkpoint() -> None:
    state = _ours().state_dict()
    assert state["model.0.conv.weight"].shape == (16, 3, 3, 3)
    assert state["model.6.m.0.m.1.cv2.conv.weight"].shape == (32, 32, 3, 3)  # C3k inside C3k2
    assert state["model.10.m.0.attn.pe.conv.weight"].shape == (128, 1, 3, 3)
    assert state["model.23.cv3.2.0.0.conv.weight"].shape == (256, 1, 3, 3)  # depthwise
    assert state["model.23.dfl.conv.weight"].flatten().tolist() == list(range(16))
    assert not any(".proto." in k or ".cv4." in k for k in state)  # no mask branches


# "m" also covers Ultralytics' rule that C3k2 rows use C3k blocks at scales m, l and x.
@pytest.mark.parametrize("scale", ["n", "m"])
def test_same_function_as_ultralytics_detection_model(scale: str) -> None:
    reference = _ultralytics_detection_model(scale)
    ours = _ours(scale)
    wanted = reference.state_dict()
    assert list(ours.state_dict()) == list(wanted)
    _randomise_batchnorm(reference, 1)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.rand(2, 3, 96, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = reference(x)[0]
        torch.testing.assert_close(ours(x), expected, rtol=0, atol=1e-4)
        reference.fuse(verbose=False)
        ours.fuse()
        torch.testing.assert_close(ours(x), reference(x)[0], rtol=0, atol=1e-4)


def test_fusing_batchnorm_keeps_the_function() -> None:
    net = _ours(seed=3)
    x = torch.rand(1, 3, 96, 64)
    with torch.inference_mode():
        before = net(x)
        net.fuse()
        after = net(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    torch.testing.assert_close(after, before, rtol=0, atol=1e-3)


def test_converted_file_round_trip(tmp_path: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    net = _ours(seed=4)
    arch = yolo.detection_arch(YOLO11N_SEG)
    names = [f"class{i}" for i in range(80)]
    meta = yolo.detector_metadata(arch, names, STRIDES, "ab" * 32)
    path = tmp_path / "det.safetensors"
    safetensors_torch.save_file(
        {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()},
        str(path),
        metadata=meta,
    )
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        loaded_meta = f.metadata()
    rebuilt, got_names = yolo.build_detector(state, loaded_meta, fuse=False)
    assert got_names == names
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt(x), net.half().float()(x), rtol=0, atol=1e-5)


def test_unsupported_architectures_are_weights_errors() -> None:
    arch = yolo.detection_arch(YOLO11N_SEG)
    bad = copy.deepcopy(arch)
    bad["backbone"][2][2] = "C2f"
    with pytest.raises(WeightsError, match="'C2f' is not supported"):
        yolo.YoloDetector(bad, STRIDES)
    with pytest.raises(WeightsError, match="end2end"):
        yolo.YoloDetector({**arch, "end2end": True}, STRIDES)
    pose = copy.deepcopy(YOLO11N_SEG)
    pose["head"][-1][2] = "Pose"
    with pytest.raises(WeightsError, match="Pose head"):
        yolo.detection_arch(pose)


def test_metadata_of_another_format_is_refused() -> None:
    meta = yolo.detector_metadata(yolo.detection_arch(YOLO11N_SEG), ["a"] * 80, STRIDES, "00")
    with pytest.raises(WeightsError, match="format"):
        yolo.build_detector({}, {**meta, "format": "something/0"})
    with pytest.raises(WeightsError, match="do not fit"):
        yolo.build_detector({}, meta)
    with pytest.raises(WeightsError, match="metadata"):
        yolo.build_detector({}, {**meta, "arch": json.dumps(None)[:2]})
