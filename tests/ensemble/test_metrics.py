"""Metrics agree with scikit-learn; thresholds are F1-optimal and never tuned on the row
they decide."""

from __future__ import annotations

import numpy as np
import pytest

from postergenre.ensemble import metrics as M


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    Y = (rng.random((300, 6)) < [0.5, 0.3, 0.2, 0.1, 0.05, 0.4]).astype(int)
    S = np.clip(Y * 0.3 + rng.random(Y.shape) * 0.7, 0, 1)
    S[:20] = np.round(S[:20], 1)  # ties
    return Y, S


def test_metrics_match_sklearn(scored: tuple[np.ndarray, np.ndarray]) -> None:
    from sklearn import metrics as sk

    Y, S = scored
    P = S > 0.5
    f1 = M.f1_scores(Y, P)
    for avg in ("micro", "macro", "weighted", "samples"):
        assert f1[f"{avg}_f1"] == pytest.approx(sk.f1_score(Y, P, average=avg, zero_division=0))
    for g in range(Y.shape[1]):
        assert M.average_precision(Y[:, g], S[:, g]) == pytest.approx(
            sk.average_precision_score(Y[:, g], S[:, g])
        )
    assert M.hamming_loss(Y, P) == pytest.approx(sk.hamming_loss(Y, P))


def test_top1_and_precision_at_3() -> None:
    Y = np.array([[1, 0, 0, 1], [0, 1, 0, 0]])
    S = np.array([[0.9, 0.8, 0.1, 0.2], [0.9, 0.1, 0.2, 0.3]])
    assert M.top1_hit_rate(Y, S) == 0.5
    # row 0: top-3 = {0, 1, 3} -> 2 hits; row 1: {0, 3, 2} -> 0 hits
    assert M.precision_at_k(Y, S, 3) == pytest.approx((2 / 3 + 0) / 2)


def test_average_precision_without_positives_is_nan_and_left_out_of_macro() -> None:
    Y = np.array([[1, 0], [0, 0], [1, 0]])
    S = np.array([[0.9, 0.1], [0.2, 0.5], [0.8, 0.3]])
    m = M.evaluate(Y, S, S > 0.5, ["a", "b"])
    assert np.isnan(m.per_genre[1]["ap"])
    assert m.overall["macro_ap"] == 1.0
    assert m.overall["genres_without_positives"] == 1
    assert m.to_dict()["per_genre"][1]["ap"] is None  # strict JSON


def test_tuned_thresholds_maximise_f1(scored: tuple[np.ndarray, np.ndarray]) -> None:
    Y, S = scored
    thr = M.tune_thresholds(Y, S)
    for g in range(Y.shape[1]):
        best = M.f1_scores(Y[:, [g]], S[:, [g]] >= thr[g])["micro_f1"]
        for t in np.unique(S[:, g])[::5]:
            assert M.f1_scores(Y[:, [g]], S[:, [g]] >= t)["micro_f1"] <= best + 1e-12


def test_genre_never_positive_is_never_predicted() -> None:
    Y = np.array([[1, 0], [0, 0], [1, 0]])
    S = np.array([[0.9, 1.0], [0.2, 1.0], [0.8, 1.0]])
    thr = M.tune_thresholds(Y, S)
    assert thr[1] > 1.0
    assert not M.decide(S, thr, min_genres=0)[:, 1].any()
    # Not even as the at-least-one fallback, though it is every row's most probable genre:
    # evaluate, predict and analyze all decide through this one function.
    P = M.decide(S, thr, min_genres=1)
    assert not P[:, 1].any() and P[:, 0].all()


def test_decide_gives_every_row_at_least_one_genre() -> None:
    S = np.array([[0.1, 0.3, 0.2], [0.9, 0.8, 0.1]])
    P = M.decide(S, np.array([0.5, 0.5, 0.5]), min_genres=1)
    assert P.tolist() == [[False, True, False], [True, True, False]]


def test_crossfit_decision_of_a_row_does_not_depend_on_its_own_label(
    scored: tuple[np.ndarray, np.ndarray],
) -> None:
    """Thresholds deciding a row are tuned without that row: flipping its label changes
    nothing about its own decision."""
    Y, S = scored
    P = M.crossfit_decisions(Y, S, n_folds=5, seed=0)
    folds = M.fold_assignment(Y, 5, 0)
    for i in (0, 7, 123, 250):
        Y2 = Y.copy()
        Y2[i] = 1 - Y2[i]
        # Fold membership is stratified on labels: keep it fixed by checking the same fold.
        if not np.array_equal(M.fold_assignment(Y2, 5, 0), folds):
            continue
        P2 = M.crossfit_decisions(Y2, S, n_folds=5, seed=0)
        assert np.array_equal(P2[i], P[i])


def test_fold_assignment_is_balanced_and_deterministic() -> None:
    rng = np.random.default_rng(1)
    Y = (rng.random((100, 3)) < [0.5, 0.2, 0.06]).astype(int)
    f = M.fold_assignment(Y, 3, seed=4)
    assert np.array_equal(f, M.fold_assignment(Y, 3, seed=4))
    assert set(np.bincount(f)) <= {33, 34}
    rare = Y[:, 2] == 1
    assert np.bincount(f[rare], minlength=3).max() - np.bincount(f[rare], minlength=3).min() <= 1


def test_constant_predictors() -> None:
    prev = np.array([0.6, 0.3, 0.45])
    consts = M.constant_scores(prev, 4)
    S, P = consts["prior"]
    assert S.shape == (4, 3) and P[:, 0].all() and not P[:, 1:].any()
    _, P2 = consts["top-2"]
    assert P2[0].tolist() == [True, False, True]


def test_micro_objective_raises_micro_f1_on_the_tuning_rows(
    scored: tuple[np.ndarray, np.ndarray],
) -> None:
    Y, S = scored
    per_genre = M.tune_thresholds(Y, S, "genre")
    micro = M.tune_thresholds(Y, S, "micro")
    f_genre = M.f1_scores(Y, S >= per_genre)
    f_micro = M.f1_scores(Y, S >= micro)
    assert f_micro["micro_f1"] >= f_genre["micro_f1"]
    assert f_genre["macro_f1"] >= f_micro["macro_f1"]
    # No single genre's threshold can be moved to raise micro F1 further.
    for g in range(Y.shape[1]):
        for t in np.unique(S[:, g])[::7]:
            trial = micro.copy()
            trial[g] = t
            assert M.f1_scores(Y, S >= trial)["micro_f1"] <= f_micro["micro_f1"] + 1e-12
    with pytest.raises(ValueError, match="objective"):
        M.tune_thresholds(Y, S, "macro")


def test_micro_all_keeps_every_genre_predictable_where_micro_drops_one() -> None:
    # Genre 2 is rare and weakly scored: predicting it at any cut lowers micro F1, so the
    # micro objective never predicts it; micro_all gives it its own best-F1 threshold and
    # leaves the other genres where micro put them.
    rng = np.random.default_rng(7)
    n = 600
    Y = np.zeros((n, 3), dtype=np.uint8)
    Y[:, 0] = rng.random(n) < 0.5
    Y[:, 1] = rng.random(n) < 0.4
    Y[:, 2] = rng.random(n) < 0.05
    S = np.clip(0.35 * Y + 0.65 * rng.random((n, 3)), 0, 1)
    S[:, 2] = np.clip(0.08 * Y[:, 2] + rng.random(n), 0, 1)  # hardly informative
    micro = M.tune_thresholds(Y, S, "micro")
    keep = M.tune_thresholds(Y, S, "micro_all")
    own = M.tune_thresholds(Y, S, "genre")
    assert micro[2] > 1.0  # micro F1 drops the genre
    assert keep[2] == own[2] <= 1.0
    np.testing.assert_array_equal(keep[:2], micro[:2])
    f_micro = M.f1_scores(Y, S >= micro)
    f_keep = M.f1_scores(Y, S >= keep)
    assert f_keep["micro_f1"] <= f_micro["micro_f1"]
    assert f_keep["macro_f1"] > f_micro["macro_f1"]


def _population(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three genres (one rare) whose scores rank positives above negatives only in part."""
    rng = np.random.default_rng(seed)
    Y = rng.random((n, 3)) < np.array([0.4, 0.15, 0.03])
    S = rng.normal(size=(n, 3)) + 1.2 * Y
    return Y, S


def test_bootstrap_interval_of_top1_matches_the_binomial_spread() -> None:
    Y, S = _population(600, seed=1)
    P = S > 0.5
    got = M.bootstrap_intervals(Y, S, P, n_boot=600, keys=("top1_hit",))["top1_hit"]
    p = M.top1_hit_rate(Y, S)
    se = (p * (1 - p) / len(Y)) ** 0.5
    assert abs(got["se"] - se) < 0.15 * se
    assert got["low"] < p < got["high"]
    assert abs((got["high"] - got["low"]) - 2 * 1.96 * se) < 0.25 * 2 * 1.96 * se


def test_bootstrap_intervals_of_macro_ap_cover_the_population_value() -> None:
    # The population's macro AP from a large sample; then small samples, each with its own
    # interval: the basic intervals must cover it about as often as they claim, although a
    # resample's repeated positives lift AP (the percentile interval's bias).
    Yp, Sp = _population(200_000, seed=2)
    truth = M.evaluate(Yp, Sp, Sp > 0, ["a", "b", "c"]).overall["macro_ap"]
    covered, biases = 0, []
    for k in range(30):
        Y, S = _population(400, seed=100 + k)
        got = M.bootstrap_intervals(Y, S, S > 0, n_boot=150, seed=k, keys=("macro_ap",))
        covered += got["macro_ap"]["low"] <= truth <= got["macro_ap"]["high"]
        biases.append(got["macro_ap"]["bias"])
    assert covered >= 25  # 30 x 0.95 = 28.5 expected
    assert np.mean(biases) > 0.002  # the resampling bias the basic interval corrects


def test_bootstrap_intervals_are_seeded_and_honour_label_weights() -> None:
    Y, S = _population(300, seed=3)
    P = S > 0.5
    a = M.bootstrap_intervals(Y, S, P, n_boot=50, seed=7)
    assert a == M.bootstrap_intervals(Y, S, P, n_boot=50, seed=7)
    assert set(a) == set(M.INTERVAL_KEYS)
    # Rows of weight 0 take no part in the per-genre metrics, resampled or not.
    W = np.ones(Y.shape)
    W[:100] = 0.0
    w = M.bootstrap_intervals(Y, S, P, W, n_boot=50, seed=7, keys=("macro_ap",))["macro_ap"]
    rest = M.bootstrap_intervals(Y[100:], S[100:], P[100:], n_boot=50, seed=7, keys=("macro_ap",))[
        "macro_ap"
    ]
    assert w != rest  # different resamples of different row counts ...
    assert abs(w["se"] - rest["se"]) < 0.5 * rest["se"]  # ... but the same spread
    assert w["high"] > M.evaluate(Y[100:], S[100:], P[100:], ["a", "b", "c"]).overall["macro_ap"]


def test_a_resample_by_counts_scores_as_the_drawn_rows_themselves() -> None:
    # The bootstrap weighs each row by how often it was drawn instead of copying rows;
    # every metric must equal the metric of the copied rows, ties and label weights
    # included (scores rounded so that many rows tie).
    rng = np.random.default_rng(8)
    Y, S = _population(250, seed=8)
    S = np.round(S, 1)
    P = S > 0.3
    W = rng.uniform(0.0, 2.0, Y.shape)
    W[rng.random(Y.shape) < 0.1] = 0.0
    names = ["a", "b", "c"]
    for weights in (None, W):
        scorer = M._Counted(Y, S, P, weights)
        for _ in range(5):
            idx = rng.integers(0, len(Y), len(Y))
            c = np.bincount(idx, minlength=len(Y)).astype(float)
            want = M.evaluate(
                Y[idx], S[idx], P[idx], names, None if weights is None else weights[idx]
            ).overall
            for key in M.METRIC_TITLES:
                assert scorer.value(key, c) == pytest.approx(want[key], abs=1e-12), key


def test_bootstrap_intervals_refuse_bad_settings() -> None:
    Y, S = _population(50, seed=4)
    with pytest.raises(ValueError, match="n_boot"):
        M.bootstrap_intervals(Y, S, S > 0, n_boot=1)
    with pytest.raises(ValueError, match="level"):
        M.bootstrap_intervals(Y, S, S > 0, level=1.0)
    with pytest.raises(ValueError, match="no interval"):
        M.bootstrap_intervals(Y, S, S > 0, n_boot=5, keys=("accuracy",))


def test_paired_difference_is_exact_zero_for_a_model_against_itself() -> None:
    Y, S = _population(300, seed=5)
    got = M.bootstrap_difference(Y, (S, S > 0), (S, S > 0), n_boot=40)
    for key in M.INTERVAL_KEYS:
        assert got[key] == {"difference": 0.0, "low": 0.0, "high": 0.0, "se": 0.0, "bias": 0.0}


def test_paired_difference_finds_a_better_model_that_separate_intervals_cannot() -> None:
    # Two models that share most of their errors: the better one adds a little signal.
    rng = np.random.default_rng(6)
    Y = rng.random((800, 3)) < np.array([0.4, 0.15, 0.05])
    common = rng.normal(size=Y.shape)
    worse = common + 1.0 * Y
    better = common + 1.15 * Y
    d = M.bootstrap_difference(Y, (better, better > 0.5), (worse, worse > 0.5), n_boot=300)
    a = M.bootstrap_intervals(Y, better, better > 0.5, n_boot=300)
    b = M.bootstrap_intervals(Y, worse, worse > 0.5, n_boot=300)
    ap = d["macro_ap"]
    assert ap["difference"] > 0 and ap["low"] > 0  # the paired interval excludes 0
    assert a["macro_ap"]["low"] < b["macro_ap"]["high"]  # the separate ones overlap
    assert ap["se"] < 0.5 * min(a["macro_ap"]["se"], b["macro_ap"]["se"])
    # Swapping the models mirrors the interval.
    rev = M.bootstrap_difference(Y, (worse, worse > 0.5), (better, better > 0.5), n_boot=300)
    assert rev["macro_ap"]["low"] == pytest.approx(-ap["high"])
    assert rev["macro_ap"]["high"] == pytest.approx(-ap["low"])
