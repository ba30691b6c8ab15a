"""The feature store moved to :mod:`postergenre.store` (its own seam: written by extraction,
read by training, evaluation and predict). This module re-exports it so existing imports
keep working; new code imports from ``postergenre.store``."""

from __future__ import annotations

from postergenre.store.feature_store import (
    FORMAT,
    FORMAT_VERSION,
    META_COLUMNS,
    NOHASH_PREFIX,
    OK,
    Failure,
    FeatureStore,
    IndexRow,
    StoreData,
    _IndexRow,
    _jsonable,
    _now,
    _write_json,
    manifest_differences,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "META_COLUMNS",
    "NOHASH_PREFIX",
    "OK",
    "Failure",
    "FeatureStore",
    "IndexRow",
    "StoreData",
    "_IndexRow",
    "_jsonable",
    "_now",
    "_write_json",
    "manifest_differences",
]
