"""Labelled training/evaluation data: a feature store joined with a labels CSV.

This is the one place where the ensemble meets files; the models themselves only see
arrays.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from postergenre.ensemble.labels import (
    DEFAULT_MIN_COUNT,
    JoinReport,
    build_vocabulary,
    join_labels,
    read_labels,
)
from postergenre.errors import DataError


@dataclass
class LabelledData:
    """Rows of a store that have labels.

    ``X`` float32 (n, d) with ``feature_names`` (d,); ``Y`` uint8 (n, G) over ``genres``;
    ``splits`` (n,) split names (None without a split column); ``extractors``: the store
    manifest of each extractor used, in column order.
    """

    X: np.ndarray
    Y: np.ndarray
    poster_ids: list[str]
    splits: list[str | None]
    feature_names: list[str]
    genres: list[str]
    extractors: list[dict[str, Any]]
    report: JoinReport
    genre_counts: dict[str, int]
    #: (n,) collection of each row (None without a group column).
    groups: list[str | None] = field(default_factory=list)
    #: The group column read (None: none).
    group_column: str | None = None

    def mask(self, split: str | None) -> np.ndarray:
        """(n,) rows of ``split`` (every row when None)."""
        if split is None:
            return np.ones(len(self.splits), dtype=bool)
        return np.array([s == split for s in self.splits], dtype=bool)

    def groups_of(self, split: str | None) -> list[str]:
        """(rows of ``split``,) collection of each row ("all" without a group column)."""
        m = self.mask(split)
        groups = self.groups or [None] * len(m)
        return [g or "all" for g, k in zip(groups, m, strict=True) if k]

    def subset(self, split: str | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        m = self.mask(split)
        return self.X[m], self.Y[m], [p for p, k in zip(self.poster_ids, m, strict=True) if k]


def load_labelled(
    store_path: str | os.PathLike[str],
    labels_csv: str | os.PathLike[str],
    *,
    split_column: str | None = "split",
    splits: Sequence[str] | None = None,
    vocabulary_split: str | None = "train",
    genres: Sequence[str] | None = None,
    min_count: int = DEFAULT_MIN_COUNT,
    extractors: Sequence[str] | None = None,
    group_column: str | None = None,
) -> LabelledData:
    """Join ``labels_csv`` to the store at ``store_path``.

    The genre vocabulary is ``genres`` when given (evaluating a trained model), else the
    genres with at least ``min_count`` posters among the rows of ``vocabulary_split``
    (all rows when there is no split column). ``splits`` keeps only those splits.
    ``extractors`` picks the store's extractors (default: all of them).
    ``group_column``: the column naming each poster's collection (None: none).
    """
    from postergenre.features.store import FeatureStore

    store = FeatureStore(store_path)
    names = list(extractors) if extractors is not None else store.extractors()
    manifests = [store.manifest(n) for n in names]
    data = store.load(names)
    rows = read_labels(labels_csv, split_column=split_column, group_column=group_column)
    if genres is None:
        voc_rows = [
            r
            for r in rows
            if not split_column or vocabulary_split is None or r.split == vocabulary_split
        ]
        if not voc_rows:
            raise DataError(
                f"{labels_csv}: no rows of split {vocabulary_split!r} to build the genre "
                "vocabulary from",
                hint="check --split-column and --train-split",
            )
        vocab, counts = build_vocabulary((r.genres for r in voc_rows), min_count)
        if not vocab:
            raise DataError(
                f"{labels_csv}: no genre has {min_count} or more posters",
                hint="lower --min-count",
            )
    else:
        vocab = list(genres)
        _, counts = build_vocabulary(r.genres for r in rows)
    failures: dict[str, str] = {}
    for f in store.failures():
        if f.extractor in names:
            failures.setdefault(f.poster_id, f"{f.extractor}:{f.status}")
    joined = join_labels(rows, data.ids, vocab, failures=failures, splits=splits)
    if joined.report.kept == 0:
        raise DataError(
            f"no labelled poster of {labels_csv} has features in {store_path}: "
            + "; ".join(joined.report.lines()),
            hint="extract the posters of this labels file into the store first",
        )
    return LabelledData(
        X=data.X[joined.store_rows],
        Y=joined.Y,
        poster_ids=joined.poster_ids,
        splits=joined.splits,
        feature_names=list(data.feature_names),
        genres=vocab,
        extractors=manifests,
        report=joined.report,
        genre_counts=dict(counts),
        groups=joined.groups,
        group_column=group_column,
    )
