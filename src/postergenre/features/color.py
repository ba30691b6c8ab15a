"""``color``: dominant colours, colour statistics and a coarse layout of colour.

Everything is computed on the poster resized to a fixed 60x90 grid (area averaging), which
keeps it fast and makes the 3x3 layout cells equal for every poster. Colour spaces come from
OpenCV on float RGB in [0, 1]: CIELab (L 0..100, a and b about -128..127) and HSV
(H in degrees 0..360, S and V 0..1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from postergenre.errors import ConfigError
from postergenre.features.base import Extractor, check_rgb

_WORK_W, _WORK_H = 60, 90  # about 2:3, divisible by the 3x3 grid
_GRID = 3
_HUE_BINS, _SAT_BINS, _VAL_BINS = 8, 3, 3
#: Coarse Lab quantisation used to seed k-means and to find each cell's dominant colour.
_L_STEP, _AB_STEP = 20.0, 32.0
_L_BINS, _AB_BINS = 5, 8  # 100 / 20 and 256 / 32
#: Luma below this is "dark" (about the darkest fifth of the range).
_DARK_LUMA = 0.2
#: Warm hues: red through orange to yellow (degrees), wrapping through 0; must be chromatic.
_WARM_FROM, _WARM_TO = 330.0, 70.0
_WARM_MIN_SAT, _WARM_MIN_VAL = 0.25, 0.2
_KMEANS_ITERS = 20


@dataclass(frozen=True)
class ColorConfig:
    #: Number of dominant colours (k of k-means in Lab).
    k: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.k <= 16:
            raise ConfigError(f"color: k: expected 1..16, got {self.k}")


@dataclass(frozen=True)
class _Prepared:
    rgb: np.ndarray  # (h, w, 3) float32 in [0, 1]
    lab: np.ndarray  # (h, w, 3) float32
    hsv: np.ndarray  # (h, w, 3) float32
    qbin: np.ndarray  # (h*w,) int: coarse Lab bin of each pixel


def _prepare(image: np.ndarray) -> _Prepared:
    import cv2

    h, w = image.shape[:2]
    shrink = h >= _WORK_H and w >= _WORK_W
    small = cv2.resize(
        image, (_WORK_W, _WORK_H), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    rgb = small.astype(np.float32) * np.float32(1 / 255)
    # 8-bit Lab is ~10x faster than float Lab in OpenCV and its rounding (0.4 L, 1 a/b) is far
    # below what these features resolve; rescale to true Lab units.
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2Lab).astype(np.float32)
    lab *= np.array([100.0 / 255.0, 1.0, 1.0], dtype=np.float32)
    lab -= np.array([0.0, 128.0, 128.0], dtype=np.float32)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    qbin = _quantise(lab.reshape(-1, 3), _L_STEP, _AB_STEP)
    return _Prepared(rgb, lab, hsv, qbin)


def _quantise(lab: np.ndarray, l_step: float, ab_step: float) -> np.ndarray:
    """(n, 3) Lab -> (n,) bin index on a grid of ``l_step`` x ``ab_step`` x ``ab_step`` cells."""
    l_bins, ab_bins = int(np.ceil(100.0 / l_step - 1e-9)), int(np.ceil(256.0 / ab_step))
    qL = np.clip((lab[:, 0] / l_step).astype(np.int64), 0, l_bins - 1)
    qa = np.clip(((lab[:, 1] + 128.0) / ab_step).astype(np.int64), 0, ab_bins - 1)
    qb = np.clip(((lab[:, 2] + 128.0) / ab_step).astype(np.int64), 0, ab_bins - 1)
    return (qL * ab_bins + qa) * ab_bins + qb  # type: ignore[no-any-return]


_N_QBINS = _L_BINS * _AB_BINS * _AB_BINS
#: k-means runs on pixels pooled into fine Lab cells (weighted by count): a few hundred
#: points instead of thousands, at a resolution (4 L, 8 a/b) well below a visible step.
_FINE_L, _FINE_AB = 4.0, 8.0
_N_FINE = 25 * 32 * 32


def _kmeans_lab(lab: np.ndarray, qbin: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic k-means: (n, 3) Lab pixels -> centres (k, 3) and shares (k,), by share.

    Seeded with the means of the k most populated coarse Lab bins (no randomness, and
    the seeds already sit on the poster's main colours, so a few Lloyd steps suffice).
    With fewer than k distinct bins the spare centres repeat the first and end with share 0.
    """
    counts = np.bincount(qbin, minlength=_N_QBINS)
    order = np.argsort(-counts, kind="stable")
    seeds = order[: min(k, int(np.count_nonzero(counts)))]
    sums = np.stack(
        [np.bincount(qbin, weights=lab[:, c], minlength=_N_QBINS)[seeds] for c in range(3)], 1
    )
    centres = sums / counts[seeds, None]
    if len(centres) < k:
        centres = np.concatenate([centres, np.repeat(centres[:1], k - len(centres), 0)])

    fine = _quantise(lab, _FINE_L, _FINE_AB)
    weight_all = np.bincount(fine, minlength=_N_FINE)
    used = np.flatnonzero(weight_all)
    weight = weight_all[used].astype(np.float64)
    x = (
        np.stack(
            [np.bincount(fine, weights=lab[:, c], minlength=_N_FINE)[used] for c in range(3)], 1
        )
        / weight[:, None]
    )
    x2 = (x * x).sum(1, keepdims=True)
    assign = np.full(len(x), -1, dtype=np.int64)
    for _ in range(_KMEANS_ITERS):
        dist = x2 - 2.0 * x @ centres.T + (centres * centres).sum(1)[None, :]
        new_assign = dist.argmin(1)
        if np.array_equal(new_assign, assign):
            break
        assign = new_assign
        mass = np.bincount(assign, weights=weight, minlength=k)
        alive = mass > 0
        for c in range(3):
            s = np.bincount(assign, weights=weight * x[:, c], minlength=k)
            centres[alive, c] = s[alive] / mass[alive]
    shares = np.bincount(assign, weights=weight, minlength=k) / weight.sum()
    # Largest share first; ties keep centre order (stable), so the output is deterministic.
    by_share = np.argsort(-shares, kind="stable")
    return centres[by_share], shares[by_share]


def _moments(values: np.ndarray) -> np.ndarray:
    """(n, c) -> (c, 3): mean, std and skewness of each column (skewness 0 when flat)."""
    values = values.astype(np.float64)  # float32 sums leave ~1e-3 of std on a flat image
    mean = values.mean(0)
    centred = values - mean
    var = (centred * centred).mean(0)
    std = np.sqrt(var)
    third = (centred * centred * centred).mean(0)
    skew = np.where(std > 1e-3, third / np.maximum(std, 1e-3) ** 3, 0.0)
    return np.stack([mean, std, skew], 1)


class ColorExtractor(Extractor):
    """Dominant colours (k-means in Lab), colour moments, HSV histogram, global tone, 3x3 layout."""

    name: ClassVar[str] = "color"
    version: ClassVar[str] = "1"
    Config: ClassVar[type[Any]] = ColorConfig
    config: ColorConfig

    def feature_names(self) -> list[str]:
        names: list[str] = []
        for i in range(1, self.config.k + 1):
            names += [f"color.dominant{i}.{p}" for p in ("L", "a", "b", "share")]
        for ch in ("L", "a", "b"):
            names += [f"color.lab.{ch}.{m}" for m in ("mean", "std", "skew")]
        names += [
            f"color.hsv_hist.h{h}_s{s}_v{v}"
            for h in range(_HUE_BINS)
            for s in range(_SAT_BINS)
            for v in range(_VAL_BINS)
        ]
        names += [
            "color.brightness",
            "color.contrast",
            "color.saturation.mean",
            "color.saturation.std",
            "color.colorfulness",
            "color.dark_ratio",
            "color.warm_ratio",
        ]
        names += [
            f"color.grid.r{r}c{c}.{ch}"
            for r in range(_GRID)
            for c in range(_GRID)
            for ch in ("L", "a", "b")
        ]
        return names

    def _load(self, device: str) -> None:
        import cv2  # noqa: F401  (fail at load, not mid-batch, if OpenCV is missing)

    def _extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack([self._one(image) for image in images])

    def _one(self, image: np.ndarray) -> np.ndarray:
        p = _prepare(image)
        lab = p.lab.reshape(-1, 3)
        hsv = p.hsv.reshape(-1, 3)
        rgb = p.rgb.reshape(-1, 3)
        out: list[float] = []

        centres, shares = _kmeans_lab(lab, p.qbin, self.config.k)
        for centre, share in zip(centres, shares, strict=True):
            out += [float(centre[0]), float(centre[1]), float(centre[2]), float(share)]

        out += _moments(lab).ravel().tolist()

        # Hue bins centred on red (0 deg), orange (45), ..., so red is not split across bins.
        hue = ((hsv[:, 0] + 180.0 / _HUE_BINS) % 360.0) * (_HUE_BINS / 360.0)
        hi = np.clip(hue.astype(np.int64), 0, _HUE_BINS - 1)
        si = np.clip((hsv[:, 1] * _SAT_BINS).astype(np.int64), 0, _SAT_BINS - 1)
        vi = np.clip((hsv[:, 2] * _VAL_BINS).astype(np.int64), 0, _VAL_BINS - 1)
        hist = np.bincount((hi * _SAT_BINS + si) * _VAL_BINS + vi, minlength=72) / len(hsv)
        out += hist.tolist()

        luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        out += [float(luma.mean()), float(luma.std())]
        out += [float(hsv[:, 1].mean()), float(hsv[:, 1].std())]
        out.append(_colorfulness(rgb))
        out.append(float((luma < _DARK_LUMA).mean()))
        warm_hue = (hsv[:, 0] >= _WARM_FROM) | (hsv[:, 0] < _WARM_TO)
        warm = warm_hue & (hsv[:, 1] >= _WARM_MIN_SAT) & (hsv[:, 2] >= _WARM_MIN_VAL)
        out.append(float(warm.mean()))

        out += _grid_dominant(p).ravel().tolist()
        return np.asarray(out, dtype=np.float32)

    def palette(self, image: np.ndarray) -> list[tuple[tuple[int, int, int], float]]:
        """The k dominant colours of ``image`` as ((r, g, b) 0..255, share), largest first."""
        import cv2

        check_rgb(image, where="color: image")
        p = _prepare(image)
        centres, shares = _kmeans_lab(p.lab.reshape(-1, 3), p.qbin, self.config.k)
        rgb = cv2.cvtColor(centres.astype(np.float32)[None], cv2.COLOR_Lab2RGB)[0]
        rgb8 = np.clip(np.round(rgb * 255.0), 0, 255).astype(int)
        return [
            ((int(c[0]), int(c[1]), int(c[2])), float(s)) for c, s in zip(rgb8, shares, strict=True)
        ]


def _colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness on the 0..255 scale; 0 for any grey image."""
    r, g, b = rgb[:, 0] * 255.0, rgb[:, 1] * 255.0, rgb[:, 2] * 255.0
    rg = r - g
    yb = 0.5 * (r + g) - b
    std = np.sqrt(rg.std() ** 2 + yb.std() ** 2)
    mean = np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    return float(std + 0.3 * mean)


def _grid_dominant(p: _Prepared) -> np.ndarray:
    """(3, 3, 3): per cell, the mean Lab of the pixels in the cell's most populated coarse bin."""
    h, w = p.lab.shape[:2]
    rows = np.arange(h) * _GRID // h
    cols = np.arange(w) * _GRID // w
    cell = (rows[:, None] * _GRID + cols[None, :]).ravel()
    key = cell * _N_QBINS + p.qbin
    n_keys = _GRID * _GRID * _N_QBINS
    counts = np.bincount(key, minlength=n_keys).reshape(_GRID * _GRID, _N_QBINS)
    top = counts.argmax(1)  # first bin on ties: deterministic
    lab = p.lab.reshape(-1, 3)
    out = np.empty((_GRID * _GRID, 3), dtype=np.float64)
    for c in range(3):
        sums = np.bincount(key, weights=lab[:, c], minlength=n_keys).reshape(_GRID * _GRID, -1)
        out[:, c] = sums[np.arange(_GRID * _GRID), top] / counts[np.arange(_GRID * _GRID), top]
    return out.reshape(_GRID, _GRID, 3)
