"""The numpy XGBoost evaluator: margins and TreeSHAP equal xgboost's; UBJSON decoding."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from postergenre.ensemble.trees import TreeEnsemble, read_model, read_ubjson
from postergenre.errors import ModelError

xgb = pytest.importorskip("xgboost")

N_FEATURES = 7


def _rows(n: int, seed: int) -> np.ndarray:
    """Gaussian rows with 20% NaNs; column 3 rounded (ties with split thresholds)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    X[:, 3] = np.round(X[:, 3])
    X[rng.random(X.shape) < 0.2] = np.nan
    return X


def _train(
    n_targets: int, custom: bool, depth: int, rounds: int = 12, seed: int = 0
) -> tuple[Any, np.ndarray, np.ndarray]:
    """(booster, base margin (G,), training rows): a small model trained like XGBBase,
    with a custom logistic objective (``custom``) or binary:logistic."""
    rng = np.random.default_rng(seed)
    X = _rows(300, seed)
    signal = np.nan_to_num(X[:, :n_targets]) + 0.5 * np.nan_to_num(X[:, 3:4])
    Y = (signal + rng.normal(size=signal.shape) > 0.3).astype(np.float32)
    base = rng.normal(size=n_targets).astype(np.float32)
    margin = np.broadcast_to(base, (len(X), n_targets))
    dtrain = xgb.DMatrix(
        X,
        label=Y if n_targets > 1 else Y[:, 0],
        base_margin=margin if n_targets > 1 else margin[:, 0],
    )
    params: dict[str, Any] = {
        "tree_method": "hist",
        "max_depth": depth,
        "eta": 0.3,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "max_bin": 16,
        "nthread": 1,
        "seed": seed,
        "verbosity": 0,
    }
    if n_targets > 1:
        params["multi_strategy"] = "one_output_per_tree"
    obj: Callable[[np.ndarray, Any], tuple[np.ndarray, np.ndarray]] | None = None
    if custom:
        params.update(num_target=n_targets, base_score=0.0, disable_default_eval_metric=1)

        def obj(predt: np.ndarray, _: Any) -> tuple[np.ndarray, np.ndarray]:
            p = 1.0 / (1.0 + np.exp(-predt.reshape(-1, n_targets)))
            grad, hess = 2.0 * (p - Y), 2.0 * np.maximum(p * (1.0 - p), 1e-6)
            return grad.reshape(predt.shape), hess.reshape(predt.shape)
    else:
        params["objective"] = "binary:logistic"
    booster = xgb.train(params, dtrain, num_boost_round=rounds, obj=obj)
    return booster, base, X


def _xgb_predict(booster: Any, X: np.ndarray, base: np.ndarray | None, **kw: Any) -> np.ndarray:
    G = int(json.loads(booster.save_config())["learner"]["learner_model_param"]["num_target"])
    margin = None if base is None else np.broadcast_to(base, (len(X), G))
    if margin is not None and G == 1:
        margin = margin[:, 0]
    out = booster.predict(xgb.DMatrix(X, base_margin=margin), **kw)
    return np.asarray(out).reshape(len(X), G, -1)


MODELS = [
    pytest.param(3, True, 4, id="3 targets, custom objective (XGBBase weighted)"),
    pytest.param(4, False, 3, id="4 targets, binary:logistic (XGBBase unweighted)"),
    pytest.param(1, False, 5, id="1 target"),
    pytest.param(2, True, 6, id="2 targets, deep trees"),
]


@pytest.mark.parametrize(("n_targets", "custom", "depth"), MODELS)
def test_margins_and_contributions_equal_xgboosts(n_targets: int, custom: bool, depth: int) -> None:
    booster, base, X_train = _train(n_targets, custom, depth)
    trees = TreeEnsemble.from_bytes(bytes(booster.save_raw("ubj")))
    X = np.concatenate([X_train[:40], _rows(160, seed=9)])
    X[0] = np.nan  # a row with nothing known follows every default direction

    margin = trees.margin(X, base_margin=base)
    want = _xgb_predict(booster, X, base, output_margin=True)[:, :, 0]
    np.testing.assert_allclose(margin, want, rtol=0, atol=1e-5)

    contrib = trees.contributions(X, base_margin=base)
    want_c = _xgb_predict(booster, X, base, pred_contribs=True)
    assert contrib.shape == (len(X), n_targets, N_FEATURES + 1) == want_c.shape
    np.testing.assert_allclose(contrib, want_c, rtol=0, atol=1e-4)
    # Local accuracy: the parts add up to the margin.
    np.testing.assert_allclose(contrib.sum(-1), margin, rtol=0, atol=1e-5)

    # Without a base margin, XGBoost starts from base_score (a probability when logistic).
    np.testing.assert_allclose(
        trees.margin(X), _xgb_predict(booster, X, None, output_margin=True)[:, :, 0], atol=1e-5
    )
    np.testing.assert_allclose(
        trees.contributions(X), _xgb_predict(booster, X, None, pred_contribs=True), atol=1e-4
    )


def test_contributions_are_not_trivially_zero_and_follow_missing_values() -> None:
    booster, base, _ = _train(2, True, 4)
    trees = TreeEnsemble.from_bytes(bytes(booster.save_raw("ubj")))
    X = _rows(50, seed=4)
    contrib = trees.contributions(X, base_margin=base)
    assert np.abs(contrib[:, :, :-1]).max() > 0.05
    # A feature that is missing on a row still gets a share (its default direction
    # matters), exactly as xgboost gives it.
    missing = np.isnan(X)
    got = np.abs(contrib[:, :, :-1]).sum(1)[missing]
    want = np.abs(_xgb_predict(booster, X, base, pred_contribs=True)[:, :, :-1]).sum(1)[missing]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_json_and_ubjson_models_give_the_same_ensemble() -> None:
    booster, base, X = _train(3, True, 4)
    from_ubj = TreeEnsemble.from_bytes(bytes(booster.save_raw("ubj")))
    from_json = TreeEnsemble.from_bytes(bytes(booster.save_raw("json")))
    np.testing.assert_array_equal(from_ubj.margin(X, base), from_json.margin(X, base))
    np.testing.assert_array_equal(from_ubj.contributions(X, base), from_json.contributions(X, base))


def _assert_same(decoded: Any, parsed: Any, path: str = "$") -> None:
    """UBJSON-decoded data equals json.loads' (typed arrays compared as arrays)."""
    if isinstance(parsed, dict):
        assert isinstance(decoded, dict) and list(decoded) == list(parsed), path
        for k in parsed:
            _assert_same(decoded[k], parsed[k], f"{path}.{k}")
    elif isinstance(decoded, np.ndarray):
        assert isinstance(parsed, list), path
        np.testing.assert_array_equal(decoded, np.asarray(parsed, dtype=decoded.dtype), path)
    elif isinstance(parsed, list):
        assert isinstance(decoded, list) and len(decoded) == len(parsed), path
        for i, (d, p) in enumerate(zip(decoded, parsed, strict=True)):
            _assert_same(d, p, f"{path}[{i}]")
    else:
        assert type(decoded) is type(parsed) and decoded == parsed, (path, decoded, parsed)


def test_ubjson_of_a_booster_decodes_to_its_json() -> None:
    booster, _, _ = _train(3, False, 3, rounds=4)
    decoded = read_ubjson(bytes(booster.save_raw("ubj")))
    parsed = json.loads(bytes(booster.save_raw("json")))
    _assert_same(decoded, parsed)
    trees = decoded["learner"]["gradient_booster"]["model"]["trees"]
    # Typed arrays come back as stored: big-endian float32, no copy.
    assert len(trees) == 12 and trees[0]["split_conditions"].dtype == np.dtype(">f4")
    assert read_model(bytes(booster.save_raw("json"))) == parsed


def _L(n: int) -> bytes:
    return b"L" + struct.pack(">q", n)


def _key(name: str) -> bytes:
    return b"i" + struct.pack(">b", len(name)) + name.encode()


def test_ubjson_decoder_reads_every_marker_and_container_form() -> None:
    doc = (
        b"{"
        + _key("ints")
        + b"[i\xffU\xffI"
        + struct.pack(">h", -300)
        + b"l"
        + struct.pack(">i", 70000)
        + _L(-(2**40))
        + b"]"
        + _key("floats")
        + b"[#i\x02d"
        + struct.pack(">f", 0.5)
        + b"D"
        + struct.pack(">d", 0.1)
        + _key("typed")
        + b"[$d#i\x03"
        + struct.pack(">3f", 1.0, -2.5, 3.25)
        + _key("text")
        + b"SU\x05h\xc3\xa9ll"
        + _key("misc")
        + b"[TFZCx"
        + b"NN"
        + b"Hi\x0212]"
        + _key("typed_obj")
        + b"{$i#i\x02"
        + _key("a")
        + b"\x01"
        + _key("b")
        + b"\x02"
        + _key("nested")
        + b"{"
        + _key("empty")
        + b"[]"
        + _key("empty_typed")
        + b"[$l#i\x00}"
        + b"}"
    )
    out = read_ubjson(doc)
    assert out["ints"] == [-1, 255, -300, 70000, -(2**40)]
    assert out["floats"] == [0.5, 0.1]
    np.testing.assert_array_equal(out["typed"], np.array([1.0, -2.5, 3.25], dtype=np.float32))
    assert out["text"] == "héll"
    assert out["misc"] == [True, False, None, "x", 12]
    assert out["typed_obj"] == {"a": 1, "b": 2}
    assert out["nested"]["empty"] == [] and len(out["nested"]["empty_typed"]) == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[$d#i\x04" + struct.pack(">3f", 1, 2, 3), "malformed or truncated"),
        (b"[i\x01", "malformed or truncated"),
        (b"{i\x05ab", "malformed or truncated"),
        (b"[$d#i\xff", "does not fit"),
        (b"[i\x01]i\x02", "bytes after the value"),
        (b"[Q]", "unknown marker"),
        (b"", "malformed or truncated"),
        (b"[" * 100_000, "malformed|nested too deep"),
    ],
    ids=[
        "short typed array",
        "unclosed",
        "short key",
        "negative count",
        "trailing",
        "marker",
        "empty",
        "deep",
    ],
)
def test_malformed_ubjson_is_a_model_error(data: bytes, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        read_ubjson(data)


def test_models_it_cannot_evaluate_are_refused_clearly() -> None:
    X = _rows(100, 1)
    Y = (np.nan_to_num(X[:, :2]) > 0).astype(np.float32)
    dart = xgb.train(
        {"booster": "dart", "max_depth": 2, "nthread": 1, "verbosity": 0},
        xgb.DMatrix(X, label=Y[:, 0]),
        2,
    )
    with pytest.raises(ModelError, match="booster 'dart' is not supported"):
        TreeEnsemble.from_bytes(bytes(dart.save_raw("ubj")))
    vector = xgb.train(
        {"multi_strategy": "multi_output_tree", "tree_method": "hist", "max_depth": 2},
        xgb.DMatrix(X, label=Y),
        2,
    )
    with pytest.raises(ModelError, match="vector leaves"):
        TreeEnsemble.from_bytes(bytes(vector.save_raw("ubj")))
    with pytest.raises(ModelError, match="damaged"):
        TreeEnsemble.from_model({"learner": {}})


def test_wrong_shapes_are_value_errors() -> None:
    booster, base, X = _train(2, True, 3, rounds=2)
    trees = TreeEnsemble.from_bytes(bytes(booster.save_raw("ubj")))
    with pytest.raises(ValueError, match=r"expected X of shape \(n, 7\)"):
        trees.margin(X[:, :5])
    with pytest.raises(ValueError, match="base_margin"):
        trees.contributions(X, base_margin=np.zeros(3))


def test_xgb_base_predicts_like_its_booster_fitted_and_loaded() -> None:
    from postergenre.ensemble.bases import XGBBase

    X = _rows(240, 5)
    rng = np.random.default_rng(5)
    Y = (np.nan_to_num(X[:, :3]) + rng.normal(size=(240, 3)) > 0.5).astype(np.uint8)
    params = {"xgb_rounds": 10, "xgb_max_depth": 3}
    for pos_weight in (np.ones(3), np.array([1.0, 2.0, 3.0])):  # objective: built-in, custom
        base = XGBBase(params, seed=1, n_jobs=1).fit(X, Y, pos_weight)
        booster = xgb.Booster(model_file=bytearray(base.model_))
        prior = base.prior_.astype(np.float32)
        want = _xgb_predict(booster, X, prior, output_margin=True)[:, :, 0]
        np.testing.assert_allclose(base.margin(X), want, rtol=0, atol=1e-5)
        want_c = _xgb_predict(booster, X, prior, pred_contribs=True)
        np.testing.assert_allclose(base.contributions(X), want_c, rtol=0, atol=1e-4)
        meta, arrays, files = base.state()
        loaded = XGBBase.from_state(meta, arrays, files, params)
        np.testing.assert_array_equal(loaded.margin(X), base.margin(X))
        np.testing.assert_array_equal(loaded.contributions(X), base.contributions(X))


def test_damaged_xgb_state_is_a_model_error() -> None:
    from postergenre.ensemble.bases import XGBBase

    booster, _, _ = _train(2, True, 3, rounds=2)
    raw = bytes(booster.save_raw("ubj"))
    good = {"prior": np.zeros(2)}
    with pytest.raises(ModelError, match="xgb base"):
        XGBBase.from_state({"booster": "b.ubj"}, good, {"b.ubj": raw[:-40]}, {})
    with pytest.raises(ModelError, match="2 outputs for 3 genres"):
        XGBBase.from_state({"booster": "b.ubj"}, {"prior": np.zeros(3)}, {"b.ubj": raw}, {})
    with pytest.raises(ModelError, match="missing state"):
        XGBBase.from_state({"booster": "b.ubj"}, good, {}, {})
