"""The quality benchmark: the stack and every seed baseline, same store, same split.

Used by ``postergenre benchmark`` and ``benchmarks/quality.py``. Every learned row is fit
on the training rows and scored on the evaluation rows. Threshold-dependent metrics (F1,
Hamming) use the same decision rule for every learned row: per-genre thresholds
cross-fitted on the evaluation rows (each row's thresholds tuned on the other folds
only, so no row is judged by thresholds tuned on itself), at least one genre per poster.
The constant predictors decide by their fixed rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from postergenre.ensemble.metrics import (
    METRIC_TITLES,
    Metrics,
    constant_scores,
    crossfit_decisions,
    decide,
    evaluate,
    f1_scores,
)

#: (message) -> None
Log = Callable[[str], None]


@dataclass
class BenchmarkRow:
    name: str
    kind: str
    metrics: Metrics
    fit_seconds: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "fit_seconds": self.fit_seconds,
            "note": self.note,
            **self.metrics.to_dict(),
        }


@dataclass
class BenchmarkResult:
    rows: list[BenchmarkRow]
    n_train: int
    n_eval: int
    genres: list[str]
    eval_split: str | None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_train": self.n_train,
            "n_eval": self.n_eval,
            "eval_split": self.eval_split,
            "genres": self.genres,
            "settings": self.settings,
            "rows": [r.to_dict() for r in self.rows],
        }

    def best_other(self, key: str, exclude: str = "stack") -> BenchmarkRow:
        others = [r for r in self.rows if not r.name.startswith(exclude)]
        lower_better = key == "hamming_loss"
        return sorted(
            others,
            key=lambda r: r.metrics.overall[key] if not lower_better else -r.metrics.overall[key],
        )[-1]


TABLE_TITLES = {**METRIC_TITLES, "macro_f1_genre_thresholds": "macro F1*"}


def table_lines(result: BenchmarkResult, keys: Sequence[str] = tuple(TABLE_TITLES)) -> list[str]:
    """The result as a fixed-width text table (macro F1*: under per-genre F1 thresholds)."""
    name_w = max(len(r.name) for r in result.rows) + 2
    head = (
        "method".ljust(name_w) + "".join(f"{TABLE_TITLES[k]:>12}" for k in keys) + f"{'fit s':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in result.rows:
        cells = "".join(f"{r.metrics.overall[k]:>12.4f}" for k in keys)
        fit = f"{r.fit_seconds:>9.1f}" if r.fit_seconds is not None else f"{'-':>9}"
        lines.append(r.name.ljust(name_w) + cells + fit)
    return lines


def run_benchmark(
    X_train: np.ndarray,
    Y_train: np.ndarray,
    X_eval: np.ndarray,
    Y_eval: np.ndarray,
    feature_names: Sequence[str],
    genres: Sequence[str],
    *,
    stacker_params: Mapping[str, Any] | None = None,
    baselines: Sequence[str] | None = None,
    balance_compare: bool = False,
    seed: int = 0,
    threshold_folds: int = 5,
    threshold_objective: str = "micro",
    log: Log | None = None,
) -> BenchmarkResult:
    """Fit and score every row of the benchmark table. ``baselines`` picks a subset of
    :data:`BASELINES` (default all)."""
    from postergenre.ensemble.baselines import BASELINES
    from postergenre.ensemble.stacker import GenreStacker

    say = log or (lambda _m: None)
    genres = list(genres)
    rows: list[BenchmarkRow] = []

    def learned(
        name: str, kind: str, scores: np.ndarray, fit_s: float | None, note: str = ""
    ) -> None:
        P = crossfit_decisions(
            Y_eval, scores, n_folds=threshold_folds, seed=seed, objective=threshold_objective
        )
        metrics = evaluate(Y_eval, scores, P, genres)
        # Macro F1 is what per-genre F1 thresholds are for: report it under those too.
        Pg = crossfit_decisions(Y_eval, scores, n_folds=threshold_folds, seed=seed)
        metrics.overall["macro_f1_genre_thresholds"] = f1_scores(Y_eval, Pg)["macro_f1"]
        rows.append(BenchmarkRow(name, kind, metrics, fit_s, note))
        m = rows[-1].metrics.overall
        say(
            f"{name}: macro AP {m['macro_ap']:.4f}, micro F1 {m['micro_f1']:.4f}, "
            f"top-1 {m['top1_hit']:.4f}"
        )

    prevalence = np.asarray(Y_train, dtype=np.float64).mean(0)
    for name, (S, P) in constant_scores(prevalence, len(Y_eval)).items():
        metrics = evaluate(Y_eval, S, P, genres)
        metrics.overall["macro_f1_genre_thresholds"] = metrics.overall["macro_f1"]
        rows.append(BenchmarkRow(name, "constant", metrics, None))

    wanted = list(baselines) if baselines is not None else list(BASELINES)
    for key in wanted:
        cls = BASELINES[key]
        model = cls(seed=seed) if key == "rakel" else cls()  # type: ignore[call-arg]
        say(f"fitting {model.name} ...")
        t0 = time.perf_counter()
        model.fit(X_train, Y_train, feature_names)
        fit_s = time.perf_counter() - t0
        learned(model.name, "baseline", model.scores(X_eval), fit_s)

    params = dict(stacker_params or {})
    params.setdefault("random_state", seed)

    def fit_stack(extra: Mapping[str, Any], label: str) -> tuple[Any, float]:
        say(f"fitting {label} ...")
        t0 = time.perf_counter()
        model = GenreStacker(
            feature_names=list(feature_names), genres=genres, **{**params, **extra}
        )
        model.fit(
            X_train, Y_train, progress=lambda stage, d, t: say(f"  {label}: {stage} ({d}/{t})")
        )
        return model, time.perf_counter() - t0

    stack, stack_s = fit_stack({}, "stack")
    margins = stack.base_margins(X_eval)
    for b, name in enumerate(stack.base_names_):
        what = {"xgb": "XGBoost on cues", "mlp": "MLP on CNN"}.get(name, name)
        learned(
            f"level-0 {what}",
            "level-0",
            1.0 / (1.0 + np.exp(-margins[:, b])),
            None,
            "fitted inside the stack",
        )
    proba = stack.predict_proba(X_eval)
    learned("stack", "stack", proba, stack_s)
    own = decide(proba, stack.thresholds_, int(stack.min_genres))
    rows.append(
        BenchmarkRow(
            "stack (OOF-train thresholds)",
            "stack",
            evaluate(Y_eval, proba, own, genres),
            None,
            "the model's own thresholds, tuned out-of-fold on the training rows",
        )
    )
    if balance_compare:
        balanced, bal_s = fit_stack({"balance": True}, "stack (balanced)")
        learned(
            "stack (balanced)",
            "stack",
            balanced.predict_proba(X_eval),
            bal_s,
            f"cap {balanced.balance_cap}/genre, "
            f"rare genres oversampled <= {balanced.balance_max_repeat}x",
        )
    return BenchmarkResult(
        rows=rows,
        n_train=len(Y_train),
        n_eval=len(Y_eval),
        genres=genres,
        eval_split=None,
        settings={
            "stacker": {
                k: v for k, v in stack.get_params().items() if k not in ("feature_names", "genres")
            },
            "threshold_rule": f"per-genre thresholds maximising {threshold_objective} F1, "
            f"cross-fitted on the evaluation rows ({threshold_folds} folds), >= 1 genre per "
            "poster; macro F1*: the same with thresholds maximising each genre's F1",
            "seed": seed,
        },
    )
