"""Collection directions projected out of the embedding (iterative null-space projection)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from postergenre.ensemble.projection import CollectionProjection, fit_collection_projection

GENRES = ["A", "B", "C"]
NAMES = ["cnn.0", "cnn.1", "cnn.2", "cnn.3", "cnn.4", "cnn.5", "color.x"]
SMALL_KNN = {"bases": ("knn",), "n_folds": 3, "knn_neighbours": 40, "n_jobs": 1}


def planted_scan(n: int = 1200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Two collections with different genre mixes whose embeddings differ along one
    direction that says nothing about the genre (a scanner's look: cnn.0 and cnn.4 move
    together); cnn.1-3 carry the genres, cnn.5 is noise, color.x a cue of genre C."""
    rng = np.random.default_rng(seed)
    coll = rng.random(n) < 0.5
    rates = np.where(coll[:, None], [0.6, 0.1, 0.3], [0.1, 0.6, 0.3])
    Y = (rng.random((n, 3)) < rates).astype(np.uint8)
    Y[Y.sum(1) == 0, 2] = 1
    look = coll + rng.normal(0, 0.1, n)
    genre = Y + rng.normal(0, 0.8, (n, 3))
    X = np.column_stack(
        [look, genre, 0.7 * look + rng.normal(0, 0.1, n), rng.normal(0, 1, n),
         Y[:, 2] + rng.normal(0, 1, n)]
    ).astype(np.float32)  # fmt: skip
    return X, Y, ["one" if c else "two" for c in coll]


def _auc(score: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def test_the_directions_remove_the_collection_and_keep_the_genres() -> None:
    X, Y, groups = planted_scan()
    emb = np.arange(6)
    proj = fit_collection_projection(X[:, emb], Y, groups, 2, emb)
    assert proj is not None and proj.basis.shape == (2, 6)
    np.testing.assert_allclose(proj.basis @ proj.basis.T, np.eye(2), atol=1e-9)
    assert proj.accuracy[0] > 0.8  # the collections were plainly apart (genre sets centred)
    # On new posters: the collection is no longer readable from the embedding (a fresh
    # regression, fitted after the projection), the genres still are.
    from sklearn.linear_model import LogisticRegression

    Xt, Yt, gt = planted_scan(seed=1)
    c = np.array(gt) == "one"
    before = LogisticRegression().fit(Xt[:, emb], c).decision_function(Xt[:, emb])
    P = proj.apply(Xt)
    after = LogisticRegression().fit(P[:, emb], c).decision_function(P[:, emb])
    assert _auc(before, c) > 0.99 and _auc(after, c) < 0.75
    for j in range(3):
        assert _auc(P[:, 1 + j], Yt[:, j]) > 0.7
    np.testing.assert_array_equal(P[:, 6], Xt[:, 6])  # other columns untouched
    np.testing.assert_allclose(proj.apply(P), P, atol=1e-5)  # idempotent


def test_rows_without_a_collection_and_a_single_collection() -> None:
    X, Y, groups = planted_scan(400)
    emb = np.arange(6)
    assert fit_collection_projection(X[:, emb], Y, ["one"] * 400, 2, emb) is None
    few = ["one"] * 390 + ["two"] * 10  # too few posters of the second to teach a direction
    assert fit_collection_projection(X[:, emb], Y, few, 2, emb) is None
    assert fit_collection_projection(X[:, emb], Y, groups, 0, emb) is None
    # Rows with no collection (augmented copies) take no part: the same directions as
    # without them.
    a = fit_collection_projection(X[:, emb], Y, groups, 1, emb)
    Xc = np.vstack([X, X[:50] + 3.0])
    b = fit_collection_projection(
        Xc[:, emb], np.vstack([Y, Y[:50]]), [*groups, *[None] * 50], 1, emb
    )
    assert a is not None and b is not None
    np.testing.assert_allclose(a.basis, b.basis, atol=1e-9)


def test_pull_back_is_the_gradient_through_the_map() -> None:
    X, Y, groups = planted_scan(300)
    emb = np.arange(6)
    proj = fit_collection_projection(X[:, emb], Y, groups, 2, emb)
    assert proj is not None
    a = np.random.default_rng(3).normal(size=7)

    def f(x: np.ndarray) -> float:  # a function of the projected features
        return float(np.tanh(proj.apply(x[None, :].astype(np.float64))[0].astype(np.float64)) @ a)

    x = X[0].astype(np.float64)
    p = proj.apply(x[None, :])[0].astype(np.float64)
    grad_p = a * (1 - np.tanh(p) ** 2)
    grad_x = proj.pull_back(grad_p[None, :])[0]
    eps = 1e-3
    numeric = np.array([(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in np.eye(7)])
    np.testing.assert_allclose(grad_x, numeric, rtol=2e-2, atol=2e-3)


def test_the_stack_reads_no_collection_from_the_embedding(tmp_path: Path) -> None:
    from postergenre.ensemble.bundle import load_bundle, save_bundle
    from postergenre.ensemble.stacker import GenreStacker

    X, Y, groups = planted_scan()
    Xt, Yt, gt = planted_scan(seed=1)
    one = np.array(gt) == "one"

    def gap(model: GenreStacker) -> float:
        # Mean probability of genre A between the collections, among posters without A.
        P = model.predict_proba(Xt)[:, 0]
        rows = Yt[:, 0] == 0
        return float(abs(P[rows & one].mean() - P[rows & ~one].mean()))

    plain = GenreStacker(feature_names=NAMES, genres=GENRES, **SMALL_KNN).fit(X, Y)
    fair = GenreStacker(
        feature_names=NAMES, genres=GENRES, collection_directions=2, **SMALL_KNN
    ).fit(X, Y, collections=groups)
    # The neighbours were found by the scanner's look: genre A is far likelier among the
    # first collection's posters that do not have it; with the look projected out, not.
    assert gap(plain) > 0.15
    assert gap(fair) < gap(plain) / 3
    # A bundle keeps the projection: the same probabilities and gradients after loading.
    loaded = load_bundle(save_bundle(fair, tmp_path / "m")).model
    assert loaded.projection_ is not None
    np.testing.assert_allclose(loaded.predict_proba(Xt[:20]), fair.predict_proba(Xt[:20]))
    np.testing.assert_allclose(loaded.logit_gradient(Xt[:3]), fair.logit_gradient(Xt[:3]))
    with pytest.raises(ValueError, match="collection of each"):
        GenreStacker(feature_names=NAMES, genres=GENRES, collection_directions=1, **SMALL_KNN).fit(
            X, Y
        )


def test_the_gradient_of_a_projected_stack_is_its_finite_difference() -> None:
    from postergenre.ensemble.stacker import GenreStacker

    X, Y, groups = planted_scan(600)
    model = GenreStacker(
        feature_names=NAMES, genres=GENRES, bases=("mlp",), n_folds=2, mlp_hidden=16,
        mlp_epochs=3, mlp_bags=1, n_jobs=1, collection_directions=2,
    ).fit(X, Y, collections=groups)  # fmt: skip
    x = X[:1].astype(np.float64)
    grad = model.logit_gradient(x)
    assert grad is not None
    eps = 1e-3
    for j in range(6):  # the embedding columns
        step = np.zeros_like(x)
        step[0, j] = eps
        numeric = (model.decision_function(x + step) - model.decision_function(x - step)) / (
            2 * eps
        )
        np.testing.assert_allclose(grad[0, :, j], numeric[0], rtol=0.05, atol=1e-3)
    # Along a removed direction (in standardised units) the log-odds do not move.
    proj = model.projection_
    assert proj is not None
    along = np.zeros_like(x)
    along[0, :6] = proj.basis[0] * proj.scale
    np.testing.assert_allclose(
        model.decision_function(x + 0.5 * along), model.decision_function(x), atol=1e-4
    )


def test_damaged_projection_state_is_refused() -> None:
    from postergenre.errors import ModelError

    proj = CollectionProjection(np.arange(3), np.zeros(3), np.ones(3), np.eye(3)[:1], [0.9])
    meta, arrays = proj.to_state()
    back = CollectionProjection.from_state(meta, arrays, 5)
    np.testing.assert_array_equal(back.basis, proj.basis)
    bad = {**arrays, "projection.basis": np.ones((1, 4))}
    with pytest.raises(ModelError, match="projection"):
        CollectionProjection.from_state(meta, bad, 5)
    with pytest.raises(ModelError, match="projection"):
        CollectionProjection.from_state(meta, arrays, 2)  # a column beyond the features
