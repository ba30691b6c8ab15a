"""Small fitted stacks shared by the ensemble tests (fitted once per session: fast)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

#: Tiny, fast settings: enough to learn the synthetic genres, seconds to fit.
FAST: dict[str, Any] = {
    "n_folds": 3,
    "xgb_rounds": 15,
    "xgb_max_depth": 3,
    "mlp_epochs": 8,
    "mlp_hidden": 16,
    "n_jobs": 1,
}


@pytest.fixture(scope="session")
def fast() -> dict[str, Any]:
    return dict(FAST)


@pytest.fixture(scope="session")
def data() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from postergenre.ensemble.synthetic import make_multilabel

    return make_multilabel(240, seed=3)


@pytest.fixture(scope="session")
def fitted(data: tuple[np.ndarray, np.ndarray, list[str]]) -> Any:
    from postergenre.ensemble.stacker import GenreStacker
    from postergenre.ensemble.synthetic import GENRES

    X, Y, names = data
    return GenreStacker(feature_names=names, genres=list(GENRES), **FAST).fit(X[:180], Y[:180])
