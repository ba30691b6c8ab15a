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
from typing import TYPE_CHECKING, Any

import numpy as np

from postergenre.ensemble.genre_sets import DEFAULT_MIN_COUNT as DEFAULT_SETS_MIN_COUNT
from postergenre.ensemble.genre_sets import read_genre_set_table
from postergenre.ensemble.label_shift import (
    FirstGenreSelection,
    GenrePrior,
    LabelWeights,
    WeightRule,
    collection_weights,
    default_prior,
    read_prior,
    selection_matrix,
    selection_record,
    table_weights,
)
from postergenre.ensemble.labels import DEFAULT_MIN_COUNT
from postergenre.ensemble.metrics import (
    DEFAULT_THRESHOLD_OBJECTIVE,
    Metrics,
    bootstrap_difference,
    bootstrap_intervals,
    constant_scores,
    crossfit_decisions,
    decide,
    evaluate,
)
from postergenre.errors import ConfigError, DataError

if TYPE_CHECKING:
    from postergenre.ensemble.bundle import Bundle
    from postergenre.ensemble.data import LabelledData

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


def resolve_group_column(labels: str | os.PathLike[str], group_column: str | None) -> str | None:
    """``group_column`` when the CSV has it; None (one collection) when it is absent."""
    if not group_column:
        return None
    return group_column if group_column in csv_columns(labels) else None


def make_label_weights(
    Y: np.ndarray,
    groups: Sequence[str],
    genres: Sequence[str],
    prior: GenrePrior | None = None,
    rule: WeightRule | None = None,
) -> LabelWeights:
    """Label weights of training rows (see :mod:`postergenre.ensemble.label_shift`)."""
    return collection_weights(Y, groups, genres, prior or default_prior(), rule or WeightRule())


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
    #: The column naming each poster's collection (used when the CSV has it).
    group_column: str | None = "source"
    #: Weight labels per collection towards the reference prior (label_shift).
    label_weights: bool = True
    #: Reference genre prior file (None: the shipped IMDb-wide shares).
    prior: str | None = None
    weight_rule: WeightRule = field(default_factory=WeightRule)
    #: Collections that kept only films with certain first-listed genres: their rows are
    #: fitted by a selection-aware likelihood in the learners ``stacker["selection_in"]``
    #: names (label_shift.FirstGenreSelection).
    selection: tuple[FirstGenreSelection, ...] = ()
    #: Stores of degraded copies of the training posters (``extract --degrade``): their
    #: rows join the training rows (same labels and weights; a poster and its copies share
    #: a fold), so the learners see the variation other collections' files show.
    augment: tuple[str, ...] = ()
    #: After measuring on the validation split, fit the same recipe again on training +
    #: validation rows and save that (thresholds out-of-fold); the card keeps the metrics
    #: of the fit that did not see the validation rows.
    refit: bool = False
    #: Where to save that held-out fit too (with ``refit``; None: not saved).
    holdout_out: str | None = None
    #: Condition the probabilities on the genre combinations films have
    #: (:mod:`~postergenre.ensemble.genre_sets`): "imdb" for the shipped table of IMDb
    #: films, a table file, or None (genres independent).
    genre_sets: str | None = None
    #: A combination must be this common among the table's films to be possible.
    genre_sets_min_count: int = DEFAULT_SETS_MIN_COUNT


@dataclass
class _Fit:
    """One fit of the stack on some labelled rows (see :func:`_fit_stack`)."""

    model: Any
    weights: LabelWeights | None
    X: np.ndarray
    Y: np.ndarray
    n_augmented: int
    seconds: float
    cpu_seconds: float


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
    rows (recorded, so ``evaluate`` on those rows cross-fits instead). With
    ``config.refit`` the bundle is instead the same recipe refitted on training +
    validation rows (its own out-of-fold thresholds), and the card's metrics are those
    measured before, on the held-out fit (saved to ``config.holdout_out`` when given).
    """
    from postergenre import __version__
    from postergenre.ensemble.bundle import feature_reference, save_bundle
    from postergenre.ensemble.data import load_labelled
    from postergenre.ensemble.report import library_versions, model_card_markdown
    from postergenre.input_scale import InputScale

    say = log or (lambda _m: None)
    split_column = resolve_split_column(labels, config.split_column)
    if config.split_column and split_column is None:
        say(f"labels have no {config.split_column!r} column: training on every row")
    splits = None
    if split_column:
        splits = [config.train_split] + ([config.val_split] if config.val_split else [])
    group_column = resolve_group_column(labels, config.group_column)
    data = load_labelled(
        store,
        labels,
        split_column=split_column,
        splits=splits,
        vocabulary_split=config.train_split if split_column else None,
        min_count=config.min_count,
        extractors=config.extractors,
        group_column=group_column,
    )
    for line in data.report.lines():
        say(line)
    train_key = config.train_split if split_column else None
    train_mask = data.mask(train_key)
    if not train_mask.any():
        raise DataError(f"no training rows (split {config.train_split!r}) with features")
    has_val = bool(split_column and config.val_split and data.mask(config.val_split).any())
    if config.refit and not has_val:
        raise DataError(
            "--refit needs validation rows to measure on before refitting",
            hint=f"give a split column with {config.val_split!r} rows, or drop --refit",
        )
    aug_splits = [train_key] if train_key else None
    if group_column is None and config.label_weights:
        say(f"labels have no {config.group_column!r} column: one collection")
    # Each store of degraded copies is read once, for the held-out fit and the refit.
    copies = [
        (aug, _load_copies(aug, labels, data, split_column, aug_splits)) for aug in config.augment
    ]
    fit = _fit_stack(data, train_mask, config, copies, say, progress)
    model, weights, X, Y = fit.model, fit.weights, fit.X, fit.Y
    oof_thresholds = model.thresholds_.copy()
    val_metrics = None
    constants: dict[str, Metrics] = {}
    threshold_ids: list[str] = []
    val_plain: Metrics | None = None
    val_by_group: dict[str, dict[str, Any]] = {}
    if has_val:
        Xv, Yv, ids_v = data.subset(config.val_split)
        groups_v = data.groups_of(config.val_split)
        Wv = None if weights is None else weights.weights_for(Yv, groups_v)
        proba = model.predict_proba(Xv)
        P = decide(proba, oof_thresholds, int(model.min_genres))
        val_metrics = evaluate(Yv, proba, P, data.genres, Wv)
        val_plain = evaluate(Yv, proba, P, data.genres)
        for grp in sorted(set(groups_v)):
            m = np.array([g == grp for g in groups_v])
            val_by_group[grp] = {
                "n": int(m.sum()),
                **evaluate(Yv[m], proba[m], P[m], data.genres).overall,
            }
        for name, (S, Pc) in constant_scores(model.reference_prior, len(Yv)).items():
            constants[name] = evaluate(Yv, S, Pc, data.genres, Wv)
        model.tune_thresholds(Xv, Yv, sample_weight=Wv)
        threshold_ids = ids_v
    counts_train = {g: int(c) for g, c in zip(data.genres, Y.sum(0), strict=True)}
    from postergenre.input_scale import NATIVE

    extractors = [
        {
            **{k: e[k] for k in ("extractor", "version", "config", "feature_names")},
            "input": e.get("input", NATIVE),
        }
        for e in data.extractors
    ]
    groups = model._group_columns(data.feature_names)
    card: dict[str, Any] = {
        "name": "postergenre genre stack",
        "summary": (
            "Stacked multi-label genre classifier for movie posters: "
            + _bases_phrase(model.base_names_)
            + ", trained out-of-fold, combined by a per-genre logistic regression over "
            "their log-odds."
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
            "augment": list(config.augment),
            "n_augmented_copies": fit.n_augmented,
            "n_val": int(data.mask(config.val_split).sum()) if has_val else 0,
            "join": data.report.to_dict(),
            "join_summary": data.report.lines(),
            "train_genre_counts": counts_train,
            "all_genre_counts": dict(sorted(data.genre_counts.items(), key=lambda t: -t[1])),
        },
        "genres": data.genres,
        "train_prevalence": [float(p) for p in model.prevalence_],
        "reference_prior": {
            "source": weights.prior.source if weights is not None else "training prevalence",
            "values": dict(zip(data.genres, map(float, model.reference_prior), strict=True)),
        },
        "label_weights": _weights_card(
            weights, group_column, config.selection, _selection_in(config)
        ),
        "collection_projection": _projection_card(model),
        "genre_sets": _genre_sets_card(model),
        "input_scale": str(InputScale.from_record(extractors[0]["input"])) if extractors else None,
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
        "training_seconds": round(fit.seconds, 1),
        "training_cpu_seconds": round(fit.cpu_seconds, 1),
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
                "rows only (the bundle's final thresholds are then tuned on these rows). "
                + (
                    "Per-genre metrics use the label weights (the training table applied to "
                    "the val rows)."
                    if weights is not None
                    else ""
                )
            ),
            "overall": {
                "model": val_metrics.overall,
                **({"model (unweighted)": val_plain.overall} if val_plain is not None else {}),
                **{f"constant: {k}": m.overall for k, m in constants.items()},
            },
            "by_collection": val_by_group,
            "per_genre": val_metrics.per_genre,
        }
    from postergenre.ensemble.metrics import _clean

    def save(
        fitted: _Fit, where: str | os.PathLike[str], card: dict[str, Any], ids: list[str]
    ) -> Path:
        return save_bundle(
            fitted.model,
            where,
            card=card,
            extractors=extractors,
            reference=feature_reference(
                fitted.X, data.feature_names, skip_prefixes=(fitted.model.embedding_prefix + ".",)
            ),
            threshold_ids=ids,
            card_markdown=model_card_markdown(card),
        )

    card = _clean(card)
    if not config.refit:
        path = save(fit, out, card, threshold_ids)
        return TrainResult(path, card, fit.seconds, val_metrics, constants)
    if config.holdout_out:
        save(fit, config.holdout_out, card, threshold_ids)
        say(f"held-out fit saved to {config.holdout_out}")
    # The same recipe on training + validation rows: more posters for the bundle; its
    # thresholds are its own out-of-fold ones, and the card keeps the held-out metrics.
    both = train_mask | data.mask(config.val_split)
    say(f"refitting on training + validation rows ({int(both.sum())} posters)")
    refit = _fit_stack(data, both, config, copies, say, progress)
    card = _clean(_refit_card(card, refit, data, both, config))
    path = save(refit, out, card, [])
    return TrainResult(path, card, refit.seconds, val_metrics, constants)


#: How the model card names each base learner.
_BASE_PHRASES = {
    "xgb": "XGBoost on interpretable cues",
    "mlp": "an MLP on the CNN embedding",
    "knn": "the nearest training posters in that embedding",
    "mlp_all": "an MLP on every feature",
}


def _bases_phrase(names: list[str]) -> str:
    """["xgb", "mlp", "knn"] -> "XGBoost on ..., an MLP on ... and the nearest ..."."""
    parts = [_BASE_PHRASES.get(n, n) for n in names]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


#: How the card and the log name the learners a selection-aware fit reaches.
_SELECTION_PHRASES = {
    "meta": "the meta-learner fits",
    "mlp": "the MLP base fits",
    "all": "the MLP base and the meta-learner fit",
}


def _selection_in(config: TrainConfig) -> str:
    """The learners a selection reaches: the stacker's setting, or its default."""
    from postergenre.ensemble.stacker import DEFAULT_SELECTION_IN

    return str(config.stacker.get("selection_in", DEFAULT_SELECTION_IN))


def _weights_card(
    weights: LabelWeights | None,
    group_column: str | None,
    selection: Sequence[FirstGenreSelection] = (),
    selection_in: str | None = None,
) -> dict[str, Any] | None:
    """The card's record of the label weights: the table, the rule in words, markdown;
    and the collections fitted by a selection-aware likelihood (by ``selection_in``), which
    is recorded without label weights too (then with no table)."""
    if weights is None and not selection:
        return None
    others = "by the weights above" if weights is not None else "with every label counted once"
    chosen = [
        f"{s.describe()}: {_SELECTION_PHRASES[str(selection_in)]} its posters by the likelihood "
        f"of their genres given that selection (the other learners {others})"
        for s in selection
    ]
    if weights is None:
        return {
            "rule": None,
            "group_column": group_column,
            "selection": selection_record(selection),
            "selection_in": selection_in,
            "summary": ["no label weights (--no-label-weights)", *chosen],
            "markdown": "",
        }
    return {
        **weights.to_dict(),
        "group_column": group_column,
        "selection": selection_record(selection),
        "selection_in": selection_in if selection else None,
        "summary": weights.lines() + chosen,
        "markdown": weights.markdown_table(),
    }


def _projection_card(model: Any) -> dict[str, Any] | None:
    """The collection directions projected out of the embedding (None: none)."""
    projection = getattr(model, "projection_", None)
    if projection is None:
        return None
    return {
        "directions": int(len(projection.basis)),
        "embedding_columns": int(len(projection.columns)),
        "accuracy": [round(a, 4) for a in projection.accuracy],
    }


def _genre_sets_card(model: Any) -> dict[str, Any] | None:
    """The genre combinations the probabilities are conditioned on (None: none)."""
    sets = getattr(model, "genre_sets_", None)
    if sets is None:
        return None
    return {
        "source": sets.source,
        "min_count": sets.min_count,
        "sets": int(len(sets.support)),
        "films_covered": int(sets.counts.sum()),
        "n_films": sets.n_films,
        "max_genres": sets.max_genres,
        "offsets": dict(zip(sets.genres, (round(float(b), 4) for b in sets.offset), strict=True)),
    }


def _refit_card(
    card: dict[str, Any], refit: _Fit, data: LabelledData, rows: np.ndarray, config: TrainConfig
) -> dict[str, Any]:
    """The held-out fit's card, made true of the refitted model: its rows, weights,
    thresholds and times; the metrics stay those of the held-out fit, and say so."""
    model, weights = refit.model, refit.weights
    card = {**card, "data": dict(card["data"]), "thresholds": dict(card["thresholds"])}
    card["data"].update(
        n_train=int(rows.sum()),
        n_augmented_copies=refit.n_augmented,
        train_split=[config.train_split, config.val_split],
        train_genre_counts={
            g: int(c) for g, c in zip(data.genres, data.Y[rows].sum(0), strict=True)
        },
    )
    card["refit"] = {
        "rows": int(rows.sum()),
        "splits": [config.train_split, config.val_split],
        "note": (
            "The bundle is the same recipe refitted on training + validation rows after the "
            "validation metrics were measured on a fit that did not see them; its "
            "thresholds are tuned out-of-fold on all those rows."
        ),
        "held_out_training_seconds": card["training_seconds"],
    }
    card["train_prevalence"] = [float(p) for p in model.prevalence_]
    card["thresholds"] = {
        "source": "out-of-fold predictions on training + validation rows (refit)",
        "values": dict(zip(data.genres, map(float, model.thresholds_), strict=True)),
        "out_of_fold_values": dict(zip(data.genres, map(float, model.thresholds_), strict=True)),
    }
    card["label_weights"] = _weights_card(
        weights, data.group_column, config.selection, _selection_in(config)
    )
    card["collection_projection"] = _projection_card(model)
    card["genre_sets"] = _genre_sets_card(model)
    card["training_seconds"] = round(refit.seconds, 1)
    card["training_cpu_seconds"] = round(refit.cpu_seconds, 1)
    if "metrics" in card:
        card["metrics"] = {
            **card["metrics"],
            "note": "Measured on the held-out fit (trained on the training split alone), "
            "before the refit. " + card["metrics"]["note"],
        }
    return card


def _fit_stack(
    data: LabelledData,
    rows: np.ndarray,
    config: TrainConfig,
    copies: Sequence[tuple[str, LabelledData]],
    say: Log,
    progress: Progress | None,
) -> _Fit:
    """Fit a GenreStacker on the ``rows`` of ``data`` (with their collection label weights
    and the degraded copies of those posters: ``copies``, (store, its rows) pairs)."""
    from postergenre.ensemble.stacker import GenreStacker

    X, Y = data.X[rows], data.Y[rows]
    ids = [p for p, k in zip(data.poster_ids, rows, strict=True) if k]
    groups = data.groups or [None] * len(rows)
    row_groups = [g or "all" for g, k in zip(groups, rows, strict=True) if k]
    say(f"training on {len(X)} posters, {X.shape[1]} features, {len(data.genres)} genres")
    weights: LabelWeights | None = None
    reference = None
    if config.label_weights:
        prior = read_prior(config.prior) if config.prior else default_prior()
        weights = make_label_weights(Y, row_groups, data.genres, prior, config.weight_rule)
        reference = prior.vector(data.genres)
        for line in weights.lines():
            say(line)
    S_fit = selection_matrix(config.selection, row_groups, data.genres)
    for s in config.selection:
        say(f"selection-aware fit ({_SELECTION_PHRASES[_selection_in(config)]} it): {s.describe()}")
    params = {"random_state": config.seed, "balance": config.balance, **config.stacker}
    model = GenreStacker(feature_names=data.feature_names, genres=data.genres, **params)
    W_fit = None if weights is None else weights.W
    X_fit, Y_fit, groups_fit = X, Y, None
    n_augmented = 0
    for aug, aug_data in copies:
        X_fit, Y_fit, W_fit, S_fit, groups_fit, n = _add_copies(
            aug_data, ids, X_fit, Y_fit, W_fit, S_fit, groups_fit
        )
        n_augmented += n
        say(f"added {n} degraded copies of training posters from {aug}")
    collections = None
    if model.collection_directions:
        if not any(g is not None for g in data.groups or ()):
            raise ConfigError(
                f"--collection-directions {model.collection_directions}: the labels name no "
                "collection per poster",
                hint="add a collection column (see --group-column) or leave the option at 0",
            )
        # The posters' own rows say which collection they are from; their degraded
        # copies take no part in finding the directions.
        collections = [g for g, k in zip(groups, rows, strict=True) if k]
        collections += [None] * n_augmented
    sets = None
    if config.genre_sets:
        imdb = config.genre_sets.lower() == "imdb"
        table = read_genre_set_table(None if imdb else config.genre_sets)
        sets = table.support(data.genres, config.genre_sets_min_count)
        say(
            f"genre combinations: probabilities conditioned on the {len(sets.support)} "
            f"combinations of these genres found in {config.genre_sets_min_count} or more "
            f"films ({table.source or config.genre_sets}; at most "
            f"{sets.max_genres} genres each)"
        )
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(
        X_fit,
        Y_fit,
        progress=progress,
        sample_weight=W_fit,
        reference_prior=reference,
        groups=groups_fit,
        selection=S_fit,
        collections=collections,
        genre_sets=sets,
    )
    projection = getattr(model, "projection_", None)
    if model.collection_directions and projection is None:
        say("collection directions: none projected out (fewer than two collections)")
    if projection is not None:
        say(
            f"collection directions: {len(projection.basis)} projected out of the embedding "
            "(a logistic regression told the collections apart among posters of the same "
            f"genres with accuracy {projection.accuracy[0]:.2f} before, "
            f"{projection.accuracy[-1]:.2f} at the last direction; 0.50 = not at all)"
        )
    if weights is not None:
        model.label_weights_ = {**weights.to_dict(), "group_column": data.group_column}
    if config.selection:
        model.label_weights_ = {
            **(getattr(model, "label_weights_", None) or {}),
            "selection": selection_record(config.selection),
        }
    seconds = time.perf_counter() - t0
    # CPU seconds of all threads: the wall time on a shared machine says little.
    cpu_seconds = time.process_time() - c0
    say(f"trained in {seconds:.0f} s ({cpu_seconds:.0f} CPU s)")
    return _Fit(model, weights, X, Y, n_augmented, seconds, cpu_seconds)


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
    #: collection -> {"n": rows, metric: value} (only when the labels name collections).
    by_collection: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The shortcut audit (see :func:`shortcut_audit`); None with one collection.
    shortcut: dict[str, Any] | None = None
    #: Whether per-genre metrics used the model's label-weight table.
    weighted: bool = False
    #: Bootstrap intervals of the model's overall metrics (see
    #: :func:`~postergenre.ensemble.metrics.bootstrap_intervals`); empty unless asked for.
    intervals: dict[str, dict[str, float]] = field(default_factory=dict)
    #: How many resamples and which level the intervals are of.
    interval_spec: dict[str, float] = field(default_factory=dict)
    #: The bundle's per-genre decision thresholds, and the decisions (n, G): by those
    #: thresholds, except on rows they were tuned on (see the notes).
    thresholds: np.ndarray | None = None
    P: np.ndarray | None = None
    #: Another model on the same posters (``compare``): its overall metrics and the paired
    #: bootstrap intervals of the differences; None unless asked for.
    comparison: dict[str, Any] | None = None


def _load_copies(
    store: str,
    labels: str | os.PathLike[str],
    data: LabelledData,
    split_column: str | None,
    splits: list[str] | None,
) -> LabelledData:
    """The rows of a store of degraded copies (``extract --degrade``), checked to hold the
    training store's features."""
    from postergenre.ensemble.data import load_labelled

    aug = load_labelled(
        store,
        labels,
        split_column=split_column,
        splits=splits,
        genres=data.genres,
        extractors=[str(e["extractor"]) for e in data.extractors],
    )
    if aug.feature_names != data.feature_names:
        raise DataError(
            f"augmentation store {store} holds other features than the training store",
            hint="extract the copies with the same extractors (and --degrade)",
        )
    return aug


def _add_copies(
    aug: LabelledData,
    ids_train: list[str],
    X: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray | None,
    S: np.ndarray | None,
    groups: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray, int]:
    """Training rows + the copies in ``aug`` of those posters (same labels, weights and
    selection), with a group per poster so that copies share their poster's fold."""
    position = {pid: i for i, pid in enumerate(ids_train)}
    rows = [position.get(pid, -1) for pid in aug.poster_ids]
    keep = np.array([r >= 0 for r in rows], dtype=bool)
    src = np.array([r for r in rows if r >= 0], dtype=np.int64)
    n0 = len(ids_train)
    base_groups = np.arange(n0) if groups is None else groups
    X2 = np.concatenate([X, aug.X[keep]])
    Y2 = np.concatenate([Y, Y[src]])
    W2 = None if W is None else np.concatenate([W, W[src]])
    S2 = None if S is None else np.concatenate([S, S[src]])
    G2 = np.concatenate([base_groups, src])
    return X2, Y2, W2, S2, G2, int(keep.sum())


def evaluate_from_store(
    store: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    split: str | None = None,
    split_column: str | None = "split",
    log: Log | None = None,
    group_column: str | None = "source",
    bootstrap: int = 0,
    level: float = 0.95,
    compare: str | os.PathLike[str] | None = None,
) -> EvalResult:
    """Metrics of a bundle on the labelled posters of a store (optionally one split).

    Rows the bundle's thresholds were tuned on are decided with thresholds cross-fitted
    among themselves (each row's thresholds from the other rows), never with thresholds
    tuned on them. ``bootstrap`` > 0 adds basic bootstrap intervals (at ``level``) of the
    model's overall metrics from that many resamples of the posters. ``compare`` (another
    bundle) scores that model on the same posters and gives the paired bootstrap interval
    of each difference (``bootstrap`` resamples, 1,000 when 0).
    """
    from postergenre.ensemble.bundle import load_bundle
    from postergenre.ensemble.data import load_labelled
    from postergenre.features.store import FeatureStore

    say = log or (lambda _m: None)
    bundle = load_bundle(model)
    fs = FeatureStore(store)
    bundle.check_store(fs)
    column = resolve_split_column(labels, split_column)
    if split is not None and column is None:
        raise DataError(f"{labels}: no {split_column!r} column, so no split {split!r}")
    groups_col = resolve_group_column(labels, group_column)

    def load_rows(extractors: Sequence[str]) -> LabelledData:
        return load_labelled(
            store,
            labels,
            split_column=column,
            splits=[split] if split is not None else None,
            genres=bundle.genres,
            extractors=list(extractors),
            group_column=groups_col,
        )

    data = load_rows(bundle.extractor_names)
    for line in data.report.lines():
        say(line)
    Y = data.Y
    groups = data.groups_of(None)
    # Per-genre metrics use the model's label weights where the rows come from the
    # collections it was trained on (its val split); posters of other collections count as
    # they are.
    table = (getattr(bundle.model, "label_weights_", None) or {}).get("table") or []
    known = {str(r["collection"]) for r in table}
    W = table_weights(table, bundle.genres, Y, groups) if known & set(groups) else None
    notes = []
    if W is not None:
        notes.append(
            "per-genre metrics use the model's label weights for rows of its training "
            f"collections ({', '.join(sorted(known & set(groups)))})"
        )
    S, P = _scored(bundle, data, W, notes)
    refit = bundle.card.get("refit") or {}
    seen = set(refit.get("splits") or [])
    if seen and column is not None and seen & {s for s in data.splits if s is not None}:
        # Names only: a store of other posters can share split names (rows are not tracked).
        notes.append(
            f"the model was refitted on its labels' {' + '.join(sorted(seen))} rows: if these "
            "are those posters, these figures are not held-out (the card's validation metrics "
            "are, from the fit before the refit)"
        )
    metrics = evaluate(Y, S, P, bundle.genres, W)
    intervals: dict[str, dict[str, float]] = {}
    spec: dict[str, float] = {}
    if bootstrap > 0:
        intervals = bootstrap_intervals(Y, S, P, W, n_boot=bootstrap, level=level, seed=0)
        spec = {"resamples": bootstrap, "level": level}
    comparison = None
    if compare is not None:
        comparison = _compare(
            compare, bundle, data, load_rows, fs, W, (S, P), bootstrap or 1000, level, say
        )
    prevalence = np.asarray(bundle.model.reference_prior, dtype=np.float64)
    constants = {
        name: evaluate(Y, Sc, Pc, bundle.genres, W)
        for name, (Sc, Pc) in constant_scores(prevalence, len(Y)).items()
    }
    by_collection: dict[str, dict[str, Any]] = {}
    shortcut = None
    if groups_col is not None and len(set(groups)) > 1:
        for grp in sorted(set(groups)):
            m = np.array([g == grp for g in groups])
            res = evaluate(Y[m], S[m], P[m], bundle.genres)
            by_collection[grp] = {
                "n": int(m.sum()),
                **res.overall,
                # Each genre's AP within the collection (None where it has no positive).
                "per_genre": {
                    r["genre"]: {"support": int(r["support"]), "ap": r["ap"]} for r in res.per_genre
                },
            }
        shortcut = shortcut_audit(bundle.model.decision_function(data.X), Y, groups)
    return EvalResult(
        metrics,
        constants,
        bundle.genres,
        Y,
        S,
        prevalence,
        notes,
        bundle.path,
        split,
        by_collection=by_collection,
        shortcut=shortcut,
        weighted=W is not None,
        intervals=intervals,
        interval_spec=spec,
        thresholds=np.asarray(bundle.thresholds, dtype=np.float64),
        P=P,
        comparison=comparison,
    )


def _scored(
    bundle: Bundle, data: LabelledData, W: np.ndarray | None, notes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """A bundle's probabilities and decisions on ``data``; rows its thresholds were tuned
    on are decided with thresholds cross-fitted among them (noted in ``notes``)."""
    from postergenre.ensemble.bundle import ID_PREFIX

    bundle.check_features(data.feature_names)
    S = bundle.model.predict_proba(data.X)
    Y = data.Y
    P = decide(S, bundle.thresholds, int(bundle.model.min_genres))
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
                weights=None if W is None else W[idx],
            )
        notes.append(
            f"{len(idx)} of {len(Y)} rows are the rows the model's thresholds were tuned on: "
            "their decisions use thresholds cross-fitted among them (5 folds) instead"
        )
    return S, P


def _compare(
    other: str | os.PathLike[str],
    bundle: Bundle,
    data: LabelledData,
    load_rows: Callable[[Sequence[str]], LabelledData],
    store: Any,
    W: np.ndarray | None,
    first: tuple[np.ndarray, np.ndarray],
    n_boot: int,
    level: float,
    say: Log,
) -> dict[str, Any]:
    """Another bundle on the same posters (``load_rows``: the evaluated rows with the given
    extractors' features; ``store``: their FeatureStore): its overall metrics and the
    paired bootstrap intervals of (this model - that one)."""
    from postergenre.ensemble.bundle import load_bundle

    second = load_bundle(other)
    if list(second.genres) != list(bundle.genres):
        raise DataError(
            f"model {other} predicts other genres than the model evaluated",
            hint="compare models trained on the same genre vocabulary",
        )
    second.check_store(store)
    rows = data
    if list(second.extractor_names) != list(bundle.extractor_names):
        rows = load_rows(second.extractor_names)
        if list(rows.poster_ids) != list(data.poster_ids):
            raise DataError(
                f"model {other} reads features that not every evaluated poster has",
                hint="extract the store with both models' extractors",
            )
    notes: list[str] = []
    S2, P2 = _scored(second, rows, W, notes)
    for note in notes:
        say(f"compared model: {note}")
    return {
        "model": str(second.path) if second.path else str(other),
        "overall": evaluate(data.Y, S2, P2, bundle.genres, W).overall,
        "difference": bootstrap_difference(
            data.Y, first, (S2, P2), W, n_boot=n_boot, level=level, seed=0
        ),
        "resamples": n_boot,
        "level": level,
    }


def shortcut_audit(
    logits: np.ndarray,
    Y: np.ndarray,
    groups: Sequence[str],
    n_folds: int = 5,
    seed: int = 0,
    min_per_group: int = 5,
) -> dict[str, Any] | None:
    """How well a model's outputs tell which collection a poster came from, among posters
    with the same true genres (0.5: not at all; lower is better).

    Posters are grouped by their exact true genre set; only sets that occur in at least
    two collections (``min_per_group`` posters each) take part. Within each set the
    outputs (``logits`` (n, G)) are centred, so what the genres explain is gone; a
    cross-validated logistic regression then predicts the collection from what is left.
    Returns the ROC AUC (one collection against the rest, averaged over collections,
    weighted by size), the number of posters and genre sets used; None when too few.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    Yb = np.asarray(Y) > 0
    keys = ["".join("1" if v else "0" for v in row) for row in Yb]
    garr = np.asarray(groups, dtype=object)
    keep = np.zeros(len(keys), dtype=bool)
    used_sets = 0
    for key in sorted(set(keys)):
        rows = np.array([k == key for k in keys])
        counts: dict[str, int] = {}
        for g in garr[rows]:
            counts[g] = counts.get(g, 0) + 1
        if sum(1 for c in counts.values() if c >= min_per_group) >= 2:
            keep |= rows
            used_sets += 1
    if keep.sum() < 4 * n_folds or len(set(garr[keep])) < 2:
        return None
    Z = np.asarray(logits, dtype=np.float64)[keep].copy()
    k_keys = [k for k, m in zip(keys, keep, strict=True) if m]
    for key in set(k_keys):
        rows = np.array([k == key for k in k_keys])
        Z[rows] -= Z[rows].mean(0)
    g_kept = garr[keep]
    aucs, sizes = [], []
    for coll in sorted(set(g_kept)):
        y = (g_kept == coll).astype(int)
        if y.sum() < n_folds or (1 - y).sum() < n_folds:
            continue
        score = np.zeros(len(y))
        skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        for tr, te in skf.split(Z, y):
            lr = LogisticRegression(C=1.0, max_iter=2000)
            lr.fit(Z[tr], y[tr])
            score[te] = lr.decision_function(Z[te])
        aucs.append(float(roc_auc_score(y, score)))
        sizes.append(int(y.sum()))
        if len(set(g_kept)) == 2:
            break  # with two collections, one AUC says it all
    if not aucs:
        return None
    return {
        "auc": float(np.average(aucs, weights=sizes)),
        "posters": int(keep.sum()),
        "genre_sets": used_sets,
        "collections": sorted(set(g_kept)),
        "note": "ROC AUC of predicting the collection from the model's log-odds, centred "
        "within each true genre set (0.5: no collection signal; lower is better)",
    }


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
    threshold_objective: str = DEFAULT_THRESHOLD_OBJECTIVE,
    log: Log | None = None,
    group_column: str | None = "source",
    label_weights: bool = True,
    prior: str | None = None,
    external_store: str | os.PathLike[str] | None = None,
    external_labels: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] | None = None,
    unweighted_compare: bool = False,
    extra_rows: Sequence[Callable[..., Any]] = (),
    bootstrap: int = 300,
) -> Any:
    """Load the store's labelled train/eval rows and run :func:`run_benchmark`.

    With ``label_weights`` (and a group column in the labels) every learner trains with the
    collection label weights and the eval metrics count them; ``external_store`` +
    ``external_labels``: posters of other collections scored by every row; ``model``: score
    this bundle as the stack instead of fitting one (it must have been trained on the same
    training rows); ``bootstrap``: resamples for the paired intervals of the stack against
    every other row (0: none).
    """
    from postergenre.ensemble.benchmark import run_benchmark
    from postergenre.ensemble.data import load_labelled

    say = log or (lambda _m: None)
    if resolve_split_column(labels, split_column) is None:
        raise DataError(
            f"{labels}: no {split_column!r} column; the benchmark needs a train and an eval split",
            hint="pass --split-column",
        )
    bundle = None
    genres = None
    if model is not None:
        from postergenre.ensemble.bundle import load_bundle

        bundle = load_bundle(model)
        genres = bundle.genres
    group_col = resolve_group_column(labels, group_column)
    data = load_labelled(
        store,
        labels,
        split_column=split_column,
        splits=[train_split, eval_split],
        vocabulary_split=train_split,
        min_count=min_count,
        genres=genres,
        extractors=bundle.extractor_names if bundle is not None else None,
        group_column=group_col,
    )
    for line in data.report.lines():
        say(line)
    Xt, Yt, _ = data.subset(train_split)
    Xe, Ye, _ = data.subset(eval_split)
    if bundle is not None:
        bundle.check_features(data.feature_names)
    W_train = W_eval = reference = None
    if label_weights:
        pr = read_prior(prior) if prior else default_prior()
        lw = make_label_weights(Yt, data.groups_of(train_split), data.genres, pr)
        W_train, W_eval = lw.W, lw.weights_for(Ye, data.groups_of(eval_split))
        reference = pr.vector(data.genres)
        for line in lw.lines():
            say(line)
    external = None
    if external_store is not None and external_labels is not None:
        ext = load_labelled(
            external_store,
            external_labels,
            split_column=None,
            genres=data.genres,
            extractors=bundle.extractor_names if bundle is not None else None,
        )
        if ext.feature_names != data.feature_names:
            raise DataError(
                f"{external_store} holds other features than {store}",
                hint="extract the external posters with the same extractors",
            )
        external = (ext.X, ext.Y)
        say(f"external posters: {len(ext.Y)} ({external_labels})")
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
        W_train=W_train,
        W_eval=W_eval,
        reference_prior=reference,
        external=external,
        stack_model=bundle.model if bundle is not None else None,
        unweighted_compare=unweighted_compare,
        extra_rows=extra_rows,
        bootstrap=bootstrap,
    )
    result.eval_split = eval_split
    result.settings["external"] = str(external_labels) if external is not None else None
    result.settings["join"] = data.report.to_dict()
    result.settings["store"] = str(store)
    result.settings["labels"] = str(labels)
    return result
