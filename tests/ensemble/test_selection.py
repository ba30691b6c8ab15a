"""Collections selected on their first-listed genre: the selection-aware likelihood."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from postergenre.ensemble.bases import (
    MLPBase,
    genre_order,
    selection_log_prob,
    selection_weights,
)
from postergenre.ensemble.label_shift import FirstGenreSelection, selection_matrix
from postergenre.ensemble.stacker import GenreStacker
from postergenre.errors import ConfigError


def brute_force_kept(p: np.ndarray, names: list[str], first: set[str]) -> float:
    """P(first-listed genre in ``first``) by enumerating every genre set (independent
    genres); the empty set is never kept."""
    order = sorted(range(len(names)), key=lambda j: names[j])
    total = 0.0
    for y in itertools.product([0, 1], repeat=len(names)):
        on = [j for j in order if y[j]]
        if on and names[on[0]] in first:
            total += float(np.prod([p[j] if y[j] else 1 - p[j] for j in range(len(names))]))
    return total


def test_the_selection_term_is_the_probability_of_being_kept() -> None:
    names = ["Drama", "Action", "Comedy", "Crime", "Western"]  # not in listing order
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, (6, len(names)))
    first = {"Comedy", "Drama"}
    admissible = np.array([[n in first for n in names]] * 5 + [[False] * len(names)])
    order = genre_order(names, len(names))
    assert [names[j] for j in order] == sorted(names)
    got = selection_log_prob(
        torch, torch.tensor(z), torch.from_numpy(admissible[:, order]), torch.from_numpy(order)
    ).numpy()
    p = 1 / (1 + np.exp(-z))
    for i in range(5):
        assert got[i] == pytest.approx(np.log(brute_force_kept(p[i], names, first)), abs=1e-9)
    assert got[5] == 0.0  # a row of no selected collection: no term


def test_selection_weights_count_every_genre_listed_up_to_the_last_admissible_one() -> None:
    names = ["Action", "Comedy", "Crime", "Drama", "Romance"]
    order = genre_order(names, 5)
    W = np.full((2, 5), 0.5)
    W[0, 0] = 0.0  # unlabelled by the collection rule
    A = np.array([[False, True, False, True, False], [False] * 5])
    W2 = selection_weights(W, A, order)
    # Genres listed before Comedy cancel out of the likelihood; Crime and Drama are
    # modelled by it; Romance (after Drama) keeps its label weight; other rows unchanged.
    assert W2[0].tolist() == [1.0, 1.0, 1.0, 1.0, 0.5]
    assert W2[1].tolist() == W[1].tolist()


def test_selection_matrix_and_its_errors() -> None:
    s = FirstGenreSelection.parse("perceptilabs = Comedy, Drama")
    assert s == FirstGenreSelection("perceptilabs", ("Comedy", "Drama"))
    A = selection_matrix(
        [s], ["perceptilabs", "laxmimerit", "perceptilabs"], ["Comedy", "Drama", "War"]
    )
    assert A.tolist() == [[True, True, False], [False, False, False], [True, True, False]]
    assert selection_matrix([], ["x"], ["Comedy"]) is None
    for bad in ("perceptilabs", "=Comedy", "perceptilabs="):
        with pytest.raises(ConfigError, match="COLLECTION=GENRE"):
            FirstGenreSelection.parse(bad)
    with pytest.raises(ConfigError, match="unknown genre"):
        selection_matrix([FirstGenreSelection("p", ("Horror",))], ["p"], ["Comedy"])
    with pytest.raises(ConfigError, match="no training poster"):
        selection_matrix([FirstGenreSelection("q", ("Comedy",))], ["p"], ["Comedy"])


def planted_selection(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Films at large: feature 0 carries Comedy, feature 1 Action; Drama is a coin flip
    that no feature shows. One collection keeps only films listed Comedy or Drama first,
    where "no Comedy" therefore means "Drama"; a smaller one samples films at large.
    Returns X, Y and whether each row is from the selected collection."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, 3)) < [0.3, 0.4, 0.5]).astype(np.uint8)  # Action, Comedy, Drama
    X = (Y[:, :2] * 2.0 + rng.normal(0, 0.7, (n, 2))).astype(np.float32)
    first_half = np.arange(n) < n // 2
    selected = first_half & (Y[:, 0] == 0) & ((Y[:, 1] == 1) | (Y[:, 2] == 1))
    at_large = ~first_half & (rng.random(n) < 0.3)
    keep = selected | at_large
    return X[keep], Y[keep], selected[keep]


@pytest.mark.parametrize("aware", [False, True])
def test_a_selection_aware_mlp_does_not_learn_the_selection(aware: bool) -> None:
    names = ["Action", "Comedy", "Drama"]
    X, Y, selected = planted_selection(12000, seed=1)
    W = np.ones(Y.shape)
    W[selected, 0] = 0.0  # the selected collection holds no Action film: unlabelled
    A = np.zeros(Y.shape, dtype=bool)
    A[selected, 1:] = True
    params = {
        "genres": names,
        "mlp_epochs": 20,
        "mlp_hidden": 16,
        "mlp_dropout": 0.0,
        "mlp_learning_rate": 0.01,
    }
    model = MLPBase(params, seed=0).fit(X, Y, W, selection=A if aware else None)
    # Among films without Comedy or Action, Drama is still a coin flip: 0.5 is the truth.
    plain_comedy_free = np.array([[0.0, 0.0], [-0.5, 0.0]], dtype=np.float32)
    drama = 1 / (1 + np.exp(-model.margin(plain_comedy_free)[:, 2]))
    if aware:
        assert np.all(np.abs(drama - 0.5) < 0.1), drama
    else:
        assert np.all(drama > 0.7), drama  # the selection's "not a comedy, so a drama"


def test_the_stacker_takes_the_selection_where_it_is_told() -> None:
    X, Y, selected = planted_selection(6000, seed=2)
    A = np.zeros(Y.shape, dtype=bool)
    A[selected, 1:] = True
    W = np.ones(Y.shape)
    W[selected, 0] = 0.0
    kw = dict(
        feature_names=["cnn.0", "cnn.1"],
        genres=["Action", "Comedy", "Drama"],
        bases=("mlp",),
        mlp_epochs=3,
        n_folds=3,
        random_state=0,
    )

    def fit(where: str | None) -> GenreStacker:
        if where is None:
            return GenreStacker(**kw).fit(X, Y, sample_weight=W)
        return GenreStacker(**kw, selection_in=where).fit(X, Y, sample_weight=W, selection=A)

    plain, meta, mlp, both = fit(None), fit("meta"), fit("mlp"), fit("all")
    # "meta": the level-0 margins are the plain ones, the meta-learner moves.
    np.testing.assert_array_equal(meta.oof_margins_, plain.oof_margins_)
    assert np.abs(meta.meta_coef_ - plain.meta_coef_).max() > 1e-3
    # "mlp": the MLP's margins move; "all": both, the MLP as in "mlp".
    assert not np.allclose(mlp.oof_margins_, plain.oof_margins_)
    np.testing.assert_array_equal(both.oof_margins_, mlp.oof_margins_)
    assert np.abs(both.meta_coef_ - mlp.meta_coef_).max() > 1e-3
    # Deterministic, and a selection of another shape is refused.
    np.testing.assert_array_equal(fit("all").meta_coef_, both.meta_coef_)
    with pytest.raises(ValueError, match="selection of shape"):
        GenreStacker(**kw).fit(X, Y, sample_weight=W, selection=A[:, :2])
    with pytest.raises(ConfigError, match="selection_in"):
        GenreStacker(**kw, selection_in="xgb").fit(X, Y, sample_weight=W)


def test_the_cli_choices_are_the_stackers() -> None:
    from postergenre.cli.train import SelectionIn
    from postergenre.ensemble.stacker import SELECTION_LEARNERS

    assert tuple(c.value for c in SelectionIn) == SELECTION_LEARNERS
    assert GenreStacker().selection_in == SelectionIn.meta.value


def test_the_joint_meta_fit_without_a_selected_row_is_the_per_genre_fit() -> None:
    from postergenre.ensemble.stacker import _fit_meta_selected

    rng = np.random.default_rng(4)
    n, B, G = 600, 2, 3
    Y = (rng.random((n, G)) < [0.2, 0.5, 0.4]).astype(float)
    Z = (Y[:, None, :] * 1.5 + rng.normal(0, 1, (n, B, G))).reshape(n, B * G)
    W = rng.uniform(0.5, 2.0, (n, G))
    W[:50, 0] = 0.0  # unlabelled cells take no part
    st = GenreStacker(genres=["Action", "Comedy", "Drama"])
    mask = st._meta_mask(B, G)
    coef, icpt = st._fit_meta(Z, Y, W)
    none = np.zeros((n, G), dtype=bool)
    coef2, icpt2 = _fit_meta_selected(Z, Y, W, none, mask, 1.0, genre_order(st.genres, G))
    np.testing.assert_allclose(coef2, coef, atol=2e-4)
    np.testing.assert_allclose(icpt2, icpt, atol=2e-4)
    # With selected rows the genres are tied: the fit moves.
    A = np.zeros((n, G), dtype=bool)
    A[: n // 2, 1:] = True
    coef3, _ = st._fit_meta(Z, Y, W, A)
    assert np.abs(coef3 - coef).max() > 1e-2


def test_the_shipped_model_was_trained_with_the_builds_selection() -> None:
    """The build script names the shared collections' selection; the shipped bundle's card
    and parameters say it was applied (a rebuild that dropped it would show here)."""
    import importlib.util
    import json
    from pathlib import Path

    import postergenre

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "build_default_model", root / "scripts" / "build_default_model.py"
    )
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    wanted = {}
    for text in build.SELECTIONS:
        s = FirstGenreSelection.parse(text)
        wanted[s.collection] = list(s.first)
    card_path = Path(postergenre.__file__).parent / "models" / "default" / "card.json"
    card = json.loads(card_path.read_text())
    assert card["label_weights"]["selection"] == wanted == {"perceptilabs": ["Comedy", "Drama"]}
    assert card["model"]["params"]["selection_in"] == "meta"
