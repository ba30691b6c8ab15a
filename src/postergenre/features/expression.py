"""FER2013 mini-XCEPTION (facial expression) in torch, weights read from the Keras HDF5 file.

``emotion_model.hdf5`` (oarriaga/face_classification, Keras 2.0.5) holds the graph as JSON in
its ``model_config`` attribute and the weights under ``model_weights/<layer>``. The net:
two valid 3x3 convs (8 channels), four residual blocks (16, 32, 64, 128 channels) of
separable convs with a strided 1x1-conv shortcut, a 3x3 conv to 7 classes, global average.

Keras layouts and semantics that differ from torch, handled here:
- kernels are (kh, kw, in, out) -> torch (out, in, kh, kw); depthwise kernels are
  (kh, kw, in, multiplier) -> torch (in * multiplier, 1, kh, kw);
- ``same`` padding with stride 2 pads only at the end when the total is odd (TensorFlow
  rule), which torch's symmetric ``padding=`` cannot express: pooling pads explicitly;
- BatchNormalization epsilon is read from the config (Keras default 1e-3, torch 1e-5).

Input: (N, 1, 64, 64) grey faces scaled to [-1, 1]. Output of ``forward``: logits (N, 7)
in the order of :data:`EXPRESSIONS`; ``predict`` applies the softmax.

This module imports torch at the top; only :mod:`postergenre.features.faces` imports it,
inside ``load``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from postergenre.errors import WeightsError

EXPRESSIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_SIZE = 64
KERAS_BN_EPSILON = 1e-3
BLOCK_CHANNELS = (16, 32, 64, 128)


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's ``same`` along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class MaxPoolSame(nn.Module):
    """Max pooling with TensorFlow ``same`` padding (padded cells never win)."""

    def __init__(self, kernel: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = tf_same_padding(x.shape[-2], self.kernel, self.stride)
        left, right = tf_same_padding(x.shape[-1], self.kernel, self.stride)
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias): depthwise 3x3 then pointwise 1x1."""

    def __init__(self, cin: int, cout: int, kernel: int = 3) -> None:
        super().__init__()
        # Stride 1 and an odd kernel: TF ``same`` is symmetric here.
        self.depthwise = nn.Conv2d(cin, cin, kernel, padding=kernel // 2, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=KERAS_BN_EPSILON)


class ResidualBlock(nn.Module):
    """sep-conv, BN, ReLU, sep-conv, BN, max-pool /2, plus a strided 1x1-conv + BN shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.sep1 = SeparableConv2d(cin, cout)
        self.bn1 = _bn(cout)
        self.sep2 = SeparableConv2d(cout, cout)
        self.bn2 = _bn(cout)
        self.pool = MaxPoolSame(3, 2)
        # A 1x1 kernel with stride 2 needs no padding under TF ``same`` (total is never > 0).
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.shortcut_bn = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.pool(self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x))))))
        return main + self.shortcut_bn(self.shortcut(x))

    def parametric(self) -> list[nn.Module]:
        # The order in which the Keras config lists this block's weighted layers.
        return [self.sep1, self.bn1, self.sep2, self.bn2, self.shortcut, self.shortcut_bn]


class MiniXception(nn.Module):
    """(N, 1, 64, 64) in [-1, 1] -> expression logits (N, 7)."""

    def __init__(self, num_classes: int = len(EXPRESSIONS)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = _bn(8)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = _bn(8)
        cins = (8, *BLOCK_CHANNELS[:-1])
        self.blocks = nn.Sequential(
            *(ResidualBlock(a, b) for a, b in zip(cins, BLOCK_CHANNELS, strict=True))
        )
        self.head = nn.Conv2d(BLOCK_CHANNELS[-1], num_classes, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.blocks(x)
        return self.head(x).mean(dim=(2, 3))

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Expression probabilities (N, 7); rows sum to 1."""
        return torch.softmax(self.forward(x), dim=1)

    def fuse_batchnorm(self) -> MiniXception:
        """Fold each BatchNorm into the conv before it (eval only; same outputs up to
        rounding, fewer memory passes). Weights cannot be loaded any more afterwards."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        def fold(conv_owner: nn.Module, conv: str, bn_owner: nn.Module, bn: str) -> None:
            folded = fuse_conv_bn_eval(
                getattr(conv_owner, conv).eval(), getattr(bn_owner, bn).eval()
            )
            setattr(conv_owner, conv, folded)
            setattr(bn_owner, bn, nn.Identity())

        fold(self, "conv1", self, "bn1")
        fold(self, "conv2", self, "bn2")
        for block in self.blocks:
            assert isinstance(block, ResidualBlock)
            fold(block.sep1, "pointwise", block, "bn1")
            fold(block.sep2, "pointwise", block, "bn2")
            fold(block, "shortcut", block, "shortcut_bn")
        return self

    def parametric(self) -> list[nn.Module]:
        layers: list[nn.Module] = [self.conv1, self.bn1, self.conv2, self.bn2]
        for block in self.blocks:
            assert isinstance(block, ResidualBlock)
            layers += block.parametric()
        return [*layers, self.head]


#: Layer classes of the Keras graph, in config order, that this torch net reproduces.
_BLOCK_CLASSES = [
    "SeparableConv2D", "BatchNormalization", "Activation", "SeparableConv2D",
    "BatchNormalization", "Conv2D", "MaxPooling2D", "BatchNormalization", "Add",
]  # fmt: skip
EXPECTED_KERAS_CLASSES = [
    "InputLayer", "Conv2D", "BatchNormalization", "Activation",
    "Conv2D", "BatchNormalization", "Activation",
    *(_BLOCK_CLASSES * len(BLOCK_CHANNELS)),
    "Conv2D", "GlobalAveragePooling2D", "Activation",
]  # fmt: skip
_WEIGHTED = ("Conv2D", "SeparableConv2D", "BatchNormalization")


def _as_str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_keras_model(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, list[np.ndarray]]]:
    """The layer list of ``model_config`` and, per layer name, its weight arrays in order."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            config = json.loads(_as_str(f.attrs["model_config"]))
            group = f["model_weights"] if "model_weights" in f else f
            weights: dict[str, list[np.ndarray]] = {}
            for name in group:
                names = [_as_str(n) for n in group[name].attrs.get("weight_names", [])]
                weights[name] = [np.asarray(group[name][n]) for n in names]
    except (OSError, KeyError, ValueError) as exc:
        raise WeightsError(
            f"{path}: not a readable Keras HDF5 model ({exc})",
            hint="run `postergenre weights verify` and fetch emotion_minixception again",
        ) from exc
    return config["config"]["layers"], weights


def _assign(param: torch.Tensor, value: np.ndarray, where: str) -> None:
    tensor = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    if tuple(tensor.shape) != tuple(param.shape):
        raise WeightsError(
            f"{where}: weight of shape {tuple(tensor.shape)}, expected {tuple(param.shape)}",
            hint="this file is not the FER2013 mini-XCEPTION postergenre expects",
        )
    with torch.no_grad():
        param.copy_(tensor)


def _load_layer(module: nn.Module, layer: dict[str, Any], arrays: Sequence[np.ndarray]) -> None:
    kind, name, cfg = layer["class_name"], layer["config"]["name"], layer["config"]
    if kind == "Conv2D":
        assert isinstance(module, nn.Conv2d)
        _assign(module.weight, arrays[0].transpose(3, 2, 0, 1), name)
        if module.bias is not None:
            _assign(module.bias, arrays[1], name)
    elif kind == "SeparableConv2D":
        assert isinstance(module, SeparableConv2d)
        kh, kw, cin, mult = arrays[0].shape
        depthwise = arrays[0].transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)
        _assign(module.depthwise.weight, depthwise, name)
        _assign(module.pointwise.weight, arrays[1].transpose(3, 2, 0, 1), name)
    elif kind == "BatchNormalization":
        assert isinstance(module, nn.BatchNorm2d)
        if not (cfg.get("center", True) and cfg.get("scale", True)):
            raise WeightsError(f"{name}: BatchNormalization without centre/scale is unsupported")
        gamma, beta, mean, var = arrays
        assert module.running_mean is not None and module.running_var is not None
        _assign(module.weight, gamma, name)
        _assign(module.bias, beta, name)
        _assign(module.running_mean, mean, name)
        _assign(module.running_var, var, name)
        module.eps = float(cfg.get("epsilon", KERAS_BN_EPSILON))


def load_mini_xception(path: str | Path, device: str = "cpu", fuse: bool = True) -> MiniXception:
    """A MiniXception in eval mode with the weights of the Keras file at ``path``;
    ``fuse`` folds BatchNorm into the convs (faster, same outputs up to rounding)."""
    layers, weights = read_keras_model(path)
    classes = [layer["class_name"] for layer in layers]
    if classes != EXPECTED_KERAS_CLASSES:
        raise WeightsError(
            f"{path}: layer sequence {classes} is not the FER2013 mini-XCEPTION",
            hint="use the emotion_minixception file from `postergenre weights fetch`",
        )
    net = MiniXception()
    weighted = [layer for layer in layers if layer["class_name"] in _WEIGHTED]
    for module, layer in zip(net.parametric(), weighted, strict=True):
        name = layer["config"]["name"]
        if name not in weights:
            raise WeightsError(f"{path}: no weights for layer {name!r}")
        _load_layer(module, layer, weights[name])
    net.eval()
    if fuse:
        net.fuse_batchnorm()
    net.to(device)
    if device == "cpu":
        # oneDNN's depthwise convolutions run about twice as fast channels-last on CPU.
        net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return net


def crop_faces(
    images: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor], margin: float = 0.2
) -> torch.Tensor:
    """Grey 64x64 crops in [-1, 1] of the faces in ``boxes``, ready for MiniXception.

    ``images``: per image a (H, W, 3) uint8 RGB tensor; ``boxes``: per image a (k, 4)
    float tensor (x0, y0, x1, y1) in that image's pixels. Each box is made square on its
    longer side, enlarged by ``margin`` (FER2013 faces include some hair and chin), and
    clipped to the image. Returns (sum k, 1, 64, 64).
    """
    from postergenre.features.roi_align import roi_align

    crops = []
    for image, box in zip(images, boxes, strict=True):
        if box.shape[0] == 0:
            continue
        h, w = image.shape[:2]
        rgb = image.permute(2, 0, 1).float()
        # ITU-R 601 luma, what OpenCV's BGR2GRAY (used in training) computes.
        luma = torch.tensor([0.299, 0.587, 0.114], device=rgb.device).view(3, 1, 1)
        grey = (rgb * luma).sum(dim=0, keepdim=True)[None] / 127.5 - 1.0
        box = box.float()
        centre = (box[:, :2] + box[:, 2:]) / 2
        side = (box[:, 2:] - box[:, :2]).amax(dim=1, keepdim=True) * (1 + margin)
        square = torch.cat([centre - side / 2, centre + side / 2], dim=1)
        limits = torch.tensor([w, h, w, h], dtype=square.dtype, device=square.device)
        square = torch.minimum(square.clamp(min=0), limits)
        # Adaptive sampling averages several points per output cell: an anti-aliased resize.
        crops.append(
            roi_align(grey, [square], output_size=INPUT_SIZE, sampling_ratio=-1, aligned=True)
        )
    if not crops:
        device = images[0].device if len(images) else "cpu"
        return torch.zeros((0, 1, INPUT_SIZE, INPUT_SIZE), device=device)
    return torch.cat(crops, dim=0)
