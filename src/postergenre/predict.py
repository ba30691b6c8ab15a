"""Genre predictions for every poster of a feature store: extract once, predict many times.

:class:`StorePredictor` holds one model bundle; it reads a store a shard at a time (memory
stays that of one shard, whatever the store's size), checks that the store's extractors
(names, versions, configs, input scale) are the model's with the same check and message
as ``evaluate``, and gives one row per input path (see :mod:`postergenre.tables` for the
columns): files with identical bytes share a ``poster_id`` and its probabilities but keep
their own rows; posters that failed extraction are rows with their ``status``; posters
whose shard is not finished yet are ``not_done``.

Probabilities are the model's ``predict_proba`` on the stored feature rows, which are the
features ``analyze`` computes on the same poster files (same extractors, same input
scale), so both give the same numbers; the predicted set is the model's decision rule
(:func:`postergenre.ensemble.metrics.decide`: per-genre thresholds, then at least
``min_genres``). Prediction is numpy only (no torch): a GPU would not speed it up.

``postergenre.predict_store(STORE)`` returns a pandas DataFrame.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from postergenre.errors import ConfigError
from postergenre.tables import TableLayout, TableWriter, format_for

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from postergenre.ensemble.bundle import Bundle
    from postergenre.store import FeatureStore

#: Status of a path whose poster has no finished row yet (its run stopped early).
NOT_DONE = "not_done"
#: Stands for "no shard" when sorting the index (files scanned but never planned).
_UNPLANNED = np.iinfo(np.int32).max


class PredictObserver:
    """Progress hooks (the CLI's bar); the defaults do nothing."""

    def started(self, rows: int) -> None: ...
    def advanced(self, rows: int) -> None: ...


@dataclass
class PredictSummary:
    """What a prediction run wrote."""

    store: str
    model: str
    out: str | None
    format: str | None
    rows: int
    posters: int
    ok: int
    failed_by_kind: dict[str, int] = field(default_factory=dict)
    labelled: int = 0
    seconds: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {**asdict(self), "rows_per_s": round(self.rows_per_s, 1)}


class StorePredictor:
    """One model bundle; predicts the genres of every poster of feature stores.

    Build with :meth:`load`; ``bundle`` is a :class:`~postergenre.ensemble.bundle.Bundle`.
    """

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.genres: list[str] = list(bundle.genres)
        self.thresholds = np.asarray(bundle.thresholds, dtype=np.float64)
        self.min_genres = int(getattr(bundle.model, "min_genres", 1))

    @classmethod
    def load(cls, model: str | os.PathLike[str] | None = None, prior: Any = None) -> StorePredictor:
        """Load a bundle (default: the shipped model). ``prior``: a catalogue's genre mix
        (a prior file, a ``GenrePrior`` or genre -> share), as ``analyze --prior``."""
        from postergenre.ensemble.bundle import load_bundle

        bundle = load_bundle(model)
        if prior is not None:
            bundle = bundle.with_prior(prior)
        return cls(bundle)

    @property
    def source(self) -> str:
        return str(self.bundle.path) if self.bundle.path is not None else "the shipped model"

    def layout(self, labels: bool = False) -> TableLayout:
        return TableLayout(tuple(self.genres), poster_id=True, labels=labels)

    def check(self, store: FeatureStore) -> list[str]:
        """Raise ModelError unless ``store`` holds the model's features made alike (the
        check ``evaluate`` makes); returns the model's feature names in column order."""
        self.bundle.check_store(store)
        names = [n for e in self.bundle.extractor_names for n in store.manifest(e)["feature_names"]]
        self.bundle.check_features(names)
        return names

    # -- predicting ---------------------------------------------------------------------
    def iter_tables(
        self,
        store: str | os.PathLike[str] | FeatureStore,
        labels: Mapping[str, Sequence[str]] | None = None,
        observer: PredictObserver | Any = None,
    ) -> Iterator[pa.Table]:
        """One table per shard of ``store`` (rows sorted by path within a shard; files
        never planned come last). ``labels``: poster_id -> true genres (a ``true``
        column). Raises ModelError for a store that does not match the model."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from postergenre.store import FeatureStore

        fs = store if isinstance(store, FeatureStore) else FeatureStore(store)
        self.check(fs)
        observer = observer or PredictObserver()
        layout = self.layout(labels is not None)
        index = fs.index_table().select(["path", "poster_id"])
        plan = fs.plan_table()
        joined = index.join(plan, keys="poster_id", join_type="left outer")
        shard_col = pc.fill_null(joined["shard"].cast(pa.int64()), _UNPLANNED)
        joined = joined.set_column(joined.schema.get_field_index("shard"), "shard", shard_col)
        joined = joined.sort_by([("shard", "ascending"), ("path", "ascending")])
        shards = joined["shard"].to_numpy()
        observer.started(joined.num_rows)
        cuts = np.flatnonzero(np.diff(shards)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(shards)], strict=True):
            if hi <= lo:
                continue
            part = joined.slice(int(lo), int(hi - lo))
            table = self._shard_table(
                fs, int(shards[lo]), part["path"].to_pylist(), part["poster_id"].to_pylist(),
                layout, labels,
            )  # fmt: skip
            observer.advanced(table.num_rows)
            yield table

    def _shard_table(
        self,
        fs: FeatureStore,
        shard: int,
        paths: list[str],
        ids: list[str],
        layout: TableLayout,
        labels: Mapping[str, Sequence[str]] | None,
    ) -> pa.Table:
        from postergenre.ensemble.metrics import decide
        from postergenre.store import OK

        unique = sorted(set(ids))
        state: dict[str, tuple[str, str]] = {}
        blocks: list[tuple[dict[str, int], np.ndarray]] = []
        for name in self.bundle.extractor_names:
            if shard == _UNPLANNED or not fs.is_done(name, shard):
                for pid in unique:
                    state.setdefault(pid, (NOT_DONE, _not_done_message(name, fs)))
                blocks.append(({}, np.zeros((0, 0), np.float32)))
                continue
            feature_names = fs.manifest(name)["feature_names"]
            t = fs.read_rows(
                name, columns=["poster_id", "status", "error", *feature_names], shards=[shard]
            )
            rows = {pid: k for k, pid in enumerate(t["poster_id"].to_pylist())}
            statuses, errors = t["status"].to_pylist(), t["error"].to_pylist()
            for pid in unique:
                k = rows.get(pid)
                if k is None:
                    state.setdefault(pid, (NOT_DONE, _not_done_message(name, fs)))
                elif statuses[k] != OK:
                    state.setdefault(pid, (statuses[k], errors[k] or ""))
            X = np.column_stack(
                [t[c].to_numpy(zero_copy_only=False) for c in feature_names]
            ).astype(np.float32, copy=False)
            blocks.append((rows, X))
        ok_ids = [pid for pid in unique if pid not in state]
        G = len(self.genres)
        proba = np.full((len(unique), G), np.nan)
        decided = np.zeros((len(unique), G), dtype=bool)
        position = {pid: i for i, pid in enumerate(unique)}
        if ok_ids:
            X = np.hstack([X_e[[rows[pid] for pid in ok_ids]] for rows, X_e in blocks]).astype(
                np.float32, copy=False
            )
            S = np.asarray(self.bundle.model.predict_proba(X), dtype=np.float64)
            at = [position[pid] for pid in ok_ids]
            proba[at] = S
            decided[at] = decide(S, self.thresholds, self.min_genres)
        cols: dict[str, list[Any]] = {
            "path": paths, "poster_id": ids, "status": [], "error": [], "predicted": [],
        }  # fmt: skip
        at_rows = [position[pid] for pid in ids]
        for pid, i in zip(ids, at_rows, strict=True):
            status, error = state.get(pid, (OK, ""))
            cols["status"].append(status)
            cols["error"].append(error or None)
            cols["predicted"].append(
                [self.genres[j] for j in np.flatnonzero(decided[i])] if status == OK else None
            )
        if labels is not None:
            cols["true"] = [list(labels[pid]) if pid in labels else None for pid in ids]
        P = proba[at_rows]
        thr = np.where(np.isnan(P[:, :1]), np.nan, self.thresholds[None, :])
        return layout.table({**cols, "proba": P, "threshold": thr})

    def predict(
        self,
        store: str | os.PathLike[str] | FeatureStore,
        labels: str | os.PathLike[str] | Mapping[str, Sequence[str]] | None = None,
    ) -> pd.DataFrame:
        """Every input path of ``store`` as a DataFrame row (see :mod:`postergenre.tables`
        for the columns; ``predicted`` and ``true`` hold lists of genres). ``labels``: a
        labels CSV (or poster_id -> genres) for a ``true`` column."""
        try:
            import pandas as pd
        except ImportError:
            raise ConfigError(
                "predict as a DataFrame needs pandas", hint='pip install pandas (or ".[test]")'
            ) from None
        import pyarrow as pa

        truth = read_true_genres(labels) if isinstance(labels, (str, os.PathLike)) else labels
        chunks = list(self.iter_tables(store, truth))
        table = pa.concat_tables(chunks) if chunks else self.layout(truth is not None).schema()
        if isinstance(table, pa.Schema):
            table = table.empty_table()
        frame = table.to_pandas()
        for col in ("predicted", "true"):
            if col in frame:
                frame[col] = [None if v is None else list(v) for v in frame[col]]
        return pd.DataFrame(frame)

    def write(
        self,
        store: str | os.PathLike[str] | FeatureStore,
        out: str | os.PathLike[str],
        fmt: str | None = None,
        labels: str | os.PathLike[str] | None = None,
        observer: PredictObserver | Any = None,
    ) -> PredictSummary:
        """Write every input path's row to ``out`` (Parquet, CSV or JSON lines: by ``fmt``
        or the file's extension), shard by shard."""
        from postergenre.store import OK, FeatureStore

        fmt = format_for(out, fmt)
        t0 = time.perf_counter()
        fs = store if isinstance(store, FeatureStore) else FeatureStore(store)
        self.check(fs)  # before the output file is made
        truth = read_true_genres(labels) if labels is not None else None
        where = str(Path(fs.path).resolve())
        meta: dict[str, Any] = {
            "store": where,
            "model": self.source,
            "genres": self.genres,
            "thresholds": [float(t) for t in self.thresholds],
            "min_genres": self.min_genres,
        }
        summary = PredictSummary(
            store=where, model=self.source, out=os.fspath(out), format=fmt,
            rows=0, posters=0, ok=0,
        )  # fmt: skip
        posters: set[str] = set()
        ok: set[str] = set()
        with TableWriter(out, fmt, self.layout(truth is not None), metadata=meta) as writer:
            for table in self.iter_tables(fs, truth, observer):
                writer.write(table)
                ids = table["poster_id"].to_pylist()
                statuses = table["status"].to_pylist()
                posters.update(ids)
                for pid, status in zip(ids, statuses, strict=True):
                    if status == OK:
                        ok.add(pid)
                    if truth is not None and pid in truth:
                        summary.labelled += 1
                failed = {pid: s for pid, s in zip(ids, statuses, strict=True) if s != OK}
                for s in failed.values():
                    summary.failed_by_kind[s] = summary.failed_by_kind.get(s, 0) + 1
                summary.rows += table.num_rows
        summary.posters, summary.ok = len(posters), len(ok)
        summary.failed_by_kind = dict(sorted(summary.failed_by_kind.items()))
        summary.seconds = round(time.perf_counter() - t0, 3)
        return summary


def read_true_genres(labels: str | os.PathLike[str]) -> dict[str, tuple[str, ...]]:
    """poster_id -> genres from a labels CSV (``file`` or ``poster_id``, and ``genres``),
    joined by the poster file's bytes as ``train`` and ``evaluate`` join them."""
    from postergenre.ensemble.labels import read_labels

    out: dict[str, tuple[str, ...]] = {}
    for row in read_labels(labels, split_column=None):
        if row.poster_id is not None and row.genres:
            out.setdefault(row.poster_id, row.genres)
    return out


def _not_done_message(name: str, fs: FeatureStore) -> str:
    return (
        f"no {name} features yet (its extraction did not finish): run "
        f"`postergenre extract ... --out {fs.path}` again to finish it"
    )


def predict_store(
    store: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    labels: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Genre probabilities, predicted sets and thresholds of every poster in ``store``
    (one row per input path) as a pandas DataFrame; see :class:`StorePredictor`."""
    return StorePredictor.load(model).predict(store, labels)
