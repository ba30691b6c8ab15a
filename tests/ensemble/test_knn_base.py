"""The kNN base: the label-weighted genre rates of a poster's nearest training posters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from postergenre.ensemble.bases import KNNBase, _scaled
from postergenre.ensemble.stacker import GenreStacker
from postergenre.errors import ConfigError, ModelError

SMALL = {"knn_neighbours": 3, "knn_components": 2, "knn_temperature": 0.05, "knn_smoothing": 1.0}


def _points() -> tuple[np.ndarray, np.ndarray]:
    # Two tight clusters in two dimensions; genre 0 is the right-hand cluster.
    rng = np.random.default_rng(0)
    left = rng.normal([-5.0, 0.0], 0.1, size=(10, 2))
    right = rng.normal([5.0, 0.0], 0.1, size=(10, 2))
    X = np.vstack([left, right])
    Y = np.zeros((20, 2))
    Y[10:, 0] = 1
    Y[::2, 1] = 1
    return X, Y


def test_margin_is_the_weighted_neighbour_rate_by_the_formula() -> None:
    X, Y = _points()
    m = KNNBase(SMALL, seed=0).fit(X, Y, None)
    q = np.array([[4.0, 0.3]])
    # By hand: codes, cosine similarities, the 3 nearest, their weights, the rates.
    z = m._codes(_scaled(q, m.mean_, m.scale_)).astype(np.float32)
    sim = (z @ m.codes_.astype(np.float32).T)[0]
    nb = np.argsort(-sim)[:3]
    w = np.exp((sim[nb] - sim[nb].max()) / 0.05)
    prior = Y.mean(0)
    p = ((w[:, None] * Y[nb]).sum(0) + 1.0 * prior) / (w.sum() + 1.0)
    np.testing.assert_allclose(m.margin(q)[0], np.log(p / (1 - p)), rtol=1e-5)
    # The neighbours are the right-hand cluster: genre 0 is likely there, unlikely on the left.
    assert m.margin(q)[0, 0] > 1.0
    assert m.margin(np.array([[-4.0, 0.3]]))[0, 0] < -1.0


def test_a_neighbour_with_an_unknown_label_says_nothing_about_that_genre() -> None:
    X, Y = _points()
    W = np.ones_like(Y)
    W[10:, 0] = 0.0  # the right-hand cluster's genre 0 is unknown
    m = KNNBase(SMALL, seed=0).fit(X, Y, W)
    right = np.array([[5.0, 0.0]])
    # Only the smoothing speaks for genre 0 there: the margin is the prior's (all known
    # labels are 0, so the prior is clipped low).
    np.testing.assert_allclose(m.margin(right)[0, 0], np.log(m.prior_[0] / (1 - m.prior_[0])))
    # ...and genre 1 (known) is unaffected by the mask.
    full = KNNBase(SMALL, seed=0).fit(X, Y, None)
    np.testing.assert_allclose(m.margin(right)[:, 1], full.margin(right)[:, 1], rtol=1e-6)


def test_the_typical_margin_is_measured_without_each_poster_itself() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 6))
    Y = (rng.random((400, 3)) < 0.3).astype(float)  # labels unrelated to the features
    m = KNNBase({"knn_neighbours": 20, "knn_components": 6}, seed=0).fit(X, Y, None)
    prior_margin = np.log(m.prior_ / (1 - m.prior_))
    # Each row's own label dominates its rate when it may be its own neighbour...
    own = m.margin(X)
    assert (own[Y > 0].mean() - own[Y == 0].mean()) > 0.5
    # ...the reference leaves it out, so on unrelated labels it sits near the prior, and
    # new posters' margins average near it too.
    new = m.margin(rng.normal(size=(400, 6))).mean(0)
    assert np.abs(m.reference_margin(3) - new).max() < 0.15
    assert np.abs(m.reference_margin(3) - prior_margin).max() < 0.15


def test_a_constant_column_is_ignored_and_a_poster_at_the_mean_gets_the_training_rate() -> None:
    X, Y = _points()
    # A third column that is constant but for float noise on the training rows.
    noise = np.random.default_rng(1).normal(0.0, 1e-9, size=(len(X), 1))
    m = KNNBase(SMALL, seed=0).fit(np.hstack([X, 3.0 + noise]), Y, None)
    plain = KNNBase(SMALL, seed=0).fit(X, Y, None)
    assert np.all(m.components_[:, 2] == 0)  # no axis reads the noise
    q = np.array([[4.0, 0.3, 3.0 + 1e-9], [-4.0, 0.3, 3.0 - 1e-9]])
    np.testing.assert_allclose(m.margin(q), plain.margin(q[:, :2]), rtol=1e-6)
    # A poster at the training mean has no direction: the training rate, not that of k
    # arbitrary rows, and a flat margin (zero gradient), whatever its noise.
    at_mean = np.hstack([m.mean_[:2], [3.0 + 2e-9]])[None, :]
    expected = np.log(m.prior_ / (1 - m.prior_))
    np.testing.assert_allclose(m.margin(at_mean)[0], expected)
    assert np.all(m.gradient(at_mean) == 0)
    # Both rows of a batch keep their own answer when one of them is at the mean.
    both = m.margin(np.vstack([at_mean, q[:1]]))
    np.testing.assert_allclose(both[0], expected)
    np.testing.assert_allclose(both[1], m.margin(q[:1])[0], rtol=1e-6)


def test_gradient_is_the_margins_finite_difference() -> None:
    # Well spread rows in 12 dimensions, labels with unknown cells; 30 neighbours of 400.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 12)) * rng.uniform(0.5, 3.0, size=12)
    Y = (rng.random((400, 3)) < 0.3).astype(float)
    W = np.ones(Y.shape)
    W[:60, 1] = 0.0
    m = KNNBase({"knn_neighbours": 30, "knn_components": 6}, seed=0).fit(X, Y, W)
    for q in rng.normal(size=(4, 12)):
        grad = m.gradient(q[None])[0]  # (G, c)
        assert grad.shape == (3, 12) and np.abs(grad).max() > 0.05
        eps = 1e-3  # the margin is computed in float32
        fd = np.stack(
            [(m.margin((q + eps * e)[None]) - m.margin((q - eps * e)[None]))[0] / (2 * eps)
             for e in np.eye(12)],
            axis=1,
        )  # fmt: skip
        np.testing.assert_allclose(grad, fd, atol=2e-3 * np.abs(grad).max())


def test_state_round_trip_and_damaged_state() -> None:
    X, Y = _points()
    m = KNNBase(SMALL, seed=0).fit(X, Y, None)
    meta, arrays, files = m.state()
    back = KNNBase.from_state(meta, arrays, files, SMALL)
    q = np.random.default_rng(2).normal(size=(7, 2)) * 5
    np.testing.assert_array_equal(back.margin(q), m.margin(q))
    np.testing.assert_array_equal(back.reference_margin(2), m.reference_margin(2))
    assert arrays["codes"].dtype == np.float16
    with pytest.raises(ModelError, match="missing arrays"):
        KNNBase.from_state(meta, {k: v for k, v in arrays.items() if k != "codes"}, files, SMALL)
    with pytest.raises(ModelError, match="shapes"):
        KNNBase.from_state(meta, {**arrays, "weights": arrays["weights"][:5]}, files, SMALL)


@pytest.mark.parametrize(
    "bad", [{"knn_neighbours": 0}, {"knn_temperature": 0.0}, {"knn_smoothing": -1.0}]
)
def test_bad_settings_are_refused(bad: dict[str, Any]) -> None:
    X, Y = _points()
    with pytest.raises(ConfigError, match="knn"):
        KNNBase({**SMALL, **bad}, seed=0).fit(X, Y, None)


def test_in_the_stack_its_say_joins_the_embedding_cue_exactly(
    data: tuple[np.ndarray, np.ndarray, list[str]], fast: dict[str, Any]
) -> None:
    X, Y, names = data
    m = GenreStacker(feature_names=names, bases=("xgb", "mlp", "knn"), **fast).fit(X[:150], Y[:150])
    assert m.base_names_ == ["xgb", "mlp", "knn"]
    e = m.explain(X[150:])
    assert e.cue_names.count("cnn.embedding") == 1
    assert e.max_error() < 1e-4
    p = m.predict_proba(X[150:])
    np.testing.assert_allclose(e.logit, np.log(p / (1 - p)), atol=1e-4, rtol=0)
    # The kNN's margins carry weight in the meta level for some genre.
    assert np.abs(m.meta_weights[:, 2, :]).max() > 0.05
    loaded = type(m).from_state(*m.to_state())
    np.testing.assert_allclose(loaded.predict_proba(X[150:]), p, rtol=0, atol=1e-12)
