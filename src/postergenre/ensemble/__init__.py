"""The stacked genre model, its base learners, baselines, metrics and bundle I/O.

Importing this package is cheap; the names below load their modules (and sklearn,
xgboost, torch) on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "GenreStacker": "postergenre.ensemble.stacker",
    "GenrePredictor": "postergenre.ensemble.predictor",
    "Explanation": "postergenre.ensemble.explain",
    "Bundle": "postergenre.ensemble.bundle",
    "load_bundle": "postergenre.ensemble.bundle",
    "save_bundle": "postergenre.ensemble.bundle",
    "default_bundle_path": "postergenre.ensemble.bundle",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'postergenre.ensemble' has no attribute {name!r}")
