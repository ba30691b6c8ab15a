"""Tiny labelled poster sets for fine-tune tests: generated, never the shared posters.

Genres are drawn into the pictures so that a network can learn them: ``Red`` posters are
tinted red, ``Stripes`` posters have dark horizontal bands, ``Dark`` posters are dim. Two
collections (``source``) sample them alike.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

GENRES = ("Dark", "Red", "Stripes")
#: Poster size (H, W): small, 2:3 like real posters; also the test input scale.
SIZE = (48, 32)


def draw_poster(genres: set[str], rng: np.random.Generator) -> np.ndarray:
    h, w = SIZE
    base = rng.integers(60, 200, size=3).astype(np.float32)
    img = np.broadcast_to(base, (h, w, 3)).copy()
    img += rng.normal(0, 12, size=img.shape).astype(np.float32)
    if "Red" in genres:
        img[..., 0] = 235
        img[..., 1:] *= 0.5
    if "Stripes" in genres:
        for y in range(0, h, 8):
            img[y : y + 4] *= 0.2
    if "Dark" in genres:
        img *= 0.3
    return np.clip(img, 0, 255).astype(np.uint8)


def write_set(
    folder: Path,
    n_train: int = 48,
    n_val: int = 16,
    seed: int = 0,
    genre_sets: list[set[str]] | None = None,
) -> Path:
    """Posters and ``labels.csv`` (imdb_id, file, split, genres, source); returns the CSV."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    n = n_train + n_val
    for i in range(n):
        if genre_sets is not None:
            chosen = genre_sets[i]
        else:
            chosen = {g for g in GENRES if rng.random() < 0.45} or {GENRES[i % 3]}
        file = f"images/p{i:03d}.png"
        Image.fromarray(draw_poster(chosen, rng)).save(folder / file)
        rows.append(
            {
                "imdb_id": f"tt{i:07d}",
                "file": file,
                "split": "train" if i < n_train else "val",
                "genres": "|".join(sorted(chosen)),
                "source": "alpha" if i % 2 else "beta",
            }
        )
    path = folder / "labels.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    # The reference prior of the label weights (the shipped one knows no such genres).
    write_prior(folder / "prior.json", {g: 0.4 for g in GENRES})
    return path


def write_prior(path: Path, shares: dict[str, float]) -> Path:
    path.write_text(json.dumps({"source": "test prior", "shares": shares}))
    return path


def tiny_config(labels: Path, **overrides: Any) -> Any:
    """A fine-tune of ``labels`` (from :func:`write_set`) that runs in a second or two:
    random weights, 32-pixel input, the set's own reference prior."""
    from postergenre.finetune.config import FinetuneConfig
    from postergenre.input_scale import InputScale

    options: dict[str, Any] = {
        "pretrained": False,
        "input_size": 32,
        "input_scale": InputScale(SIZE[1], SIZE[0]),
        "epochs": 2,
        "batch_size": 8,
        "min_count": 3,
        "patience": 0,
        "prior": str(labels.parent / "prior.json"),
        **overrides,
    }
    return FinetuneConfig(**options)


@pytest.fixture(scope="session")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 training and 16 validation posters with labels.csv and prior.json."""
    return write_set(tmp_path_factory.mktemp("posters"))


@pytest.fixture(scope="session")
def config_for() -> Callable[..., Any]:
    """:func:`tiny_config` (test modules cannot import this conftest by name)."""
    return tiny_config


@pytest.fixture(scope="session")
def make_set() -> Callable[..., Path]:
    """:func:`write_set`."""
    return write_set


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh postergenre home (weights cache) for the test, never the user's."""
    monkeypatch.setenv("POSTERGENRE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("POSTERGENRE_WEIGHTS_DIR", raising=False)
    yield tmp_path / "home"


@pytest.fixture
def prior_for(tmp_path: Path) -> Callable[[dict[str, float]], Path]:
    def make(shares: dict[str, float]) -> Path:
        return write_prior(tmp_path / "prior.json", shares)

    return make


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Bit-exact comparisons between runs need the same torch thread count."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tuned(labelled: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of a finished one-epoch tiny fine-tune (not installed)."""
    from postergenre.finetune.config import RunSettings
    from postergenre.finetune.train import finetune

    out = tmp_path_factory.mktemp("tuned") / "out"
    finetune(labelled, out, tiny_config(labelled, epochs=1), RunSettings("cpu", threads=1))
    return out
