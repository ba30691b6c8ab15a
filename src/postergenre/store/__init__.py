"""The feature store: written by extraction runs (local or Ray), read by training,
evaluation and ``predict``.

It knows rows, shards and manifests, never how features are computed: extractors do not
import it, and the ensemble reads it only through :class:`FeatureStore`.
``postergenre.features.store`` re-exports this package for older imports.
"""

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
    "manifest_differences",
]
