"""The extractor protocol and the helpers every extractor shares.

An extractor turns a batch of RGB uint8 arrays (H, W, 3) into float32 rows, one per image.
The constructor only stores configuration; ``load(device)`` does the heavy imports and
reads weights (through :mod:`postergenre.weights`); ``extract`` runs on a batch.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from postergenre.errors import ConfigError


@dataclass(frozen=True)
class Detection:
    """One thing found on a poster, for cards and explanations.

    ``box`` is (x0, y0, x1, y1) in pixels of the image given to the extractor.
    ``extra`` holds per-detection details (e.g. expression probabilities of a face).
    """

    label: str
    score: float
    box: tuple[float, float, float, float]
    extra: dict[str, float] = field(default_factory=dict)


class Extractor(ABC):
    """Base class of every feature extractor.

    Subclasses set ``name``, ``version`` and ``Config`` (a frozen dataclass), and
    implement ``feature_names``, ``_load`` and ``_extract``.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    Config: ClassVar[type[Any]]
    #: Extractors that expose boxes (objects, faces) override ``detect``.
    has_detections: ClassVar[bool] = False
    #: Options whose default changed: the value a record without them was made with.
    RECORD_DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        base = config if config is not None else self.Config()
        if not isinstance(base, self.Config):
            raise ConfigError(
                f"{self.name}: expected a {self.Config.__name__}, got {type(base).__name__}"
            )
        try:
            self.config = dataclasses.replace(base, **overrides) if overrides else base
        except TypeError as exc:
            valid = ", ".join(f.name for f in dataclasses.fields(self.Config))
            raise ConfigError(
                f"{self.name}: unknown option in {sorted(overrides)}; valid options: {valid}"
            ) from exc
        self.device: str | None = None

    # -- protocol -----------------------------------------------------------------
    @abstractmethod
    def feature_names(self) -> list[str]:
        """Readable, unique names of the output columns, e.g. ``color.brightness``."""

    def load(self, device: str = "auto") -> Extractor:
        """Import heavy libraries and read weights; returns ``self``. Idempotent."""
        resolved = resolve_device(device)
        if self.device != resolved:
            self._load(resolved)
            self.device = resolved
        return self

    def extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n,) RGB uint8 arrays of any sizes -> float32 array (n, len(feature_names()))."""
        if self.device is None:
            self.load("auto")
        if len(images) == 0:
            return np.zeros((0, len(self.feature_names())), dtype=np.float32)
        for i, image in enumerate(images):
            check_rgb(image, where=f"{self.name}: image {i}")
        out = np.asarray(self._extract(images), dtype=np.float32)
        expected = (len(images), len(self.feature_names()))
        if out.shape != expected:  # a programming error in the extractor, not user input
            raise RuntimeError(f"{self.name}: produced shape {out.shape}, expected {expected}")
        return out

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Boxes found on each image (only for extractors with ``has_detections``)."""
        raise NotImplementedError(f"{self.name} does not produce detections")

    def config_dict(self) -> dict[str, Any]:
        """Configuration as plain JSON-able values (recorded in stores and bundles)."""
        return dataclasses.asdict(self.config)

    def describe(self) -> dict[str, Any]:
        """What a store manifest or model bundle records about this extractor."""
        return {
            "extractor": self.name,
            "version": self.version,
            "config": self.config_dict(),
            "feature_names": self.feature_names(),
        }

    @abstractmethod
    def _load(self, device: str) -> None: ...

    @abstractmethod
    def _extract(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


def check_rgb(image: np.ndarray, where: str = "image") -> None:
    """Raise ConfigError unless ``image`` is an (H, W, 3) uint8 array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        got = (
            f"{image.dtype} array of shape {image.shape}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise ConfigError(f"{where}: expected an (H, W, 3) uint8 RGB array, got {got}")
    if image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ConfigError(f"{where}: expected an (H, W, 3) uint8 RGB array, got {image.shape}")


def canonical_device(device: str) -> str:
    """``gpu`` (or ``gpu:N``) is another name for ``cuda``; other names pass unchanged."""
    return "cuda" + device[3:] if device == "gpu" or device.startswith("gpu:") else device


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a CUDA device is usable, else ``cpu`` (``gpu`` is
    ``cuda``). Imports torch."""
    device = canonical_device(device)
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"device: expected auto, cpu or cuda, got {device!r}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} asked for, but torch sees no CUDA device",
            hint="use --device cpu or --device auto",
        )
    return device
