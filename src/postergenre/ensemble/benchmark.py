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
    DEFAULT_THRESHOLD_OBJECTIVE,
    METRIC_TITLES,
    Metrics,
    _clean,
    bootstrap_difference,
    constant_scores,
    crossfit_decisions,
    decide,
    evaluate,
    f1_scores,
    tune_thresholds,
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
    #: The same predictor on posters of other collections (thresholds tuned on the
    #: evaluation rows, never on these), when the benchmark was given some.
    external: Metrics | None = None
    #: The stack minus this row on the same posters, with paired bootstrap intervals
    #: (``{"val": {metric: {...}}, "external": ...}``); None for the stack itself or
    #: without intervals.
    vs_stack: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "fit_seconds": self.fit_seconds,
            "note": self.note,
            **self.metrics.to_dict(),
            "external": None if self.external is None else self.external.to_dict(),
            "vs_stack": _clean(self.vs_stack),
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
    ext_keys = ("macro_ap", "micro_f1", "top1_hit", "top1_overshare")
    has_ext = any(r.external is not None for r in result.rows)
    if has_ext:
        head += "".join(f"{'ext ' + METRIC_TITLES.get(k, 'over-share'):>16}" for k in ext_keys)
    lines = [head, "-" * len(head)]
    for r in result.rows:
        cells = "".join(f"{r.metrics.overall.get(k, float('nan')):>12.4f}" for k in keys)
        fit = f"{r.fit_seconds:>9.1f}" if r.fit_seconds is not None else f"{'-':>9}"
        ext = ""
        if has_ext:
            ext = "".join(
                f"{r.external.overall[k]:>16.4f}" if r.external is not None else f"{'-':>16}"
                for k in ext_keys
            )
        lines.append(r.name.ljust(name_w) + cells + fit + ext)
    compared = [r for r in result.rows if r.vs_stack]
    if compared:
        lines += ["", "the stack minus each row, macro AP, paired 95% bootstrap interval:"]
        for r in compared:
            parts = [
                f"{where} {d['macro_ap']['difference']:+.4f} "
                f"[{d['macro_ap']['low']:+.4f}, {d['macro_ap']['high']:+.4f}]"
                for where, d in (r.vs_stack or {}).items()
            ]
            lines.append(r.name.ljust(name_w) + "   ".join(parts))
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
    threshold_objective: str = DEFAULT_THRESHOLD_OBJECTIVE,
    log: Log | None = None,
    W_train: np.ndarray | None = None,
    W_eval: np.ndarray | None = None,
    reference_prior: np.ndarray | None = None,
    external: tuple[np.ndarray, np.ndarray] | None = None,
    stack_model: Any = None,
    unweighted_compare: bool = False,
    extra_rows: Sequence[Callable[..., Any]] = (),
    bootstrap: int = 300,
) -> BenchmarkResult:
    """Fit and score every row of the benchmark table. ``baselines`` picks a subset of
    :data:`BASELINES` (default all).

    ``W_train``/``W_eval`` (n, G): label weights (see label_shift) that every learner is
    trained with and every per-genre metric counts; ``reference_prior`` (G,): the genre
    shares the constant predictors use. ``external`` (X, Y): posters of other
    collections, scored by every row with thresholds tuned on the evaluation rows.
    ``stack_model``: an already fitted stack (e.g. the bundle being shipped) to score
    instead of fitting one. ``unweighted_compare``: also fit the stack on the labels as
    they are. ``extra_rows``: callables ``(X_train, Y_train, W_train, X, feature_names,
    genres) -> (name, kind, scores_fn, fit_seconds, note)`` adding more rows.
    ``bootstrap`` > 0: every other row gets the paired bootstrap interval of the stack
    minus it (that many resamples of the posters, on val and on the external posters).
    """
    from postergenre.ensemble.baselines import BASELINES
    from postergenre.ensemble.stacker import GenreStacker

    say = log or (lambda _m: None)
    genres = list(genres)
    rows: list[BenchmarkRow] = []
    # Each row's (scores, decisions) on the evaluation and the external rows, for the
    # paired comparisons with the stack.
    scored: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}

    def on_external(
        name: str, scores_fn: Callable[[np.ndarray], np.ndarray] | None, S_eval: np.ndarray
    ) -> Metrics | None:
        if external is None or scores_fn is None:
            return None
        Xe, Ye = external
        thr = tune_thresholds(Y_eval, S_eval, threshold_objective, W_eval)
        Se = scores_fn(Xe)
        Pe = decide(Se, thr)
        scored.setdefault(name, {})["external"] = (Se, Pe)
        return evaluate(Ye, Se, Pe, genres)

    def learned(
        name: str,
        kind: str,
        scores: np.ndarray,
        fit_s: float | None,
        note: str = "",
        scores_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        P = crossfit_decisions(
            Y_eval,
            scores,
            n_folds=threshold_folds,
            seed=seed,
            objective=threshold_objective,
            weights=W_eval,
        )
        metrics = evaluate(Y_eval, scores, P, genres, W_eval)
        scored.setdefault(name, {})["val"] = (scores, P)
        # Macro F1 is what per-genre F1 thresholds are for: report it under those too.
        Pg = crossfit_decisions(Y_eval, scores, n_folds=threshold_folds, seed=seed, weights=W_eval)
        metrics.overall["macro_f1_genre_thresholds"] = f1_scores(Y_eval, Pg, W_eval)["macro_f1"]
        ext = on_external(name, scores_fn, scores)
        rows.append(BenchmarkRow(name, kind, metrics, fit_s, note, ext))
        m = rows[-1].metrics.overall
        say(
            f"{name}: macro AP {m['macro_ap']:.4f}, micro F1 {m['micro_f1']:.4f}, "
            f"top-1 {m['top1_hit']:.4f}"
            + (
                f"; external: macro AP {ext.overall['macro_ap']:.4f}, micro F1 "
                f"{ext.overall['micro_f1']:.4f}, top-1 {ext.overall['top1_hit']:.4f}"
                if ext is not None
                else ""
            )
        )

    if reference_prior is not None:
        prevalence = np.asarray(reference_prior, dtype=np.float64)
    else:
        prevalence = np.asarray(Y_train, dtype=np.float64).mean(0)
    for name, (S, P) in constant_scores(prevalence, len(Y_eval)).items():
        metrics = evaluate(Y_eval, S, P, genres, W_eval)
        metrics.overall["macro_f1_genre_thresholds"] = metrics.overall["macro_f1"]
        scored[name] = {"val": (S, P)}
        ext = None
        if external is not None:
            Se, Pe = constant_scores(prevalence, len(external[1]))[name]
            scored[name]["external"] = (Se, Pe)
            ext = evaluate(external[1], Se, Pe, genres)
        rows.append(BenchmarkRow(name, "constant", metrics, None, external=ext))

    wanted = list(baselines) if baselines is not None else list(BASELINES)
    for key in wanted:
        cls = BASELINES[key]
        model = cls(seed=seed) if key == "rakel" else cls()  # type: ignore[call-arg]
        say(f"fitting {model.name} ...")
        t0 = time.perf_counter()
        model.fit(X_train, Y_train, feature_names, sample_weight=W_train)
        fit_s = time.perf_counter() - t0
        learned(model.name, "baseline", model.scores(X_eval), fit_s, scores_fn=model.scores)

    for make_row in extra_rows:
        made = make_row(X_train, Y_train, W_train, X_eval, feature_names, genres)
        if made is None:
            continue
        name, kind, scores_fn, fit_s, note = made
        learned(name, kind, scores_fn(X_eval), fit_s, note, scores_fn=scores_fn)

    params = dict(stacker_params or {})
    params.setdefault("random_state", seed)

    def fit_stack(extra: Mapping[str, Any], label: str, weighted: bool = True) -> tuple[Any, float]:
        say(f"fitting {label} ...")
        t0 = time.perf_counter()
        model = GenreStacker(
            feature_names=list(feature_names), genres=genres, **{**params, **extra}
        )
        model.fit(
            X_train,
            Y_train,
            progress=lambda stage, d, t: say(f"  {label}: {stage} ({d}/{t})"),
            sample_weight=W_train if weighted else None,
            reference_prior=reference_prior if weighted else None,
        )
        return model, time.perf_counter() - t0

    if stack_model is not None:
        stack, stack_s = stack_model, None
        say("scoring the given stack (not refitted)")
    else:
        stack, stack_s = fit_stack({}, "stack")

    def base_fn(b: int) -> Callable[[np.ndarray], np.ndarray]:
        return lambda X: 1.0 / (1.0 + np.exp(-stack.base_margins(X)[:, b]))

    for b, name in enumerate(stack.base_names_):
        what = {"xgb": "XGBoost on cues", "mlp": "MLP on CNN", "knn": "kNN on CNN"}.get(name, name)
        learned(
            f"level-0 {what}",
            "level-0",
            base_fn(b)(X_eval),
            None,
            "fitted inside the stack",
            scores_fn=base_fn(b),
        )
    proba = stack.predict_proba(X_eval)
    learned("stack", "stack", proba, stack_s, scores_fn=stack.predict_proba)
    own = decide(proba, stack.thresholds_, int(stack.min_genres))
    own_ext = None
    if external is not None:
        Se = stack.predict_proba(external[0])
        own_ext = evaluate(
            external[1], Se, decide(Se, stack.thresholds_, int(stack.min_genres)), genres
        )
    rows.append(
        BenchmarkRow(
            "stack (own thresholds)",
            "stack",
            evaluate(Y_eval, proba, own, genres, W_eval),
            None,
            "the model's own thresholds ("
            + (
                "tuned on these val rows"
                if stack_model is not None
                else "out-of-fold on training rows"
            )
            + ")",
            own_ext,
        )
    )
    if unweighted_compare and W_train is not None:
        plain, plain_s = fit_stack({}, "stack (labels as they are)", weighted=False)
        learned(
            "stack (labels as they are)",
            "stack",
            plain.predict_proba(X_eval),
            plain_s,
            "no label weights: each collection's labels taken as they are",
            scores_fn=plain.predict_proba,
        )
    if balance_compare:
        balanced, bal_s = fit_stack({"balance": True}, "stack (balanced)")
        learned(
            "stack (balanced)",
            "stack",
            balanced.predict_proba(X_eval),
            bal_s,
            f"the original study's balancing: cap {balanced.balance_cap}/genre, "
            f"rare genres oversampled <= {balanced.balance_max_repeat}x",
            scores_fn=balanced.predict_proba,
        )
    if bootstrap > 0:
        say(f"paired bootstrap of the stack against every other row ({bootstrap} resamples)")
        _compare_with_stack(rows, scored, Y_eval, W_eval, external, bootstrap, seed)
    return BenchmarkResult(
        rows=rows,
        n_train=len(Y_train),
        n_eval=len(Y_eval),
        genres=genres,
        eval_split=None,
        settings={
            "stacker": {
                k: v
                for k, v in (
                    stack.get_params() if hasattr(stack, "get_params") else stack._state_params()
                ).items()
                if k not in ("feature_names", "genres")
            },
            "threshold_rule": f"per-genre thresholds maximising {threshold_objective} F1, "
            f"cross-fitted on the evaluation rows ({threshold_folds} folds), >= 1 genre per "
            "poster; macro F1*: the same with thresholds maximising each genre's F1; on "
            "external posters: thresholds tuned on all evaluation rows",
            "label_weights": W_train is not None,
            "seed": seed,
        },
    )


#: The metrics the benchmark's paired comparisons with the stack report.
COMPARE_KEYS = ("macro_ap", "micro_f1", "top1_hit")


def _compare_with_stack(
    rows: list[BenchmarkRow],
    scored: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    Y_eval: np.ndarray,
    W_eval: np.ndarray | None,
    external: tuple[np.ndarray, np.ndarray] | None,
    n_boot: int,
    seed: int,
) -> None:
    """Set each row's ``vs_stack``: the stack minus it, paired bootstrap (basic) intervals
    on the evaluation rows (label-weighted as the table) and on the external posters."""
    stack = scored.get("stack")
    if stack is None:
        return
    sets: dict[str, tuple[np.ndarray, np.ndarray | None]] = {"val": (Y_eval, W_eval)}
    if external is not None:
        sets["external"] = (external[1], None)
    for row in rows:
        mine = scored.get(row.name)
        if row.name == "stack" or mine is None:
            continue
        out: dict[str, Any] = {}
        for where, (Y, W) in sets.items():
            if where in mine and where in stack:
                out[where] = bootstrap_difference(
                    Y, stack[where], mine[where], W, n_boot=n_boot, seed=seed, keys=COMPARE_KEYS
                )
        row.vs_stack = out or None
