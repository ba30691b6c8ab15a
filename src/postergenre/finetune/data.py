"""Labelled posters for a fine-tune: which files, which genres, which collection, which
split; and how one poster becomes a network input (canonical scale, augmentation, fit).

Nothing is dropped silently: rows without a readable poster file, whose poster cannot be
decoded, or with no genre of the vocabulary are counted (:attr:`PosterSet.dropped`) and
recorded in ``finetune.json``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from postergenre.errors import DataError, PosterError
from postergenre.finetune.config import Augment, FinetuneConfig
from postergenre.input_scale import InputScale


@dataclass
class Split:
    """The posters of one split: ``paths`` (n,), ``ids`` (n,) poster sha256s, ``Y`` (n, G)
    float32 0/1, ``groups`` (n,) collection names."""

    paths: list[Path]
    ids: list[str]
    Y: np.ndarray
    groups: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, rows: np.ndarray) -> Split:
        return Split(
            [self.paths[i] for i in rows],
            [self.ids[i] for i in rows],
            self.Y[rows],
            [self.groups[i] for i in rows],
        )


@dataclass
class PosterSet:
    genres: list[str]
    train: Split
    val: Split | None
    #: reason -> rows left out (missing_file, unreadable_file, no_file, undecodable,
    #: no_known_genre).
    dropped: dict[str, int] = field(default_factory=dict)
    #: Rows whose poster file another row also has (kept, as ``train`` keeps them).
    shared_poster_rows: int = 0
    #: genre -> training posters carrying it (before any subset for timing).
    genre_counts: dict[str, int] = field(default_factory=dict)
    #: Training and validation posters before ``max_train`` / ``max_val``.
    full_sizes: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        """Training data counts for ``finetune.json``."""
        out: dict[str, Any] = {
            "train_posters": len(self.train),
            "val_posters": 0 if self.val is None else len(self.val),
            "train_by_collection": dict(sorted(Counter(self.train.groups).items())),
            "train_genre_positives": {
                g: int(v) for g, v in zip(self.genres, self.train.Y.sum(0), strict=True)
            },
            "dropped": dict(sorted(self.dropped.items())),
            "shared_poster_rows_kept": self.shared_poster_rows,
            "before_subset": dict(self.full_sizes),
        }
        if self.val is not None:
            out["val_by_collection"] = dict(sorted(Counter(self.val.groups).items()))
        return out


def read_poster_set(
    labels: str | os.PathLike[str], config: FinetuneConfig, threads: int = 1
) -> PosterSet:
    """Read the labels CSV; keep the train (and val) rows whose posters decode.

    The genre vocabulary is the training split's genres with at least ``min_count``
    posters (before any ``max_train`` subset), as ``train`` builds it.
    """
    from postergenre.ensemble.labels import build_vocabulary, read_labels

    path = Path(labels)
    columns = _columns(path)
    split_column = config.split_column if config.split_column in columns else None
    group_column = config.group_column if config.group_column in columns else None
    rows = read_labels(path, split_column=split_column, group_column=group_column)
    dropped: Counter[str] = Counter()
    usable = []
    seen: set[str] = set()
    shared = 0
    for r in rows:
        if split_column is not None and r.split not in (config.train_split, config.val_split):
            continue
        if r.problem is not None or r.poster_id is None or r.file is None:
            dropped[r.problem or "no_file"] += 1
            continue
        # A poster file shared by two labelled films stays, once per film, as `train`
        # keeps it; counted in the record.
        if r.poster_id in seen:
            shared += 1
        seen.add(r.poster_id)
        usable.append(r)
    is_train = [split_column is None or r.split == config.train_split for r in usable]
    vocab, counts = build_vocabulary(
        (r.genres for r, t in zip(usable, is_train, strict=True) if t), config.min_count
    )
    if not vocab:
        raise DataError(
            f"{path}: no genre has {config.min_count} training posters",
            hint="lower --min-count, or give more training posters",
        )
    index = {g: j for j, g in enumerate(vocab)}
    kept, kept_train = [], []
    for r, t in zip(usable, is_train, strict=True):
        if not any(g in index for g in r.genres):
            dropped["no_known_genre"] += 1
            continue
        kept.append(r)
        kept_train.append(t)
    files = [path.parent / str(r.file) for r in kept]
    Y = np.zeros((len(kept), len(vocab)), dtype=np.float32)
    for i, r in enumerate(kept):
        for g in r.genres:
            if g in index:
                Y[i, index[g]] = 1.0
    everything = Split(
        files, [str(r.poster_id) for r in kept], Y, [str(r.group or "all") for r in kept]
    )
    train_rows = np.array([i for i, t in enumerate(kept_train) if t], dtype=np.int64)
    val_rows = np.array([i for i, t in enumerate(kept_train) if not t], dtype=np.int64)
    full_sizes = {"train_posters": len(train_rows), "val_posters": len(val_rows)}
    # The subset (for timing runs) first: only the posters used are decoded here.
    train_rows = _subset(train_rows, config.max_train, config.seed)
    val_rows = _subset(val_rows, config.max_val, config.seed + 1)
    used = np.concatenate([train_rows, val_rows])
    ok = np.ones(len(kept), dtype=bool)
    ok[used] = _decodable([files[i] for i in used], threads)
    if (~ok).any():
        dropped["undecodable"] = int((~ok).sum())
    train_rows, val_rows = train_rows[ok[train_rows]], val_rows[ok[val_rows]]
    if not len(train_rows):
        raise DataError(
            f"{path}: no training posters (split {config.train_split!r}) to fine-tune on"
        )
    return PosterSet(
        genres=vocab,
        train=everything.take(train_rows),
        val=everything.take(val_rows) if len(val_rows) else None,
        dropped=dict(dropped),
        shared_poster_rows=shared,
        genre_counts={g: int(counts[g]) for g in vocab},
        full_sizes=full_sizes,
    )


def _columns(path: Path) -> list[str]:
    from postergenre.ensemble.training import csv_columns

    return csv_columns(path)


def _subset(rows: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or len(rows) <= limit:
        return rows
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(rows, size=limit, replace=False))


def _decodable(files: Sequence[Path], threads: int) -> np.ndarray:
    """(n,) bool: whether each file decodes to a poster (a full decode, so truncated files
    are found here rather than in the middle of an epoch)."""
    from postergenre.images import load_poster

    def check(p: Path) -> bool:
        try:
            load_poster(p)
        except PosterError:
            return False
        return True

    if threads <= 1:
        return np.array([check(p) for p in files], dtype=bool)
    with ThreadPoolExecutor(threads) as pool:
        return np.array(list(pool.map(check, files)), dtype=bool)


# -- one poster -> one network input ---------------------------------------------------------
def augment_image(image: np.ndarray, augment: Augment, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 -> an augmented copy (random window, mirror, colour), same dtype."""
    out = image
    h, w = out.shape[:2]
    if augment.crop < 1.0:
        area = rng.uniform(augment.crop, 1.0)
        # Aspect changes by at most 10%: a poster's layout is part of what it says.
        ratio = float(np.exp(rng.uniform(np.log(0.9), np.log(1.1))))
        ch = min(h, max(1, round(h * np.sqrt(area * ratio))))
        cw = min(w, max(1, round(w * np.sqrt(area / ratio))))
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        out = out[y0 : y0 + ch, x0 : x0 + cw]
    if augment.hflip and rng.random() < 0.5:
        out = out[:, ::-1]
    if augment.jitter > 0:
        j = augment.jitter
        b, c, s = rng.uniform(1 - j, 1 + j, size=3)
        f = out.astype(np.float32) * b
        grey = f @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        f = grey.mean() + (f - grey.mean()) * c
        grey = f @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        f = grey[..., None] + (f - grey[..., None]) * s
        out = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


@dataclass(frozen=True)
class InputPipeline:
    """How a poster file becomes the (S, S, 3) uint8 network input."""

    scale: InputScale
    fit: str
    input_size: int
    augment: Augment | None = None

    def image(self, path: Path, rng: np.random.Generator | None = None) -> np.ndarray:
        from postergenre.features.cnn import fit_to_input
        from postergenre.images import load_poster

        image = self.scale.apply(load_poster(path))
        if self.augment is not None and rng is not None:
            image = augment_image(image, self.augment, rng)
        fitted, _ = fit_to_input(image, self.fit, self.input_size)
        return fitted

    def batch(
        self, paths: Sequence[Path], seeds: Sequence[Sequence[int]] | None = None
    ) -> np.ndarray:
        """(n, S, S, 3) uint8; ``seeds``: one entropy tuple per poster for augmentation
        (None: no augmentation)."""
        out = np.empty((len(paths), self.input_size, self.input_size, 3), dtype=np.uint8)
        for k, p in enumerate(paths):
            rng = None if seeds is None else np.random.default_rng(list(seeds[k]))
            out[k] = self.image(p, rng)
        return out
