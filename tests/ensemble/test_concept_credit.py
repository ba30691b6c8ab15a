"""The embedding's say, partly credited to the named concepts it recognises: exact, and
predictions unchanged."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from postergenre.ensemble.concept_credit import ConceptCredit, fit_concept_credit
from postergenre.ensemble.stacker import GenreStacker
from postergenre.errors import ModelError


@pytest.fixture(scope="module")
def with_concepts(fast: dict[str, Any]) -> tuple[GenreStacker, np.ndarray, list[str]]:
    from postergenre.ensemble.synthetic import GENRES, make_multilabel

    X, Y, names = make_multilabel(300, seed=5)
    emb = np.array([n.startswith("cnn.") for n in names])
    # Concepts are what the same network recognises: a softmax over its embedding.
    logits = X[:, emb][:, :4] * 2.0
    scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    Xc = np.hstack([X, scores.astype(np.float32)])
    cnames = [*names, "concepts.weapons", "concepts.gowns", "concepts.dogs", "concepts.cars"]
    # The credit splits the MLP's say; a kNN base would add its own to the embedding cue.
    model = GenreStacker(
        feature_names=cnames, genres=list(GENRES), bases=("xgb", "mlp"), **fast
    ).fit(Xc[:240], Y[:240])
    return model, Xc, cnames


def test_credit_moves_part_of_the_embedding_cue_onto_concepts_exactly(
    with_concepts: tuple[GenreStacker, np.ndarray, list[str]],
) -> None:
    model, X, names = with_concepts
    assert model.concept_credit_ is not None
    e = model.explain(X[240:])
    assert e.max_error() < 1e-4
    p = model.predict_proba(X[240:])
    np.testing.assert_allclose(e.logit, np.log(p / (1 - p)), atol=1e-4, rtol=0)
    emb = e.cue_names.index("cnn.embedding")
    concepts = [i for i, c in enumerate(e.cue_names) if c.startswith("concepts.")]
    assert len(concepts) == 4
    # Without the credit, every bit of the MLP's say is the opaque embedding cue.
    credit, model.concept_credit_ = model.concept_credit_, None
    try:
        plain = model.explain(X[240:])
        p_plain = model.predict_proba(X[240:])
    finally:
        model.concept_credit_ = credit
    np.testing.assert_array_equal(p, p_plain)
    np.testing.assert_allclose(plain.base, e.base)
    moved = e.contributions[..., concepts] - plain.contributions[..., concepts]
    np.testing.assert_allclose(
        moved.sum(-1), plain.contributions[..., emb] - e.contributions[..., emb], atol=1e-9
    )
    assert np.abs(e.contributions[..., emb]).sum() < np.abs(plain.contributions[..., emb]).sum()


def test_credit_round_trips_through_the_model_state(
    with_concepts: tuple[GenreStacker, np.ndarray, list[str]],
) -> None:
    model, X, _ = with_concepts
    loaded = type(model).from_state(*model.to_state())
    np.testing.assert_allclose(
        loaded.explain(X[240:]).contributions, model.explain(X[240:]).contributions
    )
    meta, arrays, files = model.to_state()
    meta["concept_credit"]["columns"] = ["concepts.unicorns"] * 4
    with pytest.raises(ModelError, match="concept credit"):
        type(model).from_state(meta, arrays, files)


def test_no_concept_columns_no_credit() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((50, 3))
    assert fit_concept_credit(rng.normal(size=(50, 2)), X, ["a", "b", "c"], 0) is None


def test_credit_regression_recovers_a_margin_made_of_log_concepts() -> None:
    rng = np.random.default_rng(1)
    S = rng.dirichlet(np.ones(3), size=400)
    margin = np.stack([2.0 * np.log(S[:, 0] + 1e-3), -np.log(S[:, 2] + 1e-3)], axis=1)
    credit = fit_concept_credit(margin, S, ["concepts.a", "concepts.b", "concepts.c"], 1)
    assert isinstance(credit, ConceptCredit)
    parts = credit.parts(S).sum(-1)  # (n, 2): the fitted, centred margin
    resid = margin - margin.mean(0) - parts
    assert (resid**2).mean() < 0.05 * ((margin - margin.mean(0)) ** 2).mean()
    assert credit.coef[0, 0] > 1.5 and credit.coef[2, 1] < -0.5
