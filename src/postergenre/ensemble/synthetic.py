"""Small synthetic labelled data and feature stores, for tests and smoke runs.

The "posters" are files of random bytes (a store keys rows by the sha256 of the bytes
and never needs to decode them here); features are drawn so that genres are learnable
from both the cue columns and the embedding columns.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance")


def feature_groups(n_cnn: int = 16, n_color: int = 6, n_gist: int = 8) -> dict[str, list[str]]:
    """extractor -> feature names, shaped like the real extractors' names."""
    return {
        "cnn": [f"cnn.{i:04d}" for i in range(n_cnn)],
        "objects": ["objects.person.count", "objects.person.area", "objects.knife.count"],
        "faces": ["faces.count", "faces.fear", "faces.happy"],
        "color": [f"color.c{i}" for i in range(n_color)],
        "gist": [f"gist.s0.o{i}.r0c0" for i in range(n_gist)],
    }


def make_multilabel(
    n: int,
    seed: int = 0,
    genres: tuple[str, ...] = GENRES,
    groups: dict[str, list[str]] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X float32 (n, d), Y uint8 (n, G), feature_names): every genre has at least one
    positive, and each depends on a few cue and embedding columns."""
    groups = groups or feature_groups()
    names = [n_ for names in groups.values() for n_ in names]
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(names)))
    G = len(genres)
    W = np.zeros((len(names), G))
    for g in range(G):
        picks = rng.choice(len(names), size=4, replace=False)
        W[picks, g] = rng.choice([-2.0, 2.0], size=4)
    offsets = np.linspace(0.0, 2.0, G)
    Z = X @ W - offsets + rng.logistic(size=(n, G)) * 0.7
    Y = (Z > 0).astype(np.uint8)
    # Every poster has a genre (as on IMDb): the most likely one when none fired.
    none = ~Y.any(1)
    Y[none, np.argmax(Z[none], axis=1)] = 1
    return X.astype(np.float32), Y, names


@dataclass
class SyntheticStore:
    store: Path
    labels: Path
    X: np.ndarray
    Y: np.ndarray
    feature_names: list[str]
    genres: list[str]
    poster_ids: list[str]
    splits: list[str]


def make_labelled_store(
    folder: str | os.PathLike[str],
    n: int = 200,
    seed: int = 0,
    val_fraction: float = 0.25,
    genres: tuple[str, ...] = GENRES,
    groups: dict[str, list[str]] | None = None,
    version: str = "1",
) -> SyntheticStore:
    """Write posters/ (random-byte files), labels.csv (file, split, genres) and a feature
    store at store/ under ``folder``; return where everything is and the truth."""
    from postergenre.features.store import FeatureStore, _IndexRow

    folder = Path(folder)
    groups = groups or feature_groups()
    X, Y, names = make_multilabel(n, seed, genres, groups)
    rng = np.random.default_rng(seed + 1)
    posters = folder / "posters"
    posters.mkdir(parents=True, exist_ok=True)
    ids, paths, splits = [], [], []
    for i in range(n):
        data = rng.bytes(64) + i.to_bytes(4, "little")
        path = posters / f"p{i:05d}.jpg"
        path.write_bytes(data)
        ids.append(hashlib.sha256(data).hexdigest())
        paths.append(str(path.resolve()))
        splits.append("val" if rng.random() < val_fraction else "train")
    labels = folder / "labels.csv"
    with open(labels, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["imdb_id", "file", "split", "genres", "source"])
        for i in range(n):
            tags = "|".join(g for g, y in zip(genres, Y[i], strict=True) if y)
            w.writerow([f"tt{i:07d}", f"posters/p{i:05d}.jpg", splits[i], tags, "synthetic"])
    store = FeatureStore(folder / "store", create=True)
    col = 0
    for extractor, feats in groups.items():
        block = X[:, col : col + len(feats)]
        col += len(feats)
        description = {
            "extractor": extractor,
            "version": version,
            "config": {},
            "feature_names": feats,
        }
        store.write_manifest(description, {"numpy": np.__version__})
        store.write_shard(extractor, 0, ids, paths, ["ok"] * n, [""] * n, block, feats, {"rows": n})
    store.write_index([_IndexRow(p, i, 68, 0) for p, i in zip(paths, ids, strict=True)])
    store.write_plan({i: 0 for i in ids})
    return SyntheticStore(store.path, labels, X, Y, names, list(genres), ids, splits)
