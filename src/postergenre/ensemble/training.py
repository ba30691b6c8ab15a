"""Train, evaluate and benchmark from a feature store and a labels CSV.

The commands ``train``, ``evaluate`` and ``benchmark`` (and ``benchmarks/quality.py``)
are thin wrappers around these functions.
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from postergenre.ensemble.labels import DEFAULT_MIN_COUNT
from postergenre.ensemble.metrics import (
    Metrics,
    constant_scores,
    crossfit_decisions,
    decide,
    evaluate,
)
from postergenre.errors import DataError

Log = Callable[[str], None]
Progress = Callable[[str, int, int], None]


def csv_columns(path: str | os.PathLike[str]) -> list[str]:
    """Header of a CSV (empty when unreadable; read_labels reports the details)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def resolve_split_column(labels: str | os.PathLike[str], split_column: str | None) -> str | None:
    """``split_column`` when the CSV has it; None (no splits) when it is absent.

    A CSV without the column is trained on all its rows, with out-of-fold thresholds.
    """
    if not split_column:
        return None
    return split_column if split_column in csv_columns(labels) else None


def stacker_overrides(
    folds: int | None = None,
    xgb_rounds: int | None = None,
    mlp_epochs: int | None = None,
    bases: str | None = None,
    objective: str | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """GenreStacker parameters from command options; only those given (the rest keep
    the stacker's defaults). ``bases`` is comma-separated."""
    given: dict[str, Any] = {
        "n_folds": folds,
        "xgb_rounds": xgb_rounds,
        "mlp_epochs": mlp_epochs,
        "bases": tuple(b.strip() for b in bases.split(",") if b.strip()) if bases else None,
        "threshold_objective": objective,
        "n_jobs": jobs,
    }
    return {k: v for k, v in given.items() if v is not None}


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``postergenre train``. ``stacker`` overrides GenreStacker parameters."""

    split_column: str | None = "split"
    train_split: str = "train"
    val_split: str | None = "val"
    min_count: int = DEFAULT_MIN_COUNT
    seed: int = 0
    balance: bool = False
    extractors: tuple[str, ...] | None = None
    stacker: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    path: Path
    card: dict[str, Any]
    seconds: float
    val_metrics: Metrics | None
    constants: dict[str, Metrics]


def train_from_store(
    store: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: TrainConfig = TrainConfig(),
    log: Log | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Fit a GenreStacker on the training split and write a bundle with its model card.

    With a validation split: metrics on it use the out-of-fold thresholds (tuned on
    training rows only), then the bundle's thresholds are re-tuned on all validation
    rows (recorded, so ``evaluate`` on those rows cross-fits instead).
    """
    from postergenre import __version__
    from postergenre.ensemble.bundle import feature_reference, save_bundle
    from postergenre.ensemble.data import load_labelled
    from postergenre.ensemble.report import library_versions, model_card_markdown
    from postergenre.ensemble.stacker import GenreStacker

    say = log or (lambda _m: None)
    split_column = resolve_split_column(labels, config.split_column)
    if config.split_column and split_column is None:
        say(f"labels have no {config.split_column!r} column: training on every row")
    splits = None
    if split_column:
        splits = [config.train_split] + ([config.val_split] if config.val_split else [])
    data = load_labelled(
        store,
        labels,
        split_column=split_column,
        splits=splits,
        vocabulary_split=config.train_split if split_column else None,
        min_count=config.min_count,
        extractors=config.extractors,
    )
    for line in data.report.lines():
        say(line)
    train_key = config.train_split if split_column else None
    X, Y, _ = data.subset(train_key)
    if len(X) == 0:
        raise DataError(f"no training rows (split {config.train_split!r}) with features")
    has_val = bool(split_column and config.val_split and data.mask(config.val_split).any())
    say(f"training on {len(X)} posters, {X.shape[1]} features, {len(data.genres)} genres")
    params = {"random_state": config.seed, "balance": config.balance, **config.stacker}
    model = GenreStacker(feature_names=data.feature_names, genres=data.genres, **params)
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(X, Y, progress=progress)
    seconds = time.perf_counter() - t0
    # CPU seconds of all threads: the wall time on a shared machine says little.
    cpu_seconds = time.process_time() - c0
    say(f"trained in {seconds:.0f} s ({cpu_seconds:.0f} CPU s)")
    oof_thresholds = model.thresholds_.copy()
    val_metrics = None
    constants: dict[str, Metrics] = {}
    threshold_ids: list[str] = []
    if has_val:
        Xv, Yv, ids_v = data.subset(config.val_split)
        proba = model.predict_proba(Xv)
        P = decide(proba, oof_thresholds, int(model.min_genres))
        val_metrics = evaluate(Yv, proba, P, data.genres)
        for name, (S, Pc) in constant_scores(model.prevalence_, len(Yv)).items():
            constants[name] = evaluate(Yv, S, Pc, data.genres)
        model.tune_thresholds(Xv, Yv)
        threshold_ids = ids_v
    counts_train = {g: int(c) for g, c in zip(data.genres, Y.sum(0), strict=True)}
    extractors = [
        {k: e[k] for k in ("extractor", "version", "config", "feature_names")}
        for e in data.extractors
    ]
    groups = model._group_columns(data.feature_names)
    card: dict[str, Any] = {
        "name": "postergenre genre stack",
        "summary": (
            "Stacked multi-label genre classifier for movie posters: XGBoost on interpretable "
            "cues and an MLP on the CNN embedding, trained out-of-fold, combined by a "
            "per-genre logistic regression over their log-odds."
        ),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "postergenre_version": __version__,
        "data": {
            "store": str(store),
            "labels": str(labels),
            "split_column": split_column,
            "train_split": config.train_split if split_column else None,
            "val_split": config.val_split if has_val else None,
            "min_count": config.min_count,
            "n_train": int(len(X)),
            "n_val": int(data.mask(config.val_split).sum()) if has_val else 0,
            "join": data.report.to_dict(),
            "join_summary": data.report.lines(),
            "train_genre_counts": counts_train,
            "all_genre_counts": dict(sorted(data.genre_counts.items(), key=lambda t: -t[1])),
        },
        "genres": data.genres,
        "train_prevalence": [float(p) for p in model.prevalence_],
        "thresholds": {
            "source": "validation split" if has_val else "out-of-fold predictions on training rows",
            "values": dict(zip(data.genres, map(float, model.thresholds_), strict=True)),
            "out_of_fold_values": dict(zip(data.genres, map(float, oof_thresholds), strict=True)),
        },
        "model": {
            "bases": model.base_names_,
            "cue_features": int(len(groups["cues"])),
            "embedding_features": int(len(groups["embedding"])),
            "params": {
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in model.get_params().items()
                if k not in ("feature_names", "genres")
            },
        },
        "seeds": {"random_state": config.seed},
        "training_seconds": round(seconds, 1),
        "training_cpu_seconds": round(cpu_seconds, 1),
        "training_cpus": os.cpu_count(),
        "libraries": library_versions(),
        "extractors": [{k: e[k] for k in ("extractor", "version", "config")} for e in extractors],
        "limitations": [
            "Trained on IMDb genres of posters from two public collections; one of them holds "
            "only movies whose first genre is Comedy or Drama, so those dominate.",
            "A poster shows what the marketing chose to show; genres it does not signal "
            "cannot be read from it.",
        ],
    }
    if val_metrics is not None:
        card["metrics"] = {
            "split": config.val_split,
            "note": (
                "Validation rows; F1/Hamming use the out-of-fold thresholds tuned on training "
                "rows only (the bundle's final thresholds are then tuned on these rows)."
            ),
            "overall": {
                "model": val_metrics.overall,
                **{f"constant: {k}": m.overall for k, m in constants.items()},
            },
            "per_genre": val_metrics.per_genre,
        }
    from postergenre.ensemble.metrics import _clean

    card = _clean(card)
    path = save_bundle(
        model,
        out,
        card=card,
        extractors=extractors,
        reference=feature_reference(
            X, data.feature_names, skip_prefixes=(model.embedding_prefix + ".",)
        ),
        threshold_ids=threshold_ids,
        card_markdown=model_card_markdown(card),
    )
    return TrainResult(path, card, seconds, val_metrics, constants)


@dataclass
class EvalResult:
    metrics: Metrics
    constants: dict[str, Metrics]
    genres: list[str]
    Y: np.ndarray
    S: np.ndarray
    prevalence: np.ndarray
    notes: list[str]
    model_path: Path | None
    split: str | None


def evaluate_from_store(
    store: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    split: str | None = None,
    split_column: str | None = "split",
    log: Log | None = None,
) -> EvalResult:
    """Metrics of a bundle on the labelled posters of a store (optionally one split).

    Rows the bundle's thresholds were tuned on are decided with thresholds cross-fitted
    among themselves (each row's thresholds from the other rows), never with thresholds
    tuned on them.
    """
    from postergenre.ensemble.bundle import ID_PREFIX, load_bundle
    from postergenre.ensemble.data import load_labelled
    from postergenre.features.store import FeatureStore

    say = log or (lambda _m: None)
    bundle = load_bundle(model)
    fs = FeatureStore(store)
    bundle.check_store(fs)
    column = resolve_split_column(labels, split_column)
    if split is not None and column is None:
        raise DataError(f"{labels}: no {split_column!r} column, so no split {split!r}")
    data = load_labelled(
        store,
        labels,
        split_column=column,
        splits=[split] if split is not None else None,
        genres=bundle.genres,
        extractors=bundle.extractor_names,
    )
    for line in data.report.lines():
        say(line)
    bundle.check_features(data.feature_names)
    S = bundle.model.predict_proba(data.X)
    Y = data.Y
    P = decide(S, bundle.thresholds, int(bundle.model.min_genres))
    notes = []
    tuned_on = np.array([pid[:ID_PREFIX] in bundle.threshold_ids for pid in data.poster_ids])
    if tuned_on.any():
        idx = np.nonzero(tuned_on)[0]
        if len(idx) >= 2:
            P[idx] = crossfit_decisions(
                Y[idx],
                S[idx],
                seed=0,
                min_genres=int(bundle.model.min_genres),
                objective=str(bundle.model.threshold_objective),
            )
        notes.append(
            f"{len(idx)} of {len(Y)} rows are the rows the model's thresholds were tuned on: "
            "their decisions use thresholds cross-fitted among them (5 folds) instead"
        )
    metrics = evaluate(Y, S, P, bundle.genres)
    prevalence = np.asarray(bundle.model.prevalence_, dtype=np.float64)
    constants = {
        name: evaluate(Y, Sc, Pc, bundle.genres)
        for name, (Sc, Pc) in constant_scores(prevalence, len(Y)).items()
    }
    return EvalResult(
        metrics, constants, bundle.genres, Y, S, prevalence, notes, bundle.path, split
    )


def benchmark_from_store(
    store: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    *,
    split_column: str = "split",
    train_split: str = "train",
    eval_split: str = "val",
    min_count: int = DEFAULT_MIN_COUNT,
    seed: int = 0,
    baselines: Sequence[str] | None = None,
    balance_compare: bool = False,
    stacker: dict[str, Any] | None = None,
    threshold_objective: str = "micro",
    log: Log | None = None,
) -> Any:
    """Load the store's labelled train/eval rows and run :func:`run_benchmark`."""
    from postergenre.ensemble.benchmark import run_benchmark
    from postergenre.ensemble.data import load_labelled

    say = log or (lambda _m: None)
    if resolve_split_column(labels, split_column) is None:
        raise DataError(
            f"{labels}: no {split_column!r} column; the benchmark needs a train and an eval split",
            hint="pass --split-column",
        )
    data = load_labelled(
        store,
        labels,
        split_column=split_column,
        splits=[train_split, eval_split],
        vocabulary_split=train_split,
        min_count=min_count,
    )
    for line in data.report.lines():
        say(line)
    Xt, Yt, _ = data.subset(train_split)
    Xe, Ye, _ = data.subset(eval_split)
    if not len(Xt) or not len(Xe):
        raise DataError(
            f"the benchmark needs rows in both splits: {len(Xt)} {train_split!r}, "
            f"{len(Xe)} {eval_split!r}"
        )
    result = run_benchmark(
        Xt,
        Yt,
        Xe,
        Ye,
        data.feature_names,
        data.genres,
        stacker_params=stacker,
        baselines=baselines,
        balance_compare=balance_compare,
        seed=seed,
        threshold_objective=threshold_objective,
        log=say,
    )
    result.eval_split = eval_split
    result.settings["join"] = data.report.to_dict()
    result.settings["store"] = str(store)
    result.settings["labels"] = str(labels)
    return result
