"""Options of a fine-tune: what is learned (:class:`FinetuneConfig`, recorded and compared
on resume) and how the run goes (:class:`RunSettings`, which changes no result on CPU)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from postergenre.ensemble.label_shift import WeightRule
from postergenre.errors import ConfigError
from postergenre.input_scale import DEFAULT_SCALE, InputScale


@dataclass(frozen=True)
class Augment:
    """Standard training augmentation, drawn per (seed, epoch, poster), on the poster at the
    canonical scale before it is fitted to the network input.

    ``hflip``: mirror half the posters. ``crop``: keep a random window of at least this
    fraction of the poster's area (1: never crop). ``jitter``: brightness, contrast and
    saturation each scaled by a factor in [1 - jitter, 1 + jitter] (0: none).
    """

    hflip: bool = True
    crop: float = 0.8
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 0.25 <= self.crop <= 1.0:
            raise ConfigError(f"augment crop: expected 0.25..1, got {self.crop}")
        if not 0.0 <= self.jitter < 1.0:
            raise ConfigError(f"augment jitter: expected 0 <= jitter < 1, got {self.jitter}")


@dataclass(frozen=True)
class Balance:
    """The original study's balancing, redrawn every epoch: each genre capped at ``cap``
    training posters, rare genres repeated up to ``max_repeat`` times (see
    :func:`postergenre.ensemble.stacker.balanced_indices`)."""

    cap: int = 1000
    max_repeat: int = 3

    def __post_init__(self) -> None:
        if self.cap < 1:
            raise ConfigError(f"balance cap: expected >= 1, got {self.cap}")
        if self.max_repeat < 1:
            raise ConfigError(f"balance max_repeat: expected >= 1, got {self.max_repeat}")


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that decides the fine-tuned network (with the data and the seed).

    Defaults are the default recipe: mobilenet_v2 from its ImageNet weights, fitted like
    the ``cnn`` extractor's default (pad, 224), per-(poster, genre) label weights towards
    the IMDb-wide prior, standard augmentation, no balancing, 3 epochs, the first 7 trunk
    stages frozen. Measured with ``benchmarks/finetune.py time`` (README "Fine-tuning"): on
    2 CPU cores a full fine-tune costs about 0.12 CPU-seconds per training poster, the
    recipe 0.06 (the frozen stages run at 112 and 56 pixels, where a backward pass costs
    most), so 3 epochs over the 17,874 shared training posters fit the 90-minute budget on
    one core even with the other one busy.
    """

    backbone: str = "mobilenet_v2"
    #: False: start from random weights (seeded); for tests, and the ResNets offline.
    pretrained: bool = True
    fit: str = "pad"
    input_size: int = 224
    #: Every poster is brought to this scale first, as extraction does.
    input_scale: InputScale = DEFAULT_SCALE
    epochs: int = 3
    batch_size: int = 32
    #: Peak learning rate of the backbone and of the new head (AdamW; linear warm-up over
    #: ``warmup`` of the steps, then cosine decay to 0 at the last planned step).
    lr: float = 3e-4
    head_lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05
    dropout: float = 0.2
    #: Leading trunk stages kept as they are (frozen weights and BatchNorm statistics):
    #: mobilenet_v2 has 19 (``features[0..18]``), the ResNets 5 (stem, layer1..4). None:
    #: the backbone's default (:data:`DEFAULT_FREEZE`). mobilenet_v2's 7 keeps its stride-2
    #: to stride-8 stages (edges, textures; 2.5% of the trunk's weights); 0 trains
    #: everything, as the original study did, at twice the cost.
    freeze: int | None = None
    augment: Augment | None = field(default_factory=Augment)
    balance: Balance | None = None
    #: Epochs without a better val macro AP before stopping (0: never stop early).
    patience: int = 2
    seed: int = 0
    min_count: int = 100
    split_column: str = "split"
    train_split: str = "train"
    val_split: str | None = "val"
    group_column: str | None = "source"
    label_weights: bool = True
    #: A reference genre prior file; None: the shipped IMDb-wide shares.
    prior: str | None = None
    weight_rule: WeightRule = field(default_factory=WeightRule)
    #: Train (and validate) on a seeded random subset of this many posters; for timing.
    max_train: int | None = None
    max_val: int | None = None

    def __post_init__(self) -> None:
        from postergenre.features.cnn import BACKBONES, FIT_MODES

        if self.freeze is None and self.backbone in BACKBONES:
            # Resolved here, so records and checkpoints name the stages actually frozen.
            object.__setattr__(self, "freeze", DEFAULT_FREEZE.get(self.backbone, 0))

        if self.backbone not in BACKBONES:
            raise ConfigError(
                f"finetune: backbone: expected one of {', '.join(BACKBONES)}, got {self.backbone!r}"
            )
        if self.fit not in FIT_MODES:
            raise ConfigError(
                f"finetune: fit: expected one of {', '.join(FIT_MODES)}, got {self.fit!r}"
            )
        checks: list[tuple[str, bool, str]] = [
            ("input_size", 32 <= self.input_size <= 1024, "32..1024"),
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 2, ">= 2 (BatchNorm trains on batches)"),
            ("lr", self.lr >= 0, ">= 0"),
            ("head_lr", self.head_lr > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("warmup", 0 <= self.warmup < 1, "0 <= warmup < 1"),
            ("dropout", 0 <= self.dropout < 1, "0 <= dropout < 1"),
            ("freeze", self.freeze is not None and self.freeze >= 0, ">= 0"),
            ("patience", self.patience >= 0, ">= 0"),
            ("min_count", self.min_count >= 1, ">= 1"),
            ("max_train", self.max_train is None or self.max_train >= 2, ">= 2"),
            ("max_val", self.max_val is None or self.max_val >= 1, ">= 1"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise ConfigError(f"finetune: {name}: expected {want}, got {getattr(self, name)}")
        stages = trunk_stage_count(self.backbone)
        if self.freeze is not None and self.freeze >= stages:
            raise ConfigError(
                f"finetune: freeze: {self.backbone} has {stages} trunk stages; expected "
                f"0..{stages - 1}, got {self.freeze}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (recorded in ``finetune.json`` and in the checkpoint)."""
        out = dataclasses.asdict(self)
        out["input_scale"] = self.input_scale.to_record()
        return out


#: Leading trunk stages frozen by default (see :attr:`FinetuneConfig.freeze`).
DEFAULT_FREEZE: dict[str, int] = {"mobilenet_v2": 7}


def trunk_stage_count(backbone: str) -> int:
    """Trunk stages :attr:`FinetuneConfig.freeze` counts (see :mod:`.network`)."""
    return 19 if backbone == "mobilenet_v2" else 5


@dataclass(frozen=True)
class RunSettings:
    """How the run goes: none of this changes the result on CPU (on CUDA, kernels may
    differ in the last bits)."""

    #: auto | cpu | cuda | cuda:N
    device: str = "auto"
    #: torch threads (None: torch's default).
    threads: int | None = None
    #: Threads decoding and augmenting the next batches while the network trains.
    loader_threads: int = 1
    #: Throw away the checkpoint in --out and start again.
    restart: bool = False

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads: expected >= 1, got {self.threads}")
        if self.loader_threads < 1:
            raise ConfigError(f"loader threads: expected >= 1, got {self.loader_threads}")
