"""A small real model for the server tests (no pretrained files), and posters as upload bytes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import LIGHT_EXTRACTORS, make_poster

GENRES = ["Horror", "Comedy", "Drama", "Animation"]


def train_tiny_model(directory: Path, n: int = 40, seed: int = 0) -> Path:
    """A real GenreStacker bundle on synthetic posters: Horror follows darkness, Comedy
    brightness, Animation saturation, so explanations have real cues to name."""
    from postergenre.ensemble.bundle import feature_reference, save_bundle
    from postergenre.ensemble.stacker import GenreStacker
    from postergenre.features import get_extractor

    extractors = [get_extractor(name, **cfg).load("cpu") for name, cfg in LIGHT_EXTRACTORS]
    posters = [make_poster(seed + i) for i in range(n)]
    X = np.concatenate([e.extract(posters) for e in extractors], axis=1)
    names = [f for e in extractors for f in e.feature_names()]
    bright = X[:, names.index("color.brightness")]
    sat = X[:, names.index("color.saturation.mean")]
    rng = np.random.default_rng(seed)
    Y = np.stack(
        [bright < np.median(bright), bright >= np.median(bright), rng.random(n) < 0.5,
         sat > np.median(sat)],
        axis=1,
    ).astype(np.uint8)  # fmt: skip
    model = GenreStacker(
        feature_names=names, genres=GENRES, n_folds=2, xgb_rounds=60, mlp_hidden=8,
        mlp_epochs=10, n_jobs=1, random_state=seed,
    ).fit(X, Y)  # fmt: skip
    return save_bundle(
        model,
        directory,
        extractors=[e.describe() for e in extractors],
        reference=feature_reference(X, names),
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("serve-model") / "model")


@pytest.fixture(scope="session")
def tiny_analyzer(tiny_model: Path) -> Iterator[Any]:
    from postergenre.analysis import Analyzer

    analyzer = Analyzer.load(tiny_model, device="cpu", workers=1)
    yield analyzer
    analyzer.close()
