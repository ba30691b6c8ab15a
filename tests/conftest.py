"""Shared fixtures: synthetic posters (never the shared ones), markers that skip with a reason."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_POSTERS = REPO.parent / "shared" / "data" / "posters"
#: Posters of other collections: evaluation only (never train, select or tune on them).
SHARED_EXTERNAL = REPO.parent / "shared" / "data" / "posters_external"
#: Extractors that need no pretrained files, for small real models. ResNet-18: from random
#: weights its embedding varies from poster to poster (MobileNetV2's and EfficientNet's
#: collapse to within 1e-9 of their mean, which leaves the embedding's bases nothing to
#: read); no style statistics, some of which barely vary and would make the MLP too steep
#: for finite differences of its gradient.
LIGHT_EXTRACTORS = (
    ("cnn", {"pretrained": False, "backbone": "resnet18", "input_size": 64, "style": False}),
    ("color", {}),
    ("gist", {}),
)

#: The genres of the small test models (:func:`train_bundle`).
TINY_GENRES = ["Horror", "Comedy", "Drama", "Animation"]


def weights_present(*names: str) -> bool:
    from postergenre import weights

    return all(weights.status(n).state == "ok" for n in names)


def require_weights(*names: str) -> None:
    """Skip the calling test, with a reason, unless the named pretrained files are present."""
    missing = [n for n in names if not weights_present(n)]
    if missing:
        pytest.skip(f"needs pretrained files {missing}: run `postergenre weights fetch`")


def require_shared() -> Path:
    if not (SHARED_POSTERS / "labels.csv").is_file():
        pytest.skip(f"needs the shared posters at {SHARED_POSTERS}")
    return SHARED_POSTERS


def require_shared_external() -> Path:
    if not (SHARED_EXTERNAL / "labels.csv").is_file():
        pytest.skip(f"needs the external posters at {SHARED_EXTERNAL}")
    return SHARED_EXTERNAL


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    for item in items:
        if "shared" in item.keywords and not (SHARED_POSTERS / "labels.csv").is_file():
            item.add_marker(
                pytest.mark.skip(reason=f"needs the shared posters at {SHARED_POSTERS}")
            )
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


def make_poster(seed: int = 0, size: tuple[int, int] = (236, 160)) -> np.ndarray:
    """A poster-like RGB image: gradient background, a few shapes, a title band."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    h, w = size
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    base = (top * (1 - t) + bottom * t).astype(np.uint8)
    img = Image.fromarray(np.broadcast_to(base, (h, w, 3)).copy())
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    draw.rectangle((0, int(h * 0.85), w, h), fill=(20, 20, 20))
    return np.asarray(img)


@pytest.fixture
def poster() -> np.ndarray:
    return make_poster(0)


@pytest.fixture
def posters() -> list[np.ndarray]:
    return [make_poster(i, size=(236 + 7 * i, 160 - 3 * i)) for i in range(4)]


def encode(array_or_image: object, fmt: str = "JPEG", **kw: object) -> bytes:
    from PIL import Image

    img = (
        array_or_image
        if isinstance(array_or_image, Image.Image)
        else Image.fromarray(array_or_image)  # type: ignore[arg-type]
    )
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def poster_file(tmp_path: Path) -> Path:
    path = tmp_path / "poster.jpg"
    path.write_bytes(encode(make_poster(1), "JPEG", quality=90))
    return path


def train_bundle(
    directory: Path, extractors: Any = LIGHT_EXTRACTORS, n: int = 96, seed: int = 0, **params: Any
) -> Path:
    """Train a small real GenreStacker on synthetic posters' features and save it: Horror
    follows darkness, Comedy brightness, Animation saturation, Drama a coin flip, so
    explanations have real cues to name. ``params`` override the stacker's small settings."""
    from postergenre.ensemble.bundle import feature_reference, save_bundle
    from postergenre.ensemble.stacker import GenreStacker
    from postergenre.features import get_extractor
    from postergenre.input_scale import DEFAULT_SCALE

    exts = [get_extractor(name, **cfg).load("cpu") for name, cfg in extractors]
    posters = [make_poster(seed + i) for i in range(n)]
    X = np.concatenate([e.extract(posters) for e in exts], axis=1)
    names = [f for e in exts for f in e.feature_names()]
    bright = X[:, names.index("color.brightness")]
    sat = X[:, names.index("color.saturation.mean")]
    rng = np.random.default_rng(seed)
    Y = np.stack(
        [bright < np.median(bright), bright >= np.median(bright), rng.random(n) < 0.5,
         sat > np.median(sat)],
        axis=1,
    ).astype(np.uint8)  # fmt: skip
    settings = {"n_folds": 2, "xgb_rounds": 25, "mlp_hidden": 16, "mlp_epochs": 5, "n_jobs": 1}
    model = GenreStacker(
        feature_names=names, genres=TINY_GENRES, random_state=seed, **{**settings, **params}
    ).fit(X, Y)
    return save_bundle(
        model,
        directory,
        # The synthetic posters are 160x236, the default input scale: the bundle says so,
        # like the shipped model, and analyze brings other sizes to it.
        extractors=[{**e.describe(), "input": DEFAULT_SCALE.to_record()} for e in exts],
        reference=feature_reference(X, names),
    )
