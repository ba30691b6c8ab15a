"""The network a fine-tune trains: an ImageNet trunk, global average pooling, dropout and
a new linear multi-label head (one logit per genre).

The trunk is the ``cnn`` extractor's own network (our MobileNetV2, torchvision's ResNets)
with the keys of its ImageNet file, so the trained trunk loads into the extractor as it
is. Its ImageNet classifier is carried along untouched (not on the path to the head).

This module imports torch at the top; only :mod:`postergenre.finetune.train` and
:mod:`postergenre.finetune.benchmark_row` import it, inside functions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from postergenre.features.cnn import BACKBONES, _builder
from postergenre.finetune.config import trunk_stage_count


def trunk_stages(trunk: nn.Module, backbone: str) -> list[tuple[nn.Module, ...]]:
    """The trunk as consecutive stages, each a tuple of modules applied in order:
    mobilenet_v2 ``features[0]`` .. ``features[18]``; a ResNet's stem (conv1, bn1, relu,
    maxpool), then layer1 .. layer4. Their composition is the last conv feature map."""
    if backbone == "mobilenet_v2":
        features: Any = trunk.features
        return [(block,) for block in features]
    t: Any = trunk
    return [(t.conv1, t.bn1, t.relu, t.maxpool), (t.layer1,), (t.layer2,), (t.layer3,), (t.layer4,)]


def build_trunk(backbone: str, state: dict[str, torch.Tensor] | None, seed: int) -> nn.Module:
    """The trunk with ``state`` loaded strictly (None: random weights, seeded, without
    touching the caller's global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trunk: nn.Module = _builder(backbone)(weights=None)
    if state is not None:
        trunk.load_state_dict(state)
    return trunk


class FinetuneNet(nn.Module):
    """(n, 3, S, S) ImageNet-normalised input -> (n, G) genre logits.

    The first ``freeze`` trunk stages keep their weights and BatchNorm statistics (always
    in eval mode, run without gradients).
    """

    def __init__(
        self, backbone: str, trunk: nn.Module, n_genres: int, dropout: float, freeze: int = 0
    ) -> None:
        super().__init__()
        if not 0 <= freeze < trunk_stage_count(backbone):
            raise ValueError(f"freeze: expected 0..{trunk_stage_count(backbone) - 1}")
        self.backbone_name = backbone
        self.freeze = freeze
        self.backbone = trunk
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(BACKBONES[backbone], n_genres)
        self._stages = trunk_stages(trunk, backbone)
        for param in self.backbone.parameters():
            param.requires_grad_(False)
        for stage in self._stages[freeze:]:
            for module in stage:
                for param in module.parameters():
                    param.requires_grad_(True)

    def train(self, mode: bool = True) -> FinetuneNet:
        super().train(mode)
        for stage in self._stages[: self.freeze]:
            for module in stage:
                module.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3, S, S) -> (n, dim): the pooled last feature map, as the ``cnn`` extractor."""
        h = x
        if self.freeze:
            with torch.no_grad():
                h = _run(self._stages[: self.freeze], h)
        h = _run(self._stages[self.freeze :], h)
        return h.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.dropout(self.embed(x)))
        return logits

    def trainable(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of everything the optimiser updates, in a fixed order."""
        for name, param in self.named_parameters():
            if param.requires_grad:
                yield name, param


def _run(stages: Sequence[tuple[nn.Module, ...]], h: torch.Tensor) -> torch.Tensor:
    for stage in stages:
        for module in stage:
            h = module(h)
    return h
