"""Label shift between collections: weights, masking, the reference prior, --prior."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from postergenre.ensemble.label_shift import (
    GenrePrior,
    WeightRule,
    adapt_to_prior,
    collection_weights,
    default_prior,
    read_prior,
    table_weights,
)
from postergenre.ensemble.metrics import average_precision, evaluate, tune_thresholds

GENRES = ["A", "B", "C"]


def planted_shortcut(n: int = 1200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Two collections with very different genre mixes; feature 0 says which collection a
    poster is from and nothing else; features 1-3 carry each genre (noisily)."""
    rng = np.random.default_rng(seed)
    coll = rng.random(n) < 0.5
    rates = np.where(coll[:, None], [0.6, 0.1, 0.3], [0.1, 0.6, 0.3])
    Y = (rng.random((n, 3)) < rates).astype(np.uint8)
    Y[Y.sum(1) == 0, 2] = 1
    signal = Y + rng.normal(0, 1.2, (n, 3))
    X = np.column_stack([coll + rng.normal(0, 0.05, n), signal]).astype(np.float32)
    groups = ["one" if c else "two" for c in coll]
    return X, Y, groups


def collection_gap(model: Any, X: np.ndarray, Y: np.ndarray, groups: list[str]) -> float:
    """Largest difference, over genres, of the mean probability between the collections
    among posters with the same true label for that genre."""
    P = model.predict_proba(X)
    g = np.array(groups) == "one"
    gaps = []
    for j in range(Y.shape[1]):
        for label in (0, 1):
            rows = Y[:, j] == label
            a, b = P[rows & g, j], P[rows & ~g, j]
            if len(a) > 20 and len(b) > 20:
                gaps.append(abs(a.mean() - b.mean()))
    return float(max(gaps))


FAST_XGB = {"n_folds": 3, "xgb_rounds": 60, "xgb_max_depth": 2, "xgb_colsample": 1.0, "n_jobs": 1}


def test_weights_remove_a_planted_collection_shortcut() -> None:
    from postergenre.ensemble.stacker import GenreStacker

    X, Y, groups = planted_shortcut()
    prior = GenrePrior({"A": 0.3, "B": 0.3, "C": 0.3}, source="test")
    lw = collection_weights(Y, groups, GENRES, prior, WeightRule(min_ratio=0.0))
    names = ["collection", "a", "b", "c"]
    plain = GenreStacker(feature_names=names, genres=GENRES, bases=("xgb",), **FAST_XGB)
    plain.fit(X, Y)
    fair = GenreStacker(feature_names=names, genres=GENRES, bases=("xgb",), **FAST_XGB)
    fair.fit(X, Y, sample_weight=lw.W, reference_prior=prior.vector(GENRES))
    Xt, Yt, gt = planted_shortcut(seed=1)
    gap_plain = collection_gap(plain, Xt, Yt, gt)
    gap_fair = collection_gap(fair, Xt, Yt, gt)
    # Without weights the collection feature moves A and B by tens of points.
    assert gap_plain > 0.15
    assert gap_fair < 0.06
    assert gap_fair < gap_plain / 3


def test_collection_weights_equalise_each_collection_to_the_prior() -> None:
    _, Y, groups = planted_shortcut()
    prior = GenrePrior({"A": 0.2, "B": 0.25, "C": 0.3}, source="test")
    lw = collection_weights(Y, groups, GENRES, prior, WeightRule(min_ratio=0.0))
    for coll in ("one", "two"):
        rows = np.array(groups) == coll
        share = (lw.W[rows] * Y[rows]).sum(0) / lw.W[rows].sum(0)
        np.testing.assert_allclose(share, [0.2, 0.25, 0.3], atol=1e-9)
        np.testing.assert_allclose(lw.W[rows].mean(0), 1.0, atol=1e-9)


def test_a_collection_that_did_not_sample_a_genre_leaves_it_unlabelled() -> None:
    Y = np.zeros((100, 3), dtype=np.uint8)
    Y[:50, 0] = 1  # collection "x" has A half the time
    Y[50:, 1] = 1  # collection "y" never has A
    Y[::7, 2] = 1
    groups = ["x"] * 50 + ["y"] * 50
    prior = GenrePrior({"A": 0.2, "B": 0.2, "C": 0.1})
    lw = collection_weights(Y, groups, GENRES, prior, WeightRule(min_ratio=0.25))
    assert (lw.W[50:, 0] == 0).all()
    assert (lw.W[:50, 0] > 0).all()
    assert lw.masked() == {"x": ["B"], "y": ["A"]}
    assert any("unlabelled" in line for line in lw.lines())
    assert "unlabelled" in lw.markdown_table()
    # The table re-applied to the same rows gives the same weights.
    np.testing.assert_allclose(table_weights(lw.table, GENRES, Y, groups), lw.W)


def _random_masked(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 300
    X = rng.normal(size=(n, 4)).astype(np.float32)
    Y = (rng.random((n, 3)) < 0.4).astype(np.uint8)
    Y[:, 0] = (X[:, 0] > 0).astype(np.uint8)
    W = np.ones((n, 3))
    W[: n // 2, 1] = 0.0  # masked cells
    Y2 = Y.copy()
    Y2[: n // 2, 1] = 1 - Y2[: n // 2, 1]  # flipping a masked label must change nothing
    return X, Y, Y2, W


@pytest.mark.parametrize("base", ["xgb", "mlp", "knn"])
def test_masked_labels_have_no_effect_on_a_base(base: str) -> None:
    from postergenre.ensemble.bases import base_class

    X, Y, Y2, W = _random_masked()
    params = {
        "xgb_rounds": 20, "mlp_epochs": 3, "mlp_hidden": 8, "mlp_bags": 1,
        "knn_neighbours": 20, "knn_components": 4,
    }  # fmt: skip
    cls = base_class(base)
    m1 = cls(params, seed=0).fit(X, Y, W)
    m2 = cls(params, seed=0).fit(X, Y2, W)
    np.testing.assert_allclose(m1.margin(X), m2.margin(X), atol=1e-6)
    # ...while without the mask the flipped labels do change the model.
    m3 = cls(params, seed=0).fit(X, Y2, np.ones_like(W))
    assert np.abs(m1.margin(X)[:, 1] - m3.margin(X)[:, 1]).max() > 1e-3


def test_masked_labels_have_no_effect_on_the_stack_meta_and_thresholds() -> None:
    from postergenre.ensemble.stacker import GenreStacker

    X, Y, Y2, W = _random_masked()
    kw: dict[str, Any] = {"bases": ("xgb",), "n_folds": 3, "xgb_rounds": 10, "n_jobs": 1}
    names = [f"x{j}" for j in range(4)]
    a = GenreStacker(feature_names=names, genres=GENRES, **kw).fit(X, Y, sample_weight=W)
    b = GenreStacker(feature_names=names, genres=GENRES, **kw).fit(X, Y2, sample_weight=W)
    np.testing.assert_allclose(a.meta_coef_, b.meta_coef_, atol=1e-6)
    np.testing.assert_allclose(a.meta_intercept_, b.meta_intercept_, atol=1e-6)
    np.testing.assert_allclose(a.thresholds_, b.thresholds_, atol=1e-9)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-6)


def test_zero_weight_rows_are_absent_from_metrics_and_threshold_tuning() -> None:
    rng = np.random.default_rng(4)
    Y = (rng.random((200, 3)) < 0.3).astype(np.uint8)
    S = np.clip(Y * 0.3 + rng.random((200, 3)) * 0.7, 0, 1)
    W = np.ones((200, 3))
    W[:80, 2] = 0.0
    ap_w = average_precision(Y[:, 2], S[:, 2], W[:, 2])
    assert ap_w == pytest.approx(average_precision(Y[80:, 2], S[80:, 2]))
    t_w = tune_thresholds(Y, S, "genre", W)
    t_cut = tune_thresholds(Y[80:], S[80:], "genre")
    assert t_w[2] == pytest.approx(t_cut[2])
    m = evaluate(Y, S, S > 0.5, GENRES, W)
    m_cut = evaluate(Y[80:, 2:], S[80:, 2:], S[80:, 2:] > 0.5, GENRES[2:])
    assert m.per_genre[2]["f1"] == pytest.approx(m_cut.per_genre[0]["f1"])
    assert m.per_genre[2]["ap"] == pytest.approx(m_cut.per_genre[0]["ap"])


def test_weighted_ap_matches_scikit_learn() -> None:
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(5)
    y = rng.random(300) < 0.3
    s = rng.random(300)
    w = rng.random(300) * 3
    assert average_precision(y, s, w) == pytest.approx(
        average_precision_score(y, s, sample_weight=w)
    )


def test_prior_adaptation_is_the_label_shift_formula() -> None:
    p = np.array([[0.2, 0.5, 0.9]])
    src = np.array([0.1, 0.5, 0.3])
    tgt = np.array([0.4, 0.5, 0.05])
    out = adapt_to_prior(p, src, tgt)
    odds = p / (1 - p) * (tgt / (1 - tgt)) / (src / (1 - src))
    np.testing.assert_allclose(out, odds / (1 + odds), rtol=1e-9)
    np.testing.assert_allclose(adapt_to_prior(p, src, src), p, rtol=1e-9)


def test_adapted_model_moves_probabilities_and_thresholds_by_the_formula(fitted: Any) -> None:
    from postergenre.ensemble.synthetic import make_multilabel

    X, _, _ = make_multilabel(40, seed=9)
    G = len(fitted.genres_)
    target = np.linspace(0.05, 0.6, G)
    adapted = fitted.adapted(target)
    src = fitted.reference_prior
    np.testing.assert_allclose(
        adapted.predict_proba(X), adapt_to_prior(fitted.predict_proba(X), src, target), atol=1e-9
    )
    finite = fitted.thresholds_ <= 1.0
    np.testing.assert_allclose(
        adapted.thresholds_[finite],
        adapt_to_prior(fitted.thresholds_[finite], src[finite], target[finite]),
        atol=1e-9,
    )
    # Explanations stay exact: the shift lives in the bias.
    e = adapted.explain(X[:3])
    np.testing.assert_allclose(np.asarray(e.logit), adapted.decision_function(X[:3]), atol=1e-6)
    np.testing.assert_allclose(adapted.reference_prior, target)
    # The original is untouched.
    np.testing.assert_allclose(fitted.reference_prior, src)


def test_weights_and_prior_round_trip_through_the_bundle(tmp_path: Path) -> None:
    from postergenre.ensemble.bundle import load_bundle, save_bundle
    from postergenre.ensemble.stacker import GenreStacker

    X, Y, groups = planted_shortcut(300)
    prior = GenrePrior({"A": 0.3, "B": 0.2, "C": 0.25}, source="test prior")
    lw = collection_weights(Y, groups, GENRES, prior)
    names = ["collection", "a", "b", "c"]
    model = GenreStacker(feature_names=names, genres=GENRES, bases=("xgb",), **FAST_XGB)
    model.fit(X, Y, sample_weight=lw.W, reference_prior=prior.vector(GENRES))
    model.label_weights_ = lw.to_dict()
    path = save_bundle(model, tmp_path / "m")
    b = load_bundle(path)
    np.testing.assert_allclose(b.model.reference_prior, [0.3, 0.2, 0.25])
    assert b.model.label_weights_ == json.loads(json.dumps(lw.to_dict()))
    np.testing.assert_allclose(
        table_weights(b.model.label_weights_["table"], GENRES, Y, groups), lw.W
    )
    np.testing.assert_allclose(b.model.predict_proba(X), model.predict_proba(X), atol=1e-9)


def test_read_prior_json_and_csv(tmp_path: Path) -> None:
    j = tmp_path / "p.json"
    j.write_text(json.dumps({"A": 0.4, "B": 0.1}))
    assert dict(read_prior(j).shares) == {"A": 0.4, "B": 0.1}
    c = tmp_path / "p.csv"
    c.write_text("genre,share\nA,0.4\nB,0.1\n")
    assert dict(read_prior(c).shares) == {"A": 0.4, "B": 0.1}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"A": 1.5}))
    from postergenre.errors import ConfigError

    with pytest.raises(ConfigError, match="share of 'A'"):
        read_prior(bad)
    with pytest.raises(ConfigError, match="no share for C"):
        read_prior(j).vector(["A", "B", "C"])


def test_the_shipped_prior_is_imdb_wide() -> None:
    prior = default_prior()
    assert prior.n == 36918
    # Drama is about half of all films; Documentary far below the laxmimerit share (15%).
    assert 0.45 < prior.shares["Drama"] < 0.55
    assert 0.05 < prior.shares["Documentary"] < 0.12


@pytest.mark.parametrize("key", ["mlknn", "naive_bayes", "rakel", "logistic"])
def test_baselines_ignore_masked_labels(key: str) -> None:
    from postergenre.ensemble.baselines import BASELINES

    rng = np.random.default_rng(7)
    n = 260
    names = [f"cnn.e{j}" for j in range(6)] + [f"gist.g{j}" for j in range(3)] + ["color.c0"]
    X = rng.normal(size=(n, len(names)))
    Y = (rng.random((n, 3)) < 0.35).astype(np.uint8)
    Y[:, 0] = (X[:, 0] + X[:, 6] > 0).astype(np.uint8)
    W = np.ones((n, 3))
    W[: n // 2, 1] = 0.0
    Y2 = Y.copy()
    Y2[: n // 2, 1] = 1 - Y2[: n // 2, 1]

    def fitted(labels: np.ndarray, weights: np.ndarray | None) -> Any:
        cls = BASELINES[key]
        model = cls(n_components=5) if key in ("mlknn", "rakel") else cls()  # type: ignore[call-arg]
        if key == "mlknn":
            model.k = 10
        return model.fit(X, labels, names, sample_weight=weights)

    a = fitted(Y, W).scores(X)
    b = fitted(Y2, W).scores(X)
    np.testing.assert_allclose(a, b, atol=1e-9)
    c = fitted(Y2, None).scores(X)
    assert np.abs(a[:, 1] - c[:, 1]).max() > 1e-6


def test_benchmark_scores_every_row_on_external_posters() -> None:
    from postergenre.ensemble.benchmark import run_benchmark, table_lines

    X, Y, groups = planted_shortcut(400)
    names = ["cnn.collection", "gist.a", "color.b", "gist.c"]
    prior = GenrePrior({"A": 0.3, "B": 0.3, "C": 0.3})
    lw = collection_weights(Y, groups, GENRES, prior, WeightRule(min_ratio=0.0))
    Xe, Ye, ge = planted_shortcut(200, seed=2)
    Xx, Yx, _ = planted_shortcut(150, seed=3)
    result = run_benchmark(
        X, Y, Xe, Ye, names, GENRES,
        stacker_params={"n_folds": 2, "xgb_rounds": 10, "mlp_epochs": 2, "mlp_hidden": 8,
                        "mlp_bags": 1, "n_jobs": 1},
        baselines=["logistic", "naive_bayes"],
        W_train=lw.W,
        W_eval=lw.weights_for(Ye, ge),
        reference_prior=prior.vector(GENRES),
        external=(Xx, Yx),
        unweighted_compare=True,
    )  # fmt: skip
    by = {r.name: r for r in result.rows}
    assert "stack (labels as they are)" in by
    for r in result.rows:
        assert r.external is not None and r.external.n_rows == 150, r.name
    # The learned rows beat the constant prior on the external posters too.
    assert by["stack"].external.overall["macro_ap"] > by["prior"].external.overall["macro_ap"]
    assert any("ext" in line for line in table_lines(result)[:1])


def test_benchmark_scores_a_loaded_bundle_as_the_stack(tmp_path: Path) -> None:
    from postergenre.ensemble.benchmark import run_benchmark
    from postergenre.ensemble.bundle import load_bundle, save_bundle
    from postergenre.ensemble.stacker import GenreStacker

    X, Y, _ = planted_shortcut(300)
    names = ["collection", "a", "b", "c"]
    model = GenreStacker(feature_names=names, genres=GENRES, bases=("xgb",), **FAST_XGB)
    model.fit(X, Y)
    loaded = load_bundle(save_bundle(model, tmp_path / "m")).model
    Xe, Ye, _ = planted_shortcut(120, seed=5)
    result = run_benchmark(X, Y, Xe, Ye, names, GENRES, baselines=[], stack_model=loaded)
    by = {r.name: r for r in result.rows}
    assert by["stack"].fit_seconds is None  # scored, not refitted
    np.testing.assert_allclose(
        by["stack"].metrics.overall["macro_ap"],
        evaluate(Ye, model.predict_proba(Xe), model.predict(Xe), GENRES).overall["macro_ap"],
    )
    assert result.settings["stacker"]["xgb_rounds"] == FAST_XGB["xgb_rounds"]
