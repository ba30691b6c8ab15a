"""Conditioning the stack's genres on the genre combinations films have (genre_sets.py)."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from postergenre.ensemble.genre_sets import (
    GENRE_SETS_CUE,
    GenreSets,
    GenreSetTable,
    read_genre_set_table,
)
from postergenre.errors import ConfigError, ModelError

GENRES = ("Action", "Comedy", "Drama", "Horror")


def _sets(
    lists: list[list[str]], genres: tuple[str, ...] = GENRES, min_count: int = 1
) -> GenreSets:
    return GenreSetTable.from_genre_lists(lists, "test films").support(list(genres), min_count)


def _every_set(genres: tuple[str, ...] = GENRES) -> GenreSets:
    lists = [list(c) for r in range(1, len(genres) + 1) for c in itertools.combinations(genres, r)]
    return _sets(lists, genres)


def test_every_combination_leaves_independent_genres_as_they_are() -> None:
    # Over all sets (the empty one aside, which no poster has) conditioning changes little;
    # with the empty set as well it would be the identity. Here: the non-empty sets and
    # log-odds so high that the empty set would carry no mass anyway.
    z = np.random.default_rng(0).normal(size=(50, 4)) + 6.0
    q = _every_set().log_odds(z)
    assert np.allclose(q, z, atol=1e-6)


def test_genres_that_never_go_together_share_their_probability() -> None:
    sets = _sets([["Action"], ["Comedy"], ["Drama"], ["Horror"], ["Action", "Drama"],
                  ["Comedy", "Drama"], ["Horror", "Drama"]])  # fmt: skip
    z = np.array([[3.0, 3.0, -1.0, -4.0]])  # Action and Comedy both likely on their own
    p = sets.proba(z)[0]
    # No supported set holds both: their probabilities cannot add up to more than 1,
    # while independently they would be 0.95 each.
    assert p[0] + p[1] <= 1.0 + 1e-12
    assert p[0] == pytest.approx(p[1])
    assert 1 / (1 + np.exp(-3.0)) > 0.95
    # At most two genres per poster: the expected number of genres is at most 2.
    assert sets.proba(np.full((1, 4), 5.0)).sum() <= 2.0 + 1e-12


def test_jacobian_is_the_derivative_of_the_conditioned_log_odds() -> None:
    sets = _sets([["Action"], ["Comedy"], ["Drama"], ["Action", "Drama"], ["Comedy", "Drama"],
                  ["Horror"], ["Horror", "Action"], ["Action", "Comedy", "Drama"]])  # fmt: skip
    sets = GenreSets(sets.genres, sets.support, sets.counts, np.array([0.3, -0.2, 0.1, 0.5]))
    z = np.random.default_rng(1).normal(size=(5, 4))
    J = sets.jacobian(z)
    eps = 1e-6
    for h in range(4):
        dz = np.zeros(4)
        dz[h] = eps
        fd = (sets.log_odds(z + dz) - sets.log_odds(z - dz)) / (2 * eps)
        assert np.allclose(J[:, :, h], fd, atol=1e-6)


def test_calibrated_offsets_keep_each_genres_mean_probability() -> None:
    # At most two genres per poster, Comedy never with Horror.
    lists = [[g] for g in GENRES] + [list(c) for c in itertools.combinations(GENRES, 2)]
    sets = _sets([gl for gl in lists if gl != ["Comedy", "Horror"]])
    rng = np.random.default_rng(2)
    z = rng.normal(size=(300, 4))
    W = rng.uniform(0.2, 2.0, size=(300, 4))
    W[:100, 0] = 0.0  # rows unlabelled for a genre say nothing about its mean
    cal = sets.calibrated(z, W)
    mean = (W * cal.proba(z)).sum(0) / W.sum(0)
    target = (W / (1 + np.exp(-z))).sum(0) / W.sum(0)
    assert np.allclose(mean, target, atol=1e-6)
    # Without the offsets conditioning makes every genre rarer than the stack said.
    raw = (W * sets.proba(z)).sum(0) / W.sum(0)
    assert (raw < target - 0.01).all()


def test_support_counts_combinations_of_the_models_genres_only() -> None:
    lists = [["Action", "Short"]] * 3 + [["Action"]] * 2 + [["Comedy", "Drama"]] * 4
    lists += [["Short"]] * 9 + [["Drama"]] * 5 + [["Horror"]] * 6 + [["Comedy"]] * 5
    sets = GenreSetTable.from_genre_lists(lists, "t").support(list(GENRES), min_count=5)
    got = {tuple(g for g, on in zip(GENRES, row, strict=True) if on) for row in sets.support}
    # Action+Short (3) and Action (2) merge into Action (5); Comedy+Drama (4) falls short;
    # Short alone is the empty set, which no labelled poster has.
    assert got == {("Action",), ("Comedy",), ("Drama",), ("Horror",)}
    assert int(sets.counts.sum()) == 21
    with pytest.raises(ConfigError, match="Horror"):
        GenreSetTable.from_genre_lists(lists[:-11], "t").support(list(GENRES), min_count=5)


def test_tables_read_from_csv_and_json(tmp_path: Path) -> None:
    csv_path = tmp_path / "films.csv"
    csv_path.write_text("imdb_id,genres\ntt1,Action|Drama\ntt2,Drama\ntt3,Drama|Action\n")
    table = read_genre_set_table(csv_path)
    assert table.n == 3 and table.sets[("Action", "Drama")] == 2
    json_path = tmp_path / "sets.json"
    json_path.write_text(json.dumps(table.to_dict()))
    again = read_genre_set_table(json_path)
    assert dict(again.sets) == dict(table.sets) and again.n == 3
    json_path.write_text('{"sets": [{"genre": "Drama"}]}')
    with pytest.raises(ConfigError, match="expected"):
        read_genre_set_table(json_path)
    with pytest.raises(ConfigError, match="does not exist"):
        read_genre_set_table(tmp_path / "missing.json")


def test_shipped_table_is_imdb_films_with_at_most_three_genres() -> None:
    table = read_genre_set_table()
    assert table.n == 36918
    genres = json.loads(
        (Path(__file__).parents[2] / "src/postergenre/models/default/bundle.json").read_text()
    )["genres"]
    sets = table.support(genres, 5)
    assert len(sets.support) == 423  # the figure genre_sets.py's docstring quotes
    assert sets.support.sum(1).max() == 3
    U = sets.support
    doc, drama = genres.index("Documentary"), genres.index("Drama")
    # Documentaries go with few genres (9 documentary thrillers among 36,918 films, no
    # combination of them carried by 5).
    assert U[:, doc].sum() < U[:, drama].sum() / 3
    assert not (U[:, doc] & U[:, genres.index("Thriller")]).any()


# -- the stack --------------------------------------------------------------------------


def _exclusive_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Synthetic posters whose genres come in few combinations: one genre each (the most
    likely one), with Drama beside Action where both fired; Comedy never with Horror."""
    from postergenre.ensemble.synthetic import make_multilabel

    X, Y, names = make_multilabel(n, seed=seed, genres=GENRES)
    rng = np.random.default_rng(seed)
    first = np.argmax(Y + rng.uniform(0, 0.5, size=Y.shape), axis=1)
    out = np.zeros_like(Y)
    out[np.arange(n), first] = 1
    out[:, 2] |= Y[:, 0] & Y[:, 2] & (first == 0)
    return X, out, names


@pytest.fixture(scope="module")
def conditioned(fast: dict[str, Any]) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    from postergenre.ensemble.stacker import GenreStacker

    X, Y, names = _exclusive_data(600, seed=4)
    lists = [[g for g, on in zip(GENRES, y, strict=True) if on] for y in Y[:400]]
    sets = GenreSetTable.from_genre_lists(lists, "training posters").support(list(GENRES), 3)
    plain = GenreStacker(feature_names=names, genres=list(GENRES), **fast).fit(X[:400], Y[:400])
    model = GenreStacker(feature_names=names, genres=list(GENRES), **fast)
    model.fit(X[:400], Y[:400], genre_sets=sets)
    return plain, model, X[400:], Y[400:]


def test_conditioning_fits_posters_whose_genres_come_in_few_combinations(
    conditioned: tuple[Any, Any, np.ndarray, np.ndarray],
) -> None:
    plain, model, X, Y = conditioned

    def set_log_lik(P: np.ndarray) -> np.ndarray:
        """log P(the poster's whole genre set) with the genres independent."""
        P = np.clip(P, 1e-12, 1 - 1e-12)
        return (Y * np.log(P) + (1 - Y) * np.log(1 - P)).sum(1)

    P0, P1 = plain.predict_proba(X), model.predict_proba(X)
    assert model.genre_sets_ is not None and plain.genre_sets_ is None
    sets = model.genre_sets_
    rows = {tuple(r): k for k, r in enumerate(sets.support.astype(int).tolist())}
    true_set = np.array([rows[tuple(y)] for y in Y.astype(int).tolist()])
    conditioned_lik = np.log(sets.set_proba(model.meta_log_odds(X))[np.arange(len(Y)), true_set])
    # Held-out posters: the conditioned model gives their whole genre set a far higher
    # probability than independent genres do (mean log-likelihood, nats), and Comedy with
    # Horror (never together) no longer adds up past 1.
    assert conditioned_lik.mean() > set_log_lik(P0).mean() + 0.3
    assert (P1[:, 1] + P1[:, 3] <= 1 + 1e-9).all()
    # The offsets were fitted (keeping each genre's mean probability the meta-learner's).
    assert np.abs(sets.offset).max() > 0.05
    assert np.allclose(model.oof_proba_.sum(1).mean(), Y.sum(1).mean(), atol=0.3)


def test_conditioned_stack_explains_and_differentiates_exactly(
    conditioned: tuple[Any, Any, np.ndarray, np.ndarray],
) -> None:
    _, model, X, _ = conditioned
    ex = model.explain(X[:20])
    assert GENRE_SETS_CUE in ex.cue_names
    assert ex.max_error() < 1e-9
    assert np.allclose(ex.proba, model.predict_proba(X[:20]), atol=1e-12)
    c = ex.contributions[:, :, ex.cue_names.index(GENRE_SETS_CUE)]
    assert np.allclose(c, model.decision_function(X[:20]) - model.meta_log_odds(X[:20]), atol=1e-5)
    assert np.abs(c).max() > 0.1  # it did something
    x = X[:3].astype(np.float64)
    grad = model.logit_gradient(x)
    assert grad is not None
    # The chain rule through the conditioning, against the same stack without it ...
    independent = copy.copy(model)
    independent.genre_sets_ = None
    inner = independent.logit_gradient(x)
    assert inner is not None
    J = model.genre_sets_.jacobian(model.meta_log_odds(x))
    assert np.allclose(grad, np.einsum("ngh,nhc->ngc", J, inner), atol=1e-12)
    assert np.abs(grad - inner).max() > 1e-3  # the conditioning mixes the genres
    # ... and finite differences along embedding columns (the MLP's, smooth; float32
    # inside, so a wide step).
    eps = 1e-2
    for j in (0, 5, 11):
        d = np.zeros(X.shape[1])
        d[j] = eps
        fd = (model.decision_function(x + d) - model.decision_function(x - d)) / (2 * eps)
        assert np.allclose(grad[:, :, j], fd, rtol=0.05, atol=2e-3)


def test_bundle_keeps_the_genre_sets(
    conditioned: tuple[Any, Any, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    from postergenre.ensemble.bundle import load_bundle, save_bundle

    _, model, X, _ = conditioned
    path = save_bundle(model, tmp_path / "m", extractors=[])
    again = load_bundle(path).model
    assert again.genre_sets_ is not None
    assert np.array_equal(again.predict_proba(X), model.predict_proba(X))
    meta, arrays, files = model.to_state()
    arrays = {**arrays, "genre_sets.support": arrays["genre_sets.support"][:-1]}
    with pytest.raises(ModelError, match="genre sets"):
        type(model).from_state(meta, arrays, files)


def test_a_catalogue_prior_shifts_the_log_odds_before_conditioning(
    conditioned: tuple[Any, Any, np.ndarray, np.ndarray],
) -> None:
    from postergenre.ensemble.label_shift import prior_shift

    _, model, X, _ = conditioned
    target = np.array([0.1, 0.5, 0.3, 0.05])
    adapted = model.adapted(target)
    z = model.meta_log_odds(X) + prior_shift(model.reference_prior, target)
    expected = 1 / (1 + np.exp(-model.genre_sets_.log_odds(z)))
    assert np.allclose(adapted.predict_proba(X), expected, atol=1e-12)
    assert np.abs(adapted.predict_proba(X) - model.predict_proba(X)).max() > 0.05
