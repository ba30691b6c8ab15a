"""The canonical input scale: every poster is brought to one size before any extractor.

Posters arrive as 160-pixel thumbnails and 2,000-pixel scans. Colour, texture and CNN
features all shift with the scale and sharpness of the file, so a model trained on one
collection's thumbnails reads another collection's scans as "different", not as "the same
artwork". Fitting every poster into the box the training posters were fitted into (aspect
kept, antialiased when shrinking) makes a scan and its thumbnail nearly the same input.

The scale is recorded in every store manifest (``input``) and in every model bundle, so a
store made at one scale is never mixed with another, and ``analyze`` uses the model's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from postergenre.errors import ConfigError

#: The box the shared training posters were fitted into (width, height): 160 x 236.
DEFAULT_BOX: tuple[int, int] = (160, 236)
#: What a manifest or bundle without an ``input`` entry was made at: the files as they were.
NATIVE = "native"


@dataclass(frozen=True)
class InputScale:
    """Fit each poster into ``width`` x ``height`` (aspect kept); ``None`` sides: native.

    Shrinking uses area averaging (no aliasing, and it smooths JPEG blocking the same way
    for every source); enlarging uses bicubic interpolation.
    """

    width: int | None = DEFAULT_BOX[0]
    height: int | None = DEFAULT_BOX[1]

    def __post_init__(self) -> None:
        if (self.width is None) != (self.height is None):
            raise ConfigError(
                f"input scale: expected both sides or neither, got {self.width}x{self.height}"
            )
        if self.width is not None and self.height is not None:
            if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
                raise ConfigError(
                    f"input scale: expected sides in 16..4096, got {self.width}x{self.height}"
                )

    @property
    def native(self) -> bool:
        return self.width is None

    @classmethod
    def parse(cls, text: str) -> InputScale:
        """``"160x236"`` or ``"native"``."""
        text = text.strip().lower()
        if text == NATIVE:
            return cls(None, None)
        w, sep, h = text.partition("x")
        try:
            if not sep:
                raise ValueError
            return cls(int(w), int(h))
        except ValueError:
            raise ConfigError(
                f"input scale: expected WIDTHxHEIGHT (e.g. 160x236) or 'native', got {text!r}"
            ) from None

    def to_record(self) -> dict[str, Any] | str:
        """What a manifest or bundle stores."""
        if self.native:
            return NATIVE
        return {"fit": [self.width, self.height], "shrink": "area", "enlarge": "cubic"}

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | str | None) -> InputScale:
        """Inverse of :meth:`to_record`; an absent record (older stores, bundles) is native."""
        if record is None or record == NATIVE:
            return cls(None, None)
        if isinstance(record, Mapping) and isinstance(record.get("fit"), list | tuple):
            w, h = record["fit"]
            return cls(int(w), int(h))
        raise ConfigError(f"input scale: unreadable record {record!r}")

    def __str__(self) -> str:
        return NATIVE if self.native else f"{self.width}x{self.height}"

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of a ``width`` x ``height`` poster once fitted."""
        if self.width is None or self.height is None:
            return width, height
        s = min(self.width / width, self.height / height)
        return (
            max(1, min(self.width, round(width * s))),
            max(1, min(self.height, round(height * s))),
        )

    def apply(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> the poster at this scale (the same array when it already is)."""
        import cv2

        h, w = image.shape[:2]
        tw, th = self.target_size(w, h)
        if (tw, th) == (w, h):
            return image
        interp = cv2.INTER_AREA if tw <= w and th <= h else cv2.INTER_CUBIC
        return np.ascontiguousarray(cv2.resize(image, (tw, th), interpolation=interp))


DEFAULT_SCALE = InputScale()


@dataclass(frozen=True)
class Degrade:
    """A deterministic random "re-scan" of each poster, for training on the variation that
    other collections' files show: the file at another size (``rescale``: a factor drawn
    from the range, before the canonical fit), JPEG re-compression (``jpeg``: a quality
    drawn from the range) and softness (``blur``: a Gaussian sigma in canonical-scale
    pixels). Each poster's draw is seeded by its id and ``seed``, so a store of degraded
    copies is reproducible and resumable. Recorded in store manifests (``degrade``).
    """

    seed: int = 0
    rescale: tuple[float, float] = (0.6, 2.0)
    jpeg: tuple[int, int] = (30, 85)
    blur: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        lo, hi = self.rescale
        if not 0.1 <= lo <= hi <= 8.0:
            raise ConfigError(f"degrade: rescale: expected 0.1 <= low <= high <= 8, got {lo}, {hi}")
        q0, q1 = self.jpeg
        if not 5 <= q0 <= q1 <= 100:
            raise ConfigError(f"degrade: jpeg: expected 5 <= low <= high <= 100, got {q0}, {q1}")
        b0, b1 = self.blur
        if not 0.0 <= b0 <= b1 <= 5.0:
            raise ConfigError(f"degrade: blur: expected 0 <= low <= high <= 5, got {b0}, {b1}")

    def to_record(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "rescale": list(self.rescale),
            "jpeg": list(self.jpeg),
            "blur": list(self.blur),
        }

    def apply(self, image: np.ndarray, poster_id: str, scale: InputScale) -> np.ndarray:
        """The degraded copy of ``image`` (poster ``poster_id``), at ``scale``."""
        import hashlib
        import io

        import cv2
        from PIL import Image

        digest = hashlib.sha256(f"{self.seed}:{poster_id}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        f = float(np.exp(rng.uniform(np.log(self.rescale[0]), np.log(self.rescale[1]))))
        q = int(rng.integers(self.jpeg[0], self.jpeg[1] + 1))
        sigma = float(rng.uniform(*self.blur))
        h, w = image.shape[:2]
        size = (max(16, round(w * f)), max(16, round(h * f)))
        interp = cv2.INTER_AREA if f < 1.0 else cv2.INTER_CUBIC
        out = cv2.resize(image, size, interpolation=interp)
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=q)
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        out = scale.apply(np.ascontiguousarray(out))
        if sigma > 0.05:
            out = cv2.GaussianBlur(out, (0, 0), sigma)
        return np.ascontiguousarray(out)
