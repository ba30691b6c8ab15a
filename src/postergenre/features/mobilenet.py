"""MobileNetV2 (Sandler et al., 2018) in plain torch, shaped to load ``mobilenet_v2-b0353104.pth``.

The network of the paper's Table 2 at width 1.0: a stride-2 3x3 conv to 32 channels, then
17 inverted-residual blocks (1x1 expansion by ``t``, 3x3 depthwise conv carrying the
stride, linear 1x1 projection; a skip connection where stride is 1 and the width is
unchanged), a 1x1 conv to 1280 channels, and a dropout + linear ImageNet classifier. Every
conv is followed by BatchNorm; the activation is ReLU6, except after the projection.

Module names follow the file's keys, so the file loads with ``strict=True``:
``features.<i>`` for the stem (``0``), the blocks (``1``..``17``, each ``.conv``) and the last
1x1 conv (``18``); inside a conv-BN-ReLU6 unit ``0`` is the conv and ``1`` the BN;
``classifier.1`` is the linear layer. The forward pass is ``features`` -> global average
-> ``classifier``; :class:`~postergenre.features.cnn.CNNExtractor` calls the parts itself.

This module imports torch at the top; only :mod:`postergenre.features.cnn` imports it,
inside ``load``.
"""

from __future__ import annotations

import torch
from torch import nn

#: (expansion t, output channels c, repeats n, stride of the first repeat s): Table 2.
BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
NUM_CLASSES = 1000
DROPOUT = 0.2


def init_weights(model: nn.Module) -> None:
    """He init for the convs keeps activations from fading through 50 layers, so that a
    randomly initialised network (tests without weights) still gives usable outputs."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def _conv_bn_relu6(
    cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1, unless ``t`` is 1), depthwise 3x3 with the stride, project (1x1, linear)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn_relu6(cin, hidden))
        layers += [
            _conv_bn_relu6(hidden, hidden, kernel=3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    """(N, 3, H, W) normalised RGB -> ``features`` (N, 1280, H/32, W/32) -> logits (N, 1000)."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu6(3, STEM_CHANNELS, kernel=3, stride=2)]
        cin = STEM_CHANNELS
        for expansion, cout, repeats, stride in BLOCKS:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expansion))
                cin = cout
        layers.append(_conv_bn_relu6(cin, LAST_CHANNELS))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(LAST_CHANNELS, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x).mean(dim=(2, 3))
        logits: torch.Tensor = self.classifier(pooled)
        return logits
