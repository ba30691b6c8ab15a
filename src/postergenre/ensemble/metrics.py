"""Multi-label metrics, threshold tuning and decisions. numpy only.

Shapes: ``Y`` is (n, G) 0/1 true genres, ``S`` (n, G) scores (probabilities or any
monotone score), ``P`` (n, G) 0/1 decisions. Conventions follow scikit-learn where it
has one (average precision as the step-wise sum ``sum (R_k - R_{k-1}) P_k``, F1 of a
genre with no positives and no predictions = 0), and are tested against it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Thresholds are compared with ``>=``; a genre never seen positive gets this, so it is
#: never predicted from a probability (which is at most 1.0).
NEVER = 1.0 + 1e-9

#: Metric keys in display order, with short column titles.
METRIC_TITLES: dict[str, str] = {
    "macro_ap": "macro AP",
    "micro_f1": "micro F1",
    "macro_f1": "macro F1",
    "weighted_f1": "weighted F1",
    "samples_f1": "samples F1",
    "hamming_loss": "Hamming",
    "top1_hit": "top-1 hit",
    "precision_at_3": "P@3",
}


def _check(Y: np.ndarray, S: np.ndarray, what: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    Y = np.asarray(Y)
    S = np.asarray(S, dtype=np.float64)
    if Y.ndim != 2 or S.shape != Y.shape:
        raise ValueError(
            f"expected labels and {what} of the same (n, G) shape, got {Y.shape} and {S.shape}"
        )
    return (Y > 0), S


def average_precision(y: np.ndarray, s: np.ndarray, w: np.ndarray | None = None) -> float:
    """AP of one genre: (n,) 0/1 truth, (n,) scores, optional (n,) row weights (rows of
    weight 0 take no part; as scikit-learn's ``sample_weight``). NaN without a positive."""
    y = np.asarray(y) > 0
    s = np.asarray(s, dtype=np.float64)
    if w is not None:
        keep = np.asarray(w, dtype=np.float64) > 0
        y, s, w = y[keep], s[keep], np.asarray(w, dtype=np.float64)[keep]
    if not y.any():
        return math.nan
    return _ap_of_steps(*_pr_steps(y, s, w))


def _ap_of_steps(precision: np.ndarray, recall: np.ndarray) -> float:
    """AP as the step-wise sum ``sum (R_k - R_{k-1}) P_k``."""
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def _run_ends(s_sorted: np.ndarray) -> np.ndarray:
    """Last index of each run of equal scores (scores sorted): tied rows go in or out
    together."""
    return np.r_[np.nonzero(np.diff(s_sorted))[0], len(s_sorted) - 1]


def _pr_sorted(
    y_sorted: np.ndarray, w_sorted: np.ndarray, last: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at each run end of rows already sorted by score (row weights
    ``w_sorted``)."""
    tp = np.cumsum(y_sorted * w_sorted)[last].astype(np.float64)
    pred = np.cumsum(w_sorted)[last]
    total = float((y_sorted * w_sorted).sum())
    return tp / np.maximum(pred, 1e-300), tp / max(total, 1e-300)


def _pr_steps(
    y: np.ndarray, s: np.ndarray, w: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at each distinct score, highest score first (ties together)."""
    order = np.argsort(-s, kind="mergesort")
    ws = np.ones(len(s)) if w is None else np.asarray(w, dtype=np.float64)[order]
    return _pr_sorted(y[order], ws, _run_ends(s[order]))


def pr_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) of one genre at every distinct score, for plotting."""
    y = np.asarray(y) > 0
    if not y.any():
        return np.zeros(0), np.zeros(0)
    return _pr_steps(y, np.asarray(s, dtype=np.float64))


def _f1_counts(
    Y: np.ndarray, P: np.ndarray, W: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    Wf = np.ones(Y.shape) if W is None else np.asarray(W, dtype=np.float64)
    tp = ((Y & P) * Wf).sum(0).astype(np.float64)
    fp = ((~Y & P) * Wf).sum(0).astype(np.float64)
    fn = ((Y & ~P) * Wf).sum(0).astype(np.float64)
    return tp, fp, fn


def _safe_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(tp, dtype=np.float64), where=denom > 0)


def f1_scores(Y: np.ndarray, P: np.ndarray, weights: np.ndarray | None = None) -> dict[str, Any]:
    """Micro, macro, weighted and samples F1, and per-genre F1/precision/recall.

    ``weights`` (n, G): per-(row, genre) label weights for the per-genre counts (samples
    F1, a per-row figure, ignores them).
    """
    Yb, Pb = np.asarray(Y) > 0, np.asarray(P) > 0
    if Yb.shape != Pb.shape or Yb.ndim != 2:
        raise ValueError(
            f"expected labels and decisions of the same (n, G) shape, got {Yb.shape} and {Pb.shape}"
        )
    tp, fp, fn = _f1_counts(Yb, Pb, weights)
    per = _safe_f1(tp, fp, fn)
    support = tp + fn
    micro = float(_safe_f1(tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True))[0])
    weighted = float((per * support).sum() / support.sum()) if support.sum() > 0 else 0.0
    row_tp = (Yb & Pb).sum(1).astype(np.float64)
    row_den = Yb.sum(1) + Pb.sum(1)
    samples = np.divide(2 * row_tp, row_den, out=np.zeros_like(row_tp), where=row_den > 0)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
    return {
        "micro_f1": micro,
        "macro_f1": float(per.mean()) if per.size else 0.0,
        "weighted_f1": weighted,
        "samples_f1": float(samples.mean()) if samples.size else 0.0,
        "per_genre_f1": per,
        "per_genre_precision": precision,
        "per_genre_recall": recall,
    }


def hamming_loss(Y: np.ndarray, P: np.ndarray, weights: np.ndarray | None = None) -> float:
    Yb, Pb = np.asarray(Y) > 0, np.asarray(P) > 0
    if not Yb.size:
        return 0.0
    if weights is None:
        return float((Yb != Pb).mean())
    W = np.asarray(weights, dtype=np.float64)
    return float(((Yb != Pb) * W).sum() / max(W.sum(), 1e-300))


def top1_hit_rate(Y: np.ndarray, S: np.ndarray) -> float:
    """Share of rows whose highest-scoring genre is one of their true genres."""
    Yb, S = _check(Y, S)
    if not len(Yb):
        return math.nan
    top = np.argmax(S, axis=1)
    return float(Yb[np.arange(len(Yb)), top].mean())


def precision_at_k(Y: np.ndarray, S: np.ndarray, k: int = 3) -> float:
    """Mean share of true genres among each row's k highest-scoring genres."""
    Yb, S = _check(Y, S)
    if not len(Yb):
        return math.nan
    k = min(k, Yb.shape[1])
    top = np.argsort(-S, axis=1, kind="mergesort")[:, :k]
    return float(np.take_along_axis(Yb, top, axis=1).mean())


#: Threshold objectives: ``genre`` maximises each genre's own F1 (best for macro F1);
#: ``micro`` maximises micro F1 over all genres (coordinate ascent, one genre at a time);
#: ``micro_all`` does the same but leaves no genre with positives unpredictable: a genre
#: that micro F1 would never predict keeps its own best-F1 threshold instead.
THRESHOLD_OBJECTIVES = ("genre", "micro", "micro_all")
#: What ``train``, ``benchmark`` and GenreStacker tune for unless told otherwise.
DEFAULT_THRESHOLD_OBJECTIVE = "micro_all"


def _cuts(
    y: np.ndarray, s: np.ndarray, w: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate thresholds of one genre (highest first, then "never") with the (weighted)
    true and false positives each one gives."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    ws = np.ones(len(s)) if w is None else np.asarray(w, dtype=np.float64)[order]
    tp = np.cumsum(y[order] * ws)
    npred = np.cumsum(ws)
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], len(s_sorted) - 1]
    # Halfway between the lowest kept score and the next one below: the decisions on
    # these rows are exactly the counted ones, and new rows are not pushed by ties.
    below = np.r_[s_sorted[last[:-1] + 1], s_sorted[-1] - 1.0]
    thr = 0.5 * (s_sorted[last] + below)
    tps = tp[last].astype(np.float64)
    fps = npred[last] - tps
    return np.r_[thr, NEVER], np.r_[tps, 0.0], np.r_[fps, 0.0]


def tune_thresholds(
    Y: np.ndarray, S: np.ndarray, objective: str = "genre", weights: np.ndarray | None = None
) -> np.ndarray:
    """(G,) per-genre thresholds tuned on (Y, S) for ``objective`` (see
    :data:`THRESHOLD_OBJECTIVES`). ``weights`` (n, G): label weights (0: the row says
    nothing about that genre). A genre with no positive gets :data:`NEVER`."""
    Yb, S = _check(Y, S)
    if objective not in THRESHOLD_OBJECTIVES:
        raise ValueError(f"expected objective in {THRESHOLD_OBJECTIVES}, got {objective!r}")
    G = Yb.shape[1]
    out = np.full(G, NEVER)
    Wf = np.ones(Yb.shape) if weights is None else np.asarray(weights, dtype=np.float64)
    cands = [_cuts(Yb[:, g], S[:, g], Wf[:, g]) for g in range(G)]
    n_pos = (Yb * Wf).sum(0).astype(np.float64)
    choice = np.full(G, -1)
    for g, (_, tps, fps) in enumerate(cands):
        if n_pos[g] == 0:
            choice[g] = len(tps) - 1
            continue
        f1 = 2 * tps / (tps + fps + n_pos[g])
        choice[g] = int(np.argmax(f1))
    own = choice.copy()
    if objective in ("micro", "micro_all"):
        # Coordinate ascent on micro F1 = 2 TP / (2 TP + FP + FN), from the per-genre
        # optimum; each step can only raise it, so it stops after a few sweeps.
        tp_all = sum(cands[g][1][choice[g]] for g in range(G))
        fp_all = sum(cands[g][2][choice[g]] for g in range(G))
        pos_all = n_pos.sum()
        for _ in range(10):
            changed = False
            for g in range(G):
                _, tps, fps = cands[g]
                tp_o = tp_all - tps[choice[g]]
                fp_o = fp_all - fps[choice[g]]
                f1 = 2 * (tp_o + tps) / (tp_o + tps + fp_o + fps + pos_all)
                best = int(np.argmax(f1))
                if f1[best] > f1[choice[g]] + 1e-12:
                    choice[g] = best
                    tp_all, fp_all = tp_o + tps[best], fp_o + fps[best]
                    changed = True
            if not changed:
                break
    if objective == "micro_all":
        for g, (_, tps, _) in enumerate(cands):
            # The last candidate is "never"; a genre whose own best F1 is positive keeps it.
            if n_pos[g] > 0 and choice[g] == len(tps) - 1 and tps[own[g]] > 0:
                choice[g] = own[g]
    for g in range(G):
        if n_pos[g] > 0 or objective in ("micro", "micro_all"):
            out[g] = cands[g][0][choice[g]]
    return out


def decide(S: np.ndarray, thresholds: np.ndarray, min_genres: int = 1) -> np.ndarray:
    """(n, G) bool decisions: ``S >= thresholds``; rows with fewer than ``min_genres``
    decided genres get their highest-scoring ones (every movie has a genre).

    A genre whose threshold is above 1 (tuning found no usable one) is never decided, not
    even to make up ``min_genres``: the fallback takes the best of the other genres.
    """
    S = np.asarray(S, dtype=np.float64)
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), S.shape[1:])
    possible = thr <= 1.0
    P = S >= thr[None, :]
    if min_genres > 0 and S.shape[1]:
        short = P.sum(1) < min_genres
        if short.any():
            k = min(min_genres, int(possible.sum()))
            ranked = np.where(possible[None, :], S[short], -np.inf)
            top = np.argsort(-ranked, axis=1, kind="mergesort")[:, :k]
            rows = np.nonzero(short)[0]
            P[rows[:, None], top] = True
    return P & possible[None, :]


def fold_assignment(Y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """(n,) fold of each row, stratified on each row's rarest genre (deterministic)."""
    Yb = np.asarray(Y) > 0
    n = len(Yb)
    if n_folds < 2 or n_folds > n:
        raise ValueError(f"expected 2 <= n_folds <= n rows ({n}), got {n_folds}")
    counts = Yb.sum(0)
    rank = np.where(Yb, counts[None, :], np.iinfo(np.int64).max)
    key = np.where(Yb.any(1), np.argmin(rank, axis=1), -1) if Yb.shape[1] else np.zeros(n, int)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    order = perm[np.argsort(key[perm], kind="mergesort")]
    folds = np.empty(n, dtype=np.int64)
    folds[order] = np.arange(n) % n_folds
    return folds


def crossfit_decisions(
    Y: np.ndarray,
    S: np.ndarray,
    n_folds: int = 5,
    seed: int = 0,
    min_genres: int = 1,
    objective: str = "genre",
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Decisions where each row's thresholds were tuned on the *other* rows only.

    For honest threshold-dependent metrics on rows that have no separate tuning set.
    """
    Yb, S = _check(Y, S)
    folds = (
        fold_assignment(Yb, min(n_folds, max(len(Yb), 2)), seed)
        if len(Yb) >= 2
        else np.zeros(len(Yb), int)
    )
    P = np.zeros(Yb.shape, dtype=bool)
    for k in np.unique(folds):
        te = folds == k
        tr = ~te
        Wtr = None if weights is None else np.asarray(weights)[tr]
        thr = (
            tune_thresholds(Yb[tr], S[tr], objective, Wtr)
            if tr.any()
            else np.full(Yb.shape[1], 0.5)
        )
        P[te] = decide(S[te], thr, min_genres)
    return P


@dataclass
class Metrics:
    """Overall and per-genre metrics of one predictor on one set of rows."""

    overall: dict[str, float]
    per_genre: list[dict[str, Any]] = field(default_factory=list)
    n_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_rows": self.n_rows,
            "overall": _clean(self.overall),
            "per_genre": _clean(self.per_genre),
        }


def _clean(obj: Any) -> Any:
    """NaN -> None and numpy scalars -> floats, so the result is strict JSON."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return None if not math.isfinite(float(obj)) else float(obj)
    return obj


def evaluate(
    Y: np.ndarray,
    S: np.ndarray,
    P: np.ndarray,
    genres: Sequence[str],
    weights: np.ndarray | None = None,
) -> Metrics:
    """Every metric of DESIGN.md for scores ``S`` and decisions ``P`` against ``Y``.

    ``weights`` (n, G): label weights (see :mod:`postergenre.ensemble.label_shift`) for the
    per-genre metrics (AP, F1, Hamming); the per-poster ones (top-1, P@3, samples F1)
    count every poster once.
    """
    Yb, S = _check(Y, S)
    Pb = np.asarray(P) > 0
    if len(genres) != Yb.shape[1]:
        raise ValueError(f"expected {Yb.shape[1]} genre names, got {len(genres)}")
    Wf = None if weights is None else np.asarray(weights, dtype=np.float64)
    if Wf is not None and Wf.shape != Yb.shape:
        raise ValueError(f"expected weights of shape {Yb.shape}, got {Wf.shape}")
    f1 = f1_scores(Yb, Pb, Wf)
    ap = np.array(
        [
            average_precision(Yb[:, g], S[:, g], None if Wf is None else Wf[:, g])
            for g in range(Yb.shape[1])
        ]
    )
    valid = np.isfinite(ap)
    overall = {
        "macro_ap": float(ap[valid].mean()) if valid.any() else math.nan,
        "micro_f1": f1["micro_f1"],
        "macro_f1": f1["macro_f1"],
        "weighted_f1": f1["weighted_f1"],
        "samples_f1": f1["samples_f1"],
        "hamming_loss": hamming_loss(Yb, Pb, Wf),
        "top1_hit": top1_hit_rate(Yb, S),
        "precision_at_3": precision_at_k(Yb, S, 3),
        "genres_without_positives": int((~valid).sum()),
    }
    top_share = _top_share(S)
    true_share = Yb.mean(0) if len(Yb) else np.zeros(Yb.shape[1])
    ratio = np.divide(top_share, true_share, out=np.zeros_like(top_share), where=true_share > 0)
    # How far the most over-chosen genre is the top genre beyond its true share (1: at par).
    overall["top1_overshare"] = float(ratio.max()) if ratio.size else math.nan
    per_genre = [
        {
            "genre": genres[g],
            "support": int(Yb[:, g].sum()),
            "prevalence": float(Yb[:, g].mean()) if len(Yb) else math.nan,
            "ap": float(ap[g]),
            "f1": float(f1["per_genre_f1"][g]),
            "precision": float(f1["per_genre_precision"][g]),
            "recall": float(f1["per_genre_recall"][g]),
            "predicted": int(Pb[:, g].sum()),
            "top_share": float(top_share[g]),
        }
        for g in range(Yb.shape[1])
    ]
    return Metrics(overall=overall, per_genre=per_genre, n_rows=len(Yb))


#: The metrics :func:`bootstrap_intervals` gives intervals for unless told otherwise.
INTERVAL_KEYS = ("macro_ap", "micro_f1", "macro_f1", "top1_hit", "precision_at_3")


class _Counted:
    """One predictor's overall metrics on its rows taken ``c`` times each (float (n,)):
    a bootstrap resample is ``c = bincount(drawn rows)``, and every metric equals the
    metric of the drawn rows themselves (a repeated row ties with itself, so AP's tie rule
    takes the copies together, as counts do). Sort orders and per-row figures are made
    once, so a resample costs cumulative sums, not sorts."""

    def __init__(self, Y: np.ndarray, S: np.ndarray, P: np.ndarray, W: np.ndarray | None):
        self.Y, self.P, self.W = Y, P, W
        n, G = Y.shape
        self.order = np.argsort(-S, axis=0, kind="mergesort")  # (n, G)
        self.y_sorted = np.take_along_axis(Y, self.order, axis=0)
        s_sorted = np.take_along_axis(S, self.order, axis=0)
        self.last = [_run_ends(s_sorted[:, g]) for g in range(G)]
        self.hit = Y[np.arange(n), np.argmax(S, axis=1)].astype(np.float64) if n else np.zeros(0)
        k = min(3, G)
        top = np.argsort(-S, axis=1, kind="mergesort")[:, :k]
        self.at3 = np.take_along_axis(Y, top, axis=1).mean(1) if n else np.zeros(0)
        row_tp = (Y & P).sum(1).astype(np.float64)
        row_den = Y.sum(1) + P.sum(1)
        self.row_f1 = np.divide(2 * row_tp, row_den, out=np.zeros_like(row_tp), where=row_den > 0)

    def _weights(self, c: np.ndarray) -> np.ndarray:
        if self.W is None:
            return np.repeat(c[:, None], self.Y.shape[1], axis=1)
        return c[:, None] * self.W

    def value(self, key: str, c: np.ndarray) -> float:
        total = float(c.sum())
        if key == "macro_ap":
            Wc = self._weights(c)
            aps = []
            for g in range(self.Y.shape[1]):
                w = Wc[self.order[:, g], g]
                if not (self.y_sorted[:, g] * w).any():
                    continue  # no positive drawn: AP undefined, left out as evaluate does
                aps.append(_ap_of_steps(*_pr_sorted(self.y_sorted[:, g], w, self.last[g])))
            return float(np.mean(aps)) if aps else math.nan
        if key in ("micro_f1", "macro_f1", "weighted_f1"):
            return float(f1_scores(self.Y, self.P, self._weights(c))[key])
        if key == "samples_f1":
            return float(c @ self.row_f1 / total) if total > 0 else 0.0
        if key == "hamming_loss":
            return hamming_loss(self.Y, self.P, self._weights(c))
        if key == "top1_hit":
            return float(c @ self.hit / total) if total > 0 else math.nan
        if key == "precision_at_3":
            return float(c @ self.at3 / total) if total > 0 else math.nan
        raise ValueError(f"no interval for metric {key!r}; choose from {', '.join(METRIC_TITLES)}")


def bootstrap_intervals(
    Y: np.ndarray,
    S: np.ndarray,
    P: np.ndarray,
    weights: np.ndarray | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    keys: Sequence[str] = INTERVAL_KEYS,
) -> dict[str, dict[str, float]]:
    """Bootstrap intervals of overall metrics over the posters.

    Posters (rows, with their label weights) are drawn with replacement ``n_boot`` times and
    each metric recomputed with the same scores and decisions (thresholds are not re-tuned),
    so an interval says how much the figure owes to which posters happened to be scored.

    The intervals are *basic* (reverse-percentile) ones, ``2 m - q_high .. 2 m - q_low``
    for the metric ``m`` on all posters and the resamples' quantiles ``q``, not the plain
    percentiles: a resample repeats posters, and a repeated positive of a rare genre sits
    at its own score again, which lifts average precision (about +0.006 of macro AP on
    2,083 posters with genres of 20 to 700 positives); the basic interval takes that bias
    out, the percentile one would shift by it. Returns ``{key: {"low", "high", "se",
    "bias"}}`` (``se``: the resamples' standard deviation; ``bias``: their mean minus
    ``m``); a metric left undefined in a resample (say, a genre without positives) is
    computed over what is defined, as :func:`evaluate` does.
    """
    full, draws = _bootstrap_draws(Y, [(S, P)], weights, n_boot, level, seed, keys)
    return _basic_intervals(full[0], draws[0], level, keys)


def bootstrap_difference(
    Y: np.ndarray,
    first: tuple[np.ndarray, np.ndarray],
    second: tuple[np.ndarray, np.ndarray],
    weights: np.ndarray | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    keys: Sequence[str] = INTERVAL_KEYS,
) -> dict[str, dict[str, float]]:
    """Paired bootstrap intervals of ``first`` minus ``second`` (each ``(S, P)``) on the same
    posters: both are scored on every resample, so what the posters share (an easy or a hard
    draw) cancels and the interval is far narrower than two separate ones. Basic intervals,
    as :func:`bootstrap_intervals`; ``{key: {"difference", "low", "high", "se", "bias"}}``.
    An interval that excludes 0 says the two differ on posters like these.
    """
    full, draws = _bootstrap_draws(Y, [first, second], weights, n_boot, level, seed, keys)
    out = _basic_intervals(full[0] - full[1], draws[0] - draws[1], level, keys)
    for j, key in enumerate(keys):
        out[key] = {"difference": float(full[0][j] - full[1][j]), **out[key]}
    return out


def _bootstrap_draws(
    Y: np.ndarray,
    scored: Sequence[tuple[np.ndarray, np.ndarray]],
    weights: np.ndarray | None,
    n_boot: int,
    level: float,
    seed: int,
    keys: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Each metric on all rows, (m, K), and on ``n_boot`` shared resamples, (m, n_boot, K),
    for the m ``(S, P)`` pairs in ``scored``."""
    Yb = _check(Y, scored[0][0])[0]
    pairs = []
    for S, P in scored:
        Sf = _check(Yb, S)[1]
        Pb = np.asarray(P) > 0
        if Pb.shape != Yb.shape:
            raise ValueError(f"expected decisions of shape {Yb.shape}, got {Pb.shape}")
        pairs.append((Sf, Pb))
    Wf = None if weights is None else np.asarray(weights, dtype=np.float64)
    if Wf is not None and Wf.shape != Yb.shape:
        raise ValueError(f"expected weights of shape {Yb.shape}, got {Wf.shape}")
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    scorers = [_Counted(Yb, S, P, Wf) for S, P in pairs]
    ones = np.ones(len(Yb))
    # An unknown key is refused here, before any resampling.
    full = np.array([[sc.value(k, ones) for k in keys] for sc in scorers])
    draws = np.full((len(pairs), n_boot, len(keys)), math.nan)
    if not len(Yb):
        return full.reshape(len(pairs), len(keys)), draws
    rng = np.random.default_rng(seed)
    for b in range(n_boot):
        counts = np.bincount(rng.integers(0, len(Yb), len(Yb)), minlength=len(Yb))
        c = counts.astype(np.float64)
        for i, sc in enumerate(scorers):
            for j, key in enumerate(keys):
                draws[i, b, j] = sc.value(key, c)
    return full, draws


def _basic_intervals(
    full: np.ndarray, draws: np.ndarray, level: float, keys: Sequence[str]
) -> dict[str, dict[str, float]]:
    tail = (1.0 - level) / 2.0 * 100.0
    out: dict[str, dict[str, float]] = {}
    for j, key in enumerate(keys):
        col = draws[:, j][np.isfinite(draws[:, j])]
        if len(col) < 2 or not math.isfinite(full[j]):
            out[key] = {"low": math.nan, "high": math.nan, "se": math.nan, "bias": math.nan}
            continue
        q_low, q_high = np.percentile(col, [tail, 100.0 - tail])
        out[key] = {
            "low": float(2.0 * full[j] - q_high),
            "high": float(2.0 * full[j] - q_low),
            "se": float(col.std(ddof=1)),
            "bias": float(col.mean() - full[j]),
        }
    return out


def _top_share(S: np.ndarray) -> np.ndarray:
    """(G,) share of rows whose highest-scoring genre is each genre."""
    if not len(S):
        return np.zeros(S.shape[1])
    return np.bincount(np.argmax(S, axis=1), minlength=S.shape[1]) / len(S)


def constant_scores(prevalence: np.ndarray, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The constant predictors: name -> (scores (n, G), decisions (n, G)).

    ``prior`` scores every genre by its training prevalence and decides the genres more
    common than not (at least the most common one); ``top-2`` always decides the two most
    common genres.
    """
    prevalence = np.asarray(prevalence, dtype=np.float64)
    S = np.broadcast_to(prevalence, (n, len(prevalence))).copy()
    prior_P = decide(S, np.full(len(prevalence), 0.5), min_genres=1)
    top2 = np.zeros((n, len(prevalence)), dtype=bool)
    top2[:, np.argsort(-prevalence, kind="mergesort")[:2]] = True
    return {"prior": (S, prior_P), "top-2": (S.copy(), top2)}
