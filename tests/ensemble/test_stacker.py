"""GenreStacker: out-of-fold level 0, exact explanations, thresholds, sklearn API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pytest

from postergenre.ensemble import bases as bases_mod
from postergenre.ensemble.bases import BaseLearner
from postergenre.ensemble.stacker import GenreStacker, balanced_indices


class MemorisingBase(BaseLearner):
    """Answers +-8 for rows it was trained on (exact feature match), 0 for rows it never
    saw. If any level-1 input came from a model that saw its row, it would be non-zero."""

    name = "memo"
    inputs = "cues"
    trained_on: ClassVar[list[set[bytes]]] = []

    def fit(self, X: np.ndarray, Y: np.ndarray, pos_weight: np.ndarray) -> MemorisingBase:
        self.memory_ = {row.tobytes(): y for row, y in zip(X, Y, strict=True)}
        self.G_ = Y.shape[1]
        MemorisingBase.trained_on.append(set(self.memory_))
        return self

    def margin(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((len(X), self.G_))
        for i, row in enumerate(X):
            y = self.memory_.get(np.asarray(row).tobytes())
            if y is not None:
                out[i] = np.where(y > 0, 8.0, -8.0)
        return out

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
        raise NotImplementedError

    @classmethod
    def from_state(
        cls,
        meta: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        files: Mapping[str, bytes],
        params: Mapping[str, Any],
        n_jobs: int = 1,
    ) -> MemorisingBase:
        raise NotImplementedError


@pytest.fixture
def memo(monkeypatch: pytest.MonkeyPatch) -> type[MemorisingBase]:
    monkeypatch.setitem(bases_mod.BASES, "memo", MemorisingBase)
    MemorisingBase.trained_on = []
    return MemorisingBase


def test_level1_inputs_come_only_from_models_that_did_not_see_the_row(
    memo: type[MemorisingBase], data: tuple[np.ndarray, np.ndarray, list[str]]
) -> None:
    X, Y, names = data
    m = GenreStacker(feature_names=names, bases=("memo",), n_folds=4).fit(X, Y)
    # Out-of-fold margins: the memoriser never recognises the row it scores.
    assert np.all(m.oof_margins_ == 0.0)
    # ... while on the rows it trained on it is perfect (the instrument works).
    assert np.all(np.abs(m.bases_[0].margin(X[:, m.base_columns_[0]])) == 8.0)
    # Each fold model saw exactly the rows of the other folds.
    cues = X[:, m.base_columns_[0]]
    for k, seen in enumerate(memo.trained_on[:4]):
        in_fold = {row.tobytes() for row in cues[m.folds_ == k]}
        out_fold = {row.tobytes() for row in cues[m.folds_ != k]}
        assert seen == out_fold and not (seen & in_fold)
    assert len(memo.trained_on) == 5  # 4 folds + the final model on all rows


def test_balanced_resampling_stays_inside_the_training_folds(
    memo: type[MemorisingBase], data: tuple[np.ndarray, np.ndarray, list[str]]
) -> None:
    X, Y, names = data
    m = GenreStacker(
        feature_names=names, bases=("memo",), n_folds=3, balance=True, balance_cap=30
    ).fit(X, Y)
    assert np.all(m.oof_margins_ == 0.0)


def test_balanced_indices_cap_and_oversample() -> None:
    Y = np.zeros((200, 2), dtype=int)
    Y[:150, 0] = 1
    Y[150:160, 1] = 1
    idx = balanced_indices(Y, cap=50, max_repeat=3, seed=0)
    counts = Y[idx].sum(0)
    assert counts[0] == 50  # common genre capped
    assert counts[1] == 30  # rare genre oversampled x3
    assert set(idx[Y[idx, 1] == 1]) == set(range(150, 160))  # every rare row kept
    assert np.array_equal(idx, balanced_indices(Y, cap=50, max_repeat=3, seed=0))


def test_explanation_is_exact(fitted: Any, data: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    X, _, names = data
    e = fitted.explain(X[180:])
    n, G = len(X) - 180, len(fitted.genres_)
    assert e.base.shape == (n, G) and e.logit.shape == (n, G)
    assert e.contributions.shape == (n, G, len(e.cue_names))
    np.testing.assert_allclose(e.base + e.contributions.sum(-1), e.logit, atol=1e-4, rtol=0)
    p = fitted.predict_proba(X[180:])
    np.testing.assert_allclose(e.logit, np.log(p / (1 - p)), atol=1e-4, rtol=0)
    cues = [c for c in names if not c.startswith("cnn.")]
    assert e.cue_names == [*cues, "cnn.embedding"]
    # The MLP pseudo-cue carries a real share, the cues too.
    assert np.abs(e.contributions[..., -1]).max() > 0
    assert np.abs(e.contributions[..., :-1]).max() > 0
    top = e.top(0, fitted.genres_[0], k=3)
    assert len(top) == 3 and abs(top[0][1]) >= abs(top[-1][1])


def test_the_embedding_cue_says_how_a_poster_differs_from_a_typical_one(
    fitted: Any, data: tuple[np.ndarray, np.ndarray, list[str]]
) -> None:
    # The MLP's mean margin (mostly the genre's rarity) sits in the base, like XGBoost's
    # bias: over the training posters the embedding cue averages to zero for every genre,
    # and the sum still gives the logit.
    # The kNN base's say joins the same cue, measured from its typical margin on posters
    # it did not hold (see test_knn_base.py), so it is taken out before averaging.
    X, _, _ = data
    e = fitted.explain(X[:180])
    G = len(fitted.genres_)
    b = fitted.base_names_.index("knn")
    knn, cols = fitted.bases_[b], fitted.base_columns_[b]
    knn_part = (knn.margin(X[:180][:, cols]) - knn.reference_margin(G)) @ fitted.meta_weights[
        :, b, :
    ].T
    np.testing.assert_allclose((e.contributions[..., -1] - knn_part).mean(0), 0.0, atol=1e-9)
    assert np.abs(knn_part).max() > 1e-3
    assert e.max_error() < 1e-4
    mlp = fitted.bases_[fitted.base_names_.index("mlp")]
    assert np.abs(mlp.reference_margin(len(fitted.genres_))).max() > 1e-3
    loaded = type(fitted).from_state(*fitted.to_state())
    np.testing.assert_allclose(loaded.explain(X[180:]).base, fitted.explain(X[180:]).base)


def test_explanation_is_exact_with_three_bases_bagging_and_same_genre_meta_inputs(
    data: tuple[np.ndarray, np.ndarray, list[str]], fast: dict[str, Any]
) -> None:
    X, Y, names = data
    m = GenreStacker(
        feature_names=names, meta_inputs="same", bases=("xgb", "mlp", "mlp_all"),
        mlp_bags=2, **fast,
    ).fit(X[:150], Y[:150])  # fmt: skip
    assert m.base_names_ == ["xgb", "mlp", "mlp_all"]
    assert len(m.bases_[2].layers_) == 2
    e = m.explain(X[150:])
    assert e.cue_names[-2:] == ["cnn.embedding", "cnn.holistic"]
    assert e.max_error() < 1e-4
    p = m.predict_proba(X[150:])
    np.testing.assert_allclose(e.logit, np.log(p / (1 - p)), atol=1e-4, rtol=0)
    W = m.meta_coef_.reshape(Y.shape[1], 3, Y.shape[1])
    off_diag = W * (1 - np.eye(Y.shape[1]))[:, None, :]
    assert np.all(off_diag == 0)


def test_predict_uses_thresholds_and_gives_a_genre(fitted: Any, data: Any) -> None:
    X, _, _ = data
    p = fitted.predict_proba(X[180:])
    P = fitted.predict(X[180:])
    assert p.shape == P.shape == (60, 5) and P.dtype.kind == "i"
    assert ((p >= fitted.thresholds_) <= P).all()
    assert (P.sum(1) >= 1).all()
    assert fitted.threshold_source_ == "out-of-fold"


def test_thresholds_are_tuned_on_out_of_fold_predictions(fitted: Any, data: Any) -> None:
    from postergenre.ensemble.metrics import tune_thresholds

    X, Y, _ = data
    np.testing.assert_allclose(
        fitted.thresholds_,
        tune_thresholds(Y[:180], fitted.oof_proba_, fitted.threshold_objective),
    )
    # The in-sample probabilities of the training rows would give other thresholds.
    assert not np.allclose(fitted.oof_proba_, fitted.predict_proba(X[:180]))


def test_fit_is_deterministic_and_thresholds_retune_on_validation(
    fitted: Any, data: Any, fast: dict[str, Any]
) -> None:
    from postergenre.ensemble.synthetic import GENRES

    X, Y, names = data
    m = GenreStacker(feature_names=names, genres=list(GENRES), **fast).fit(X[:180], Y[:180])
    np.testing.assert_array_equal(m.predict_proba(X[180:]), fitted.predict_proba(X[180:]))
    np.testing.assert_array_equal(m.thresholds_, fitted.thresholds_)
    m.tune_thresholds(X[180:], Y[180:])
    assert m.threshold_source_ == "validation"
    assert not np.array_equal(m.thresholds_, fitted.thresholds_)


def test_the_stack_learns(fitted: Any, data: Any) -> None:
    from postergenre.ensemble.metrics import average_precision

    X, Y, _ = data
    p = fitted.predict_proba(X[180:])
    ap = np.mean([average_precision(Y[180:, g], p[:, g]) for g in range(Y.shape[1])])
    assert ap > Y[180:].mean() + 0.2


def test_without_names_every_column_is_a_cue(data: Any, fast: dict[str, Any]) -> None:
    X, Y, _ = data
    m = GenreStacker(**fast).fit(X[:100, :10], Y[:100])
    assert m.base_names_ == ["xgb"]
    assert m.explain(X[100:110, :10]).cue_names == [f"x{j}" for j in range(10)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pos_weight": "huge"}, "pos_weight"),
        ({"meta_inputs": "some"}, "meta_inputs"),
        ({"bases": ("svm",)}, "unknown base learner"),
        ({"n_folds": 1}, "n_folds"),
    ],
)
def test_bad_parameters_raise_config_error(kwargs: dict[str, Any], message: str, data: Any) -> None:
    from postergenre.errors import ConfigError

    X, Y, names = data
    with pytest.raises(ConfigError, match=message):
        GenreStacker(feature_names=names, **kwargs).fit(X, Y)


def test_bad_inputs_raise_value_error(fitted: Any, data: Any) -> None:
    X, Y, names = data
    with pytest.raises(ValueError, match="one per feature name"):
        GenreStacker(feature_names=names[:-1]).fit(X, Y)
    with pytest.raises(ValueError, match="0/1 genre matrix"):
        GenreStacker(feature_names=names).fit(X, Y[:, 0])
    with pytest.raises(ValueError, match="expecting 36 features"):
        fitted.predict_proba(X[:, :5])


def test_unfitted_model_says_so() -> None:
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        GenreStacker().predict_proba(np.zeros((2, 3)))


# scikit-learn's estimator checks. GenreStacker is multi-label only (an (n, G) 0/1
# target) and decides with tuned per-genre thresholds; the checks below feed 1-D
# binary/multiclass targets or targets that are not 0/1, so they cannot pass.
ONE_D_TARGET = "feeds a 1-D (or non-0/1) target; GenreStacker is multi-label only"
EXPECTED_FAILED_CHECKS = {
    # sample_weight checks feed 1-D binary targets or call fit(y=...); the genre matrix is Y.
    "check_sample_weights_pandas_series": ONE_D_TARGET,
    "check_sample_weights_not_an_array": ONE_D_TARGET,
    "check_sample_weights_shape": ONE_D_TARGET,
    "check_sample_weights_not_overwritten": ONE_D_TARGET,
    "check_classifiers_one_label_sample_weights": ONE_D_TARGET,
    "check_sample_weight_equivalence_on_dense_data": "calls fit(X, y=...); the genre matrix is Y",
    "check_estimators_dtypes": ONE_D_TARGET,
    "check_classifier_data_not_an_array": ONE_D_TARGET,
    "check_classifiers_one_label": ONE_D_TARGET,
    "check_classifiers_classes": ONE_D_TARGET,
    "check_classifiers_train": ONE_D_TARGET,
    "check_decision_proba_consistency": ONE_D_TARGET,
    "check_fit2d_1feature": ONE_D_TARGET,
}


def _checks() -> list[Any]:
    from sklearn.utils.estimator_checks import check_estimator

    est = GenreStacker(n_folds=2, xgb_rounds=3, mlp_epochs=1, mlp_hidden=4, n_jobs=1)
    return check_estimator(est, expected_failed_checks=EXPECTED_FAILED_CHECKS, on_fail=None)


def test_sklearn_estimator_checks() -> None:
    results = _checks()
    failed = [
        (r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"
    ]
    assert not failed, failed
    statuses = {r["check_name"]: r["status"] for r in results}
    assert statuses["check_classifier_multioutput"] == "passed"
    assert statuses["check_fit_score_takes_y"] == "passed"
    assert statuses["check_estimators_empty_data_messages"] == "passed"
    for name in EXPECTED_FAILED_CHECKS:
        assert statuses[name] == "xfail", name
