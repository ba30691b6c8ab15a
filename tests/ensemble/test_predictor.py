"""GenrePredictor: a loaded model predicts and explains with numpy only, exactly as the
GenreStacker that was saved, with scikit-learn's input messages."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from postergenre.ensemble.bundle import default_bundle_path, load_bundle, save_bundle
from postergenre.ensemble.predictor import GenrePredictor
from postergenre.errors import ModelError

HEAVY = ("xgboost", "sklearn", "scipy", "pandas")


@pytest.fixture(scope="module")
def loaded(fitted: Any, tmp_path_factory: pytest.TempPathFactory) -> GenrePredictor:
    path = save_bundle(fitted, tmp_path_factory.mktemp("predictor") / "model")
    return load_bundle(path).model


def test_a_loaded_bundle_is_a_predictor_that_predicts_like_the_stacker(
    loaded: GenrePredictor, fitted: Any, data: Any
) -> None:
    from postergenre.ensemble.stacker import GenreStacker

    X, _, _ = data
    assert type(loaded) is GenrePredictor and not isinstance(loaded, GenreStacker)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.base_margins(X), fitted.base_margins(X))
    e1, e2 = loaded.explain(X[:7]), fitted.explain(X[:7])
    np.testing.assert_array_equal(e1.contributions, e2.contributions)
    np.testing.assert_array_equal(e1.base, e2.base)
    assert e1.cue_names == e2.cue_names
    assert (loaded.min_genres, loaded.threshold_objective) == (
        fitted.min_genres,
        fitted.threshold_objective,
    )


def test_a_loaded_predictor_saves_again_unchanged(
    loaded: GenrePredictor, data: Any, tmp_path: Path
) -> None:
    X, _, _ = data
    again = load_bundle(save_bundle(loaded, tmp_path / "again")).model
    np.testing.assert_array_equal(again.predict_proba(X), loaded.predict_proba(X))
    assert again.to_state()[0] == loaded.to_state()[0]


def test_the_stacker_still_loads_from_state_and_refuses_unknown_parameters(
    fitted: Any, data: Any
) -> None:
    from postergenre.ensemble.stacker import GenreStacker

    X, _, _ = data
    meta, arrays, files = fitted.to_state()
    again = GenreStacker.from_state(meta, arrays, files)
    assert isinstance(again, GenreStacker) and again.get_params() == fitted.get_params()
    np.testing.assert_array_equal(again.predict_proba(X), fitted.predict_proba(X))
    newer = {**meta, "params": {**meta["params"], "from_the_future": 1}}
    with pytest.raises(ModelError, match="unknown parameters"):
        GenreStacker.from_state(newer, arrays, files)


def test_a_loaded_predictor_refuses_parameters_this_version_does_not_know(fitted: Any) -> None:
    from postergenre.ensemble.stacker import GenreStacker

    assert GenrePredictor.PARAMETERS == set(GenreStacker().get_params(deep=False))
    meta, arrays, files = fitted.to_state()
    newer = {**meta, "params": {**meta["params"], "from_the_future": 1}}
    with pytest.raises(ModelError, match=r"unknown parameters \['from_the_future'\]"):
        GenrePredictor.from_state(newer, arrays, files)


BAD_INPUTS = {
    "1-D": lambda d: np.zeros(d),
    "scalar": lambda d: np.float32(3.0),
    "3-D": lambda d: np.zeros((2, d, 2)),
    "no rows": lambda d: np.zeros((0, d)),
    "no columns": lambda d: np.zeros((3, 0)),
    "infinity": lambda d: np.where(np.eye(2, d) > 0, np.inf, 0.0),
    "minus infinity": lambda d: np.where(np.eye(2, d) > 0, -np.inf, 0.0),
    "too large for float32": lambda d: np.full((2, d), 1e300),
    "complex": lambda d: np.ones((2, d), dtype=complex),
    "text": lambda d: np.array([["a"] * d]),
}


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_rows_get_scikit_learns_own_messages(
    kind: str, loaded: GenrePredictor, fitted: Any
) -> None:
    from sklearn.utils.validation import check_array

    X = BAD_INPUTS[kind](loaded.n_features_in_)
    with pytest.raises((ValueError, TypeError)) as expected:
        check_array(X, dtype=np.float32, ensure_all_finite="allow-nan", accept_sparse=False)
    for model in (loaded, fitted):
        for method in (model.predict_proba, model.explain):
            with pytest.raises(expected.type) as got:
                method(X)
            assert str(got.value) == str(expected.value)


def test_sparse_rows_and_wrong_column_counts_are_named(loaded: GenrePredictor) -> None:
    sparse = pytest.importorskip("scipy.sparse")
    d = loaded.n_features_in_
    with pytest.raises(TypeError, match="Sparse data was passed, but dense data is required"):
        loaded.predict_proba(sparse.csr_matrix(np.ones((2, d))))
    with pytest.raises(
        ValueError, match=f"X has {d - 1} features, but GenreStacker is expecting {d} features"
    ):
        loaded.explain(np.zeros((2, d - 1)))
    # Lists, object arrays and NaN are fine, as check_array has them.
    rows = [[0.0] * d, [float("nan")] * d]
    np.testing.assert_array_equal(
        loaded.predict_proba(rows), loaded.predict_proba(np.array(rows, dtype=object))
    )


def test_an_empty_predictor_says_how_to_get_a_model() -> None:
    with pytest.raises(ModelError, match="holds no fitted model"):
        GenrePredictor().predict_proba(np.zeros((1, 3)))


def test_predicting_with_the_shipped_model_imports_no_sklearn_xgboost_scipy_pandas() -> None:
    if not (default_bundle_path() / "bundle.json").is_file():
        pytest.skip(f"no shipped model bundle at {default_bundle_path()}")
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from postergenre.ensemble.bundle import load_bundle

        bundle = load_bundle(None)
        rng = np.random.default_rng(0)
        X = rng.normal(size=(3, len(bundle.feature_names))).astype(np.float32)
        X[rng.random(X.shape) < 0.2] = np.nan
        proba = bundle.model.predict_proba(X)
        explanation = bundle.model.explain(X)
        print(json.dumps({{
            "heavy": [m for m in {HEAVY!r} if m in sys.modules],
            "finite": bool(np.isfinite(proba).all()),
            "exact": bool(
                np.allclose(explanation.logit, bundle.model.decision_function(X))
                and np.allclose(
                    explanation.base + explanation.contributions.sum(-1), explanation.logit
                )
                and np.allclose(proba, 1 / (1 + np.exp(-explanation.logit)))
            ),
        }}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"heavy": [], "finite": True, "exact": True}
