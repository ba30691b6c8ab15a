"""Level-0 learners of the stack, registered by name (lazy: xgboost/torch load on use).

Every base learner maps its input columns to one raw margin (log-odds) per genre. Its
state is plain JSON, numpy arrays and (for XGBoost) the booster in XGBoost's own JSON
format, so a bundle never needs pickle.

- ``xgb``: one multi-target XGBoost model on the interpretable cues (objects, faces,
  colour, GIST), trained with xgboost and run with numpy (:mod:`.trees`: same margins,
  exact TreeSHAP), so predicting needs no xgboost, scikit-learn, scipy or pandas.
  Decomposable: TreeSHAP (``pred_contribs``) splits each margin exactly per feature.
- ``mlp``: a one-hidden-layer network on the CNN embedding, trained with torch and run
  with numpy (a bundle needs no torch to predict). Not decomposable: its whole margin is
  one pseudo-cue (``cnn.embedding``).
- ``mlp_all``: the same network on every feature; pseudo-cue ``cnn.holistic``.
- ``knn``: the genre rates of the poster's nearest training posters in a compressed
  embedding (standardised, principal components, cosine similarity), run with numpy. Not
  decomposable: its margin joins the embedding's pseudo-cue (``cnn.embedding``).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from postergenre.ensemble.trees import TreeEnsemble
from postergenre.errors import ConfigError, ModelError

#: name -> "module:Class" (or a class, for tests); the one registry of base learners.
BASES: dict[str, Any] = {
    "xgb": "postergenre.ensemble.bases:XGBBase",
    "mlp": "postergenre.ensemble.bases:MLPBase",
    "mlp_all": "postergenre.ensemble.bases:MLPAllBase",
    "knn": "postergenre.ensemble.bases:KNNBase",
}

#: Which columns a base reads: ``cues`` are all but the embedding group.
INPUTS = ("cues", "embedding", "all")


def base_class(name: str) -> type[BaseLearner]:
    if name not in BASES:
        raise ConfigError(f"unknown base learner {name!r}; expected one of: {', '.join(BASES)}")
    ref = BASES[name]
    if isinstance(ref, str):
        module_name, _, class_name = ref.partition(":")
        ref = getattr(importlib.import_module(module_name), class_name)
    cls: type[BaseLearner] = ref
    return cls


def prior_logit(Y: np.ndarray, W: np.ndarray | None = None) -> np.ndarray:
    """(G,) log-odds of each genre's (weighted) frequency, smoothed so it stays finite."""
    Y = np.asarray(Y, dtype=np.float64)
    if W is None:
        p = (Y.sum(0) + 0.5) / (len(Y) + 1.0)
    else:
        W = np.asarray(W, dtype=np.float64)
        p = ((W * Y).sum(0) + 0.5) / (W.sum(0) + 1.0)
    return np.log(p / (1.0 - p))


def weight_matrix(Y: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """(n, G) per-(row, genre) loss weights from ``weights``: an (n, G) matrix as it is,
    a (G,) vector as the weight of a positive row (negatives 1), None as all ones."""
    Y = np.asarray(Y)
    if weights is None:
        return np.ones(Y.shape, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape == Y.shape:
        if not (np.isfinite(w).all() and (w >= 0).all()):
            raise ValueError("expected finite, non-negative label weights")
        return w
    if w.shape == (Y.shape[1],):
        return np.where(Y > 0, w[None, :], 1.0)
    raise ValueError(f"expected weights of shape {Y.shape} or ({Y.shape[1]},), got {w.shape}")


class BaseLearner(ABC):
    """A level-0 learner: (n, c) features -> (n, G) margins.

    ``params`` is the stacker's ``get_params()``; each base reads its own keys.
    """

    name: ClassVar[str]
    inputs: ClassVar[str] = "cues"
    decomposable: ClassVar[bool] = False
    #: The stacker parameter that sets this base's per-genre positive weighting (None:
    #: the base takes the label weights as they are).
    pos_weight_param: ClassVar[str | None] = "pos_weight"

    def __init__(self, params: Mapping[str, Any], seed: int, n_jobs: int = 1) -> None:
        self.params = dict(params)
        self.seed = int(seed)
        self.n_jobs = int(n_jobs)

    @abstractmethod
    def fit(self, X: np.ndarray, Y: np.ndarray, weights: np.ndarray | None) -> BaseLearner:
        """X (n, c) float32, Y (n, G) 0/1; ``weights`` (n, G) per-(row, genre) loss
        weights (0: the row says nothing about that genre), or (G,) the weight of a
        positive row (see :func:`weight_matrix`)."""

    def fit_selected(
        self, X: np.ndarray, Y: np.ndarray, weights: np.ndarray | None, selection: np.ndarray
    ) -> BaseLearner:
        """``fit`` for rows some of which come from collections selected on their
        first-listed genre (``selection``, see :class:`MLPBase`); a learner that cannot
        model the selection learns from the label weights alone."""
        return self.fit(X, Y, weights)

    @abstractmethod
    def margin(self, X: np.ndarray) -> np.ndarray:
        """(n, c) -> (n, G) float64 log-odds."""

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """(n, c) -> (n, G, c + 1) float64: per-feature parts of the margin, bias last."""
        raise NotImplementedError(f"base {self.name} is not decomposable")

    def reference_margin(self, n_genres: int) -> np.ndarray:
        """(G,) the margin of a typical training poster (the mean over the rows it was fitted
        on): explanations put this part of a non-decomposable base's margin in the base
        and credit its pseudo-cue only with how this poster differs from it, as TreeSHAP
        does for XGBoost. Zeros for a learner fitted before this was recorded."""
        ref = getattr(self, "reference_margin_", None)
        return np.zeros(n_genres) if ref is None else np.asarray(ref, dtype=np.float64)

    def gradient(self, X: np.ndarray) -> np.ndarray | None:
        """(n, c) -> (n, G, c) float64: d margin / d input at each row, exact; None for a
        base whose margin is piecewise constant in its inputs (trees: zero almost
        everywhere, no direction to follow)."""
        return None

    @abstractmethod
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
        """(JSON-able metadata, named arrays, named raw files) that rebuild this learner."""

    @classmethod
    @abstractmethod
    def from_state(
        cls,
        meta: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        files: Mapping[str, bytes],
        params: Mapping[str, Any],
        n_jobs: int = 1,
    ) -> BaseLearner: ...


# A column whose spread is at most this is constant (standardising it would amplify noise).
_CONSTANT_STD = 1e-6
# A kNN query code shorter than this has no direction (the poster sits at the training mean).
_NO_DIRECTION = 1e-12


def _fit_scale(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, c) -> per-column mean and scale (std; 1 where a column is constant), NaN-safe."""
    if not len(X):
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    std = np.nan_to_num(np.nanstd(X, axis=0))
    return np.nan_to_num(np.nanmean(X, axis=0)), np.where(std > _CONSTANT_STD, std, 1.0)


def _scaled(X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Standardised float64 copy of ``X``; a missing value becomes the mean (0)."""
    Z = (np.asarray(X, dtype=np.float64) - mean) / scale
    return np.nan_to_num(Z, nan=0.0, posinf=0.0, neginf=0.0)


# -- XGBoost -----------------------------------------------------------------------------
class XGBBase(BaseLearner):
    """One multi-target XGBoost model (a tree per genre per round) on the cues.

    Positive weighting per genre needs a per-(row, genre) weight, which a multi-target
    DMatrix cannot carry, so it goes through a custom logistic objective. The genre
    prior is the base margin, so trees start from the right rate even for rare genres.

    Trained with xgboost; predicted and explained by ``trees_`` (a numpy
    :class:`~postergenre.ensemble.trees.TreeEnsemble`), built from the booster's JSON
    ``model_`` both after fitting and when loading, so both predict alike (bundles saved
    before hold UBJSON, which loads alike).
    """

    name = "xgb"
    inputs = "cues"
    decomposable = True

    model_: bytes
    trees_: TreeEnsemble
    prior_: np.ndarray

    def _train_params(self, n_genres: int, custom: bool) -> dict[str, Any]:
        p = self.params
        out: dict[str, Any] = {
            "tree_method": "hist",
            "max_depth": int(p.get("xgb_max_depth", 4)),
            "eta": float(p.get("xgb_learning_rate", 0.1)),
            "subsample": float(p.get("xgb_subsample", 0.8)),
            "colsample_bytree": float(p.get("xgb_colsample", 0.5)),
            "min_child_weight": float(p.get("xgb_min_child_weight", 1.0)),
            "lambda": float(p.get("xgb_lambda", 1.0)),
            "max_bin": int(p.get("xgb_max_bin", 64)),
            "nthread": self.n_jobs,
            "seed": self.seed,
            "verbosity": 0,
        }
        if n_genres > 1:
            out["multi_strategy"] = "one_output_per_tree"
        if custom:
            out["num_target"] = n_genres
            out["base_score"] = 0.0
            out["disable_default_eval_metric"] = 1
        else:
            out["objective"] = "binary:logistic"
        return out

    def _dmatrix(self, X: np.ndarray, Y: np.ndarray | None = None) -> Any:
        import xgboost as xgb

        base = np.broadcast_to(self.prior_.astype(np.float32), (len(X), len(self.prior_)))
        label = None if Y is None else (Y if Y.shape[1] > 1 else Y[:, 0])
        bm = base if base.shape[1] > 1 else base[:, 0]
        return xgb.DMatrix(
            np.asarray(X, dtype=np.float32), label=label, base_margin=bm, nthread=self.n_jobs
        )

    def fit(self, X: np.ndarray, Y: np.ndarray, weights: np.ndarray | None) -> XGBBase:
        import xgboost as xgb

        Y = np.asarray(Y, dtype=np.float32)
        W = weight_matrix(Y, weights)
        weighted = bool(np.any(W != 1.0))
        self.prior_ = prior_logit(Y, W if weighted else None)
        dtrain = self._dmatrix(X, Y)
        obj: Callable[[np.ndarray, Any], tuple[np.ndarray, np.ndarray]] | None = None
        if weighted:
            w = W.astype(np.float32)
            G = Y.shape[1]

            def obj(predt: np.ndarray, _: Any) -> tuple[np.ndarray, np.ndarray]:
                z = predt.reshape(-1, G)
                prob = 1.0 / (1.0 + np.exp(-z))
                grad = w * (prob - Y)
                # A weight-0 cell adds nothing; its tiny hessian keeps leaf sums positive.
                hess = np.maximum(w * prob * (1.0 - prob), 1e-6)
                return grad.reshape(predt.shape), hess.reshape(predt.shape)

        booster = xgb.train(
            self._train_params(Y.shape[1], weighted),
            dtrain,
            num_boost_round=int(self.params.get("xgb_rounds", 200)),
            obj=obj,
        )
        # XGBoost's plain JSON: read with json.loads, as fast as UBJSON with our decoder
        # (a cold start of the shipped model measured within 5%), and readable by anyone.
        self._set_model(bytes(booster.save_raw(raw_format="json")))
        return self

    def _set_model(self, raw: bytes) -> None:
        trees = TreeEnsemble.from_bytes(raw)
        if trees.n_groups != len(self.prior_):
            raise ModelError(
                f"XGBoost model: {trees.n_groups} outputs for {len(self.prior_)} genres"
            )
        self.model_, self.trees_ = raw, trees

    def _base_margin(self) -> np.ndarray:
        # float32, as the DMatrix base margin the trees were trained from.
        return self.prior_.astype(np.float32)

    def margin(self, X: np.ndarray) -> np.ndarray:
        out = self.trees_.margin(X, base_margin=self._base_margin())
        return np.asarray(out, dtype=np.float64)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        return self.trees_.contributions(X, base_margin=self._base_margin())

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
        # The name says the format: XGBoost JSON from fit, or the UBJSON an older bundle
        # held (both open with "{"; JSON follows it with a quote, UBJSON with a marker).
        json_text = self.model_[:1] == b"{" and self.model_[1:2] in b'"} \t\r\n'
        name = "booster.json" if json_text else "booster.ubj"
        return {"booster": name}, {"prior": self.prior_}, {name: self.model_}

    @classmethod
    def from_state(
        cls,
        meta: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        files: Mapping[str, bytes],
        params: Mapping[str, Any],
        n_jobs: int = 1,
    ) -> XGBBase:
        self = cls(params, seed=int(params.get("random_state") or 0), n_jobs=n_jobs)
        try:
            self.prior_ = np.asarray(arrays["prior"], dtype=np.float64).reshape(-1)
            raw = bytes(files[str(meta["booster"])])
        except KeyError as exc:
            raise ModelError(f"xgb base: damaged or missing state (no {exc})") from None
        try:
            self._set_model(raw)
        except ModelError as exc:
            raise ModelError(f"xgb base: damaged state ({exc})") from None
        return self


# -- MLP ---------------------------------------------------------------------------------
def genre_order(genres: Sequence[str] | None, n_genres: int) -> np.ndarray:
    """Column indices in the order a film's genres are listed (alphabetical, as IMDb lists
    them); the column order itself when the genres are not named."""
    if genres is None or len(genres) != n_genres:
        return np.arange(n_genres)
    return np.argsort(np.asarray(list(genres), dtype=object), kind="stable").astype(np.int64)


def selection_weights(W: np.ndarray, admissible: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The loss weights of a selection-aware fit: a selected row (any True in
    ``admissible``) counts every genre listed up to its last admissible first genre with
    weight 1, since the selection term accounts for how the collection sampled them (genres
    listed before its first admissible one cancel out of the likelihood); later genres keep
    their label weights."""
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    last = np.where(admissible.any(1), np.where(admissible, rank[None, :], -1).max(1), -1)
    covered = rank[None, :] <= last[:, None]
    return np.where(covered, 1.0, W)


def selection_log_prob(torch: Any, z: Any, admissible: Any, order: Any) -> Any:
    """(b,) log P(kept | poster) from logits ``z`` (b, G): the log of the sum over a row's
    admissible first genres a of ``p_a * prod over genres listed before a of (1 - p_g)``;
    0 for a row with none (no selection). ``admissible`` is in ``order``'s order."""
    zs = z[:, order]
    ls = torch.nn.functional.logsigmoid
    absent = ls(-zs)
    before = torch.cumsum(absent, 1) - absent
    has = admissible.any(1)
    allowed = admissible | ~has[:, None]
    terms = (ls(zs) + before).masked_fill(~allowed, float("-inf"))
    return torch.logsumexp(terms, 1) * has.to(z.dtype)


class MLPBase(BaseLearner):
    """Standardise -> Linear(d, H) -> ReLU -> Dropout -> Linear(H, G), trained with torch
    (AdamW, one-cycle learning rate, weighted BCE), run with numpy at prediction time.
    ``mlp_bags`` networks with different seeds are averaged (in log-odds)."""

    name = "mlp"
    inputs = "embedding"
    decomposable = False
    pos_weight_param = "mlp_pos_weight"

    _LAYERS = ("w1", "b1", "w2", "b2")

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        weights: np.ndarray | None,
        selection: np.ndarray | None = None,
    ) -> MLPBase:
        """``selection`` (n, G) bool: for a row of a collection that kept only films whose
        first-listed genre is among its True columns, those genres (see
        :class:`~postergenre.ensemble.label_shift.FirstGenreSelection`); the row's loss is
        then the negative log of ``P(genres) / P(kept)``."""
        import torch

        W = weight_matrix(Y, weights)
        sel = None
        if selection is not None and np.asarray(selection).any():
            order = genre_order(self.params.get("genres"), Y.shape[1])
            A = np.asarray(selection, dtype=bool)
            W = selection_weights(W, A, order)
            sel = (torch.from_numpy(A[:, order]), torch.from_numpy(order))
        X = np.asarray(X, dtype=np.float64)
        self.mean_, self.scale_ = _fit_scale(X)
        Xs = torch.from_numpy(self._standardise(X))
        Yt = torch.from_numpy(np.asarray(Y, dtype=np.float32))
        Wt = torch.from_numpy(W.astype(np.float32))
        old_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, self.n_jobs))
        try:
            self.layers_ = [
                self._train_one(torch, Xs, Yt, Wt, self.seed + 7919 * k, sel)
                for k in range(max(1, int(self.params.get("mlp_bags", 1))))
            ]
        finally:
            torch.set_num_threads(old_threads)
        self.reference_margin_ = self.margin(X).mean(0) if len(X) else None
        return self

    def fit_selected(
        self, X: np.ndarray, Y: np.ndarray, weights: np.ndarray | None, selection: np.ndarray
    ) -> MLPBase:
        return self.fit(X, Y, weights, selection=selection)

    def _train_one(
        self, torch: Any, Xs: Any, Yt: Any, Wt: Any, seed: int, sel: Any = None
    ) -> dict[str, np.ndarray]:
        p = self.params
        hidden = int(p.get("mlp_hidden", 256))
        epochs = int(p.get("mlp_epochs", 8))
        batch = int(p.get("mlp_batch_size", 256))
        lr = float(p.get("mlp_learning_rate", 1e-3))
        wd = float(p.get("mlp_weight_decay", 1e-4))
        dropout = float(p.get("mlp_dropout", 0.5))
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        net = torch.nn.Sequential(
            torch.nn.Linear(Xs.shape[1], hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden, Yt.shape[1]),
        )
        # Per-(row, genre) weights: a masked genre (weight 0) gives zero loss and gradient.
        loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=wd)
        steps = max(1, epochs * ((len(Xs) + batch - 1) // batch))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
        net.train()
        for _ in range(epochs):
            order = torch.randperm(len(Xs), generator=gen)
            for start in range(0, len(Xs), batch):
                idx = order[start : start + batch]
                opt.zero_grad()
                z = net(Xs[idx])
                if sel is None:
                    loss = (loss_fn(z, Yt[idx]) * Wt[idx]).mean()
                else:
                    kept = selection_log_prob(torch, z, sel[0][idx], sel[1])
                    loss = ((loss_fn(z, Yt[idx]) * Wt[idx]).sum() + kept.sum()) / z.numel()
                loss.backward()
                opt.step()
                sched.step()
        net.eval()
        l1, l2 = net[0], net[3]
        return {
            "w1": l1.weight.detach().numpy().T.astype(np.float32).copy(),
            "b1": l1.bias.detach().numpy().astype(np.float32).copy(),
            "w2": l2.weight.detach().numpy().T.astype(np.float32).copy(),
            "b2": l2.bias.detach().numpy().astype(np.float32).copy(),
        }

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return _scaled(X, self.mean_, self.scale_).astype(np.float32)

    def margin(self, X: np.ndarray) -> np.ndarray:
        Z = self._standardise(X)
        out = np.zeros((len(Z), self.layers_[0]["b2"].shape[0]))
        for layer in self.layers_:
            h = np.maximum(Z @ layer["w1"] + layer["b1"], 0.0)
            out += h @ layer["w2"] + layer["b2"]
        return out / len(self.layers_)

    def gradient(self, X: np.ndarray) -> np.ndarray:
        """Exact, through each row's ReLU pattern: the bags' mean of
        ``w1 diag(active) w2`` over the standardisation's ``1 / scale``."""
        Z = self._standardise(X)
        out = np.zeros((len(Z), self.layers_[0]["b2"].shape[0], Z.shape[1]))
        for layer in self.layers_:
            active = (Z @ layer["w1"] + layer["b1"] > 0).astype(np.float64)  # (n, H)
            w1 = np.asarray(layer["w1"], dtype=np.float64)  # (c, H)
            w2 = np.asarray(layer["w2"], dtype=np.float64)  # (H, G)
            out += np.einsum("ch,nh,hg->ngc", w1, active, w2)
        return out / (len(self.layers_) * self.scale_)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
        arrays = {"mean": self.mean_, "scale": self.scale_}
        if getattr(self, "reference_margin_", None) is not None:
            arrays["reference_margin"] = np.asarray(self.reference_margin_)
        for k, layer in enumerate(self.layers_):
            arrays.update({f"{name}.{k}": layer[name] for name in self._LAYERS})
        return {"bags": len(self.layers_)}, arrays, {}

    @classmethod
    def from_state(
        cls,
        meta: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        files: Mapping[str, bytes],
        params: Mapping[str, Any],
        n_jobs: int = 1,
    ) -> MLPBase:
        self = cls(params, seed=int(params.get("random_state") or 0), n_jobs=n_jobs)
        bags = int(meta.get("bags", 0))
        if bags == 0 and all(n in arrays for n in cls._LAYERS):
            # A bundle from before bagging: one network, arrays without a bag suffix.
            arrays = {**arrays, **{f"{n}.0": arrays[n] for n in cls._LAYERS}}
            bags = 1
        wanted = ["mean", "scale"] + [f"{n}.{k}" for k in range(bags) for n in cls._LAYERS]
        missing = [k for k in wanted if k not in arrays]
        if bags < 1 or missing:
            raise ModelError(f"{cls.name} base: damaged state, missing arrays {missing or 'all'}")
        self.mean_ = np.asarray(arrays["mean"], dtype=np.float64)
        self.scale_ = np.asarray(arrays["scale"], dtype=np.float64)
        ref = arrays.get("reference_margin")
        self.reference_margin_ = None if ref is None else np.asarray(ref, dtype=np.float64)
        self.layers_ = [
            {n: np.asarray(arrays[f"{n}.{k}"], dtype=np.float32) for n in cls._LAYERS}
            for k in range(bags)
        ]
        d = self.mean_.shape[0]
        for layer in self.layers_:
            h = layer["w1"].shape[1]
            if layer["w1"].shape[0] != d or layer["b1"].shape != (h,) or layer["w2"].shape[0] != h:
                raise ModelError(f"{cls.name} base: damaged state, array shapes do not fit")
        return self


class MLPAllBase(MLPBase):
    """The same network on every feature (CNN embedding and cues, standardised)."""

    name = "mlp_all"
    inputs = "all"


# -- nearest neighbours ------------------------------------------------------------------
class KNNBase(BaseLearner):
    """The weighted genre rates of a poster's ``knn_neighbours`` most similar training rows.

    The embedding is standardised and projected on its first ``knn_components`` principal
    components (fitted on the training rows), each row scaled to unit length; similarity
    is the cosine. Neighbour j weighs ``exp((s_j - s_max) / knn_temperature)``, so the
    closest count most, and a genre's rate counts each neighbour by its label weight (a
    neighbour whose label is unknown for a genre, weight 0, says nothing about it), pulled
    towards the weighted training rate by ``knn_smoothing`` pseudo-rows:

        p_g = (sum_j w_j W_jg Y_jg + a * prior_g) / (sum_j w_j W_jg + a)

    The margin is logit(p_g). A memory-based learner: its state is the training rows'
    codes (float16), genres and label weights, which a bundle stores like any weights.
    Where the MLP reads a global pattern, this reads the company a poster keeps; on the
    shared posters' val split it adds 0.004 to the stack's macro AP (README). Its
    :meth:`gradient` is exact within the poster's neighbour set (which changes only where
    two similarities cross, as an MLP's ReLU pattern does), so Grad-CAM follows it too.
    """

    name = "knn"
    inputs = "embedding"
    decomposable = False
    pos_weight_param = None

    _CHUNK = 2048

    def _settings(self) -> tuple[int, int, float, float]:
        p = self.params
        return (
            int(p.get("knn_neighbours", 150)),
            int(p.get("knn_components", 128)),
            float(p.get("knn_temperature", 0.05)),
            float(p.get("knn_smoothing", 4.0)),
        )

    def fit(self, X: np.ndarray, Y: np.ndarray, weights: np.ndarray | None) -> KNNBase:
        k, dims, tau, alpha = self._settings()
        if k < 1 or dims < 1 or tau <= 0 or alpha <= 0:
            raise ConfigError(
                "knn: expected knn_neighbours >= 1, knn_components >= 1, knn_temperature > 0 "
                f"and knn_smoothing > 0, got {k}, {dims}, {tau}, {alpha}"
            )
        Y = np.asarray(Y, dtype=np.float64)
        W = weight_matrix(Y, weights)
        X = np.asarray(X, dtype=np.float64)
        self.mean_, self.scale_ = _fit_scale(X)
        Z = _scaled(X, self.mean_, self.scale_)
        # Principal axes from the covariance (d x d): cheaper than an SVD of the rows.
        cov = Z.T @ Z / max(1, len(Z) - 1)
        vals, vecs = np.linalg.eigh(cov)
        order = np.argsort(vals)[::-1][: min(dims, Z.shape[1])]
        comps = vecs[:, order].T
        # A column constant on the training rows carries no information: its centred values
        # are float noise, which the unit codes would blow up into a direction. No axis
        # reads it (an axis of a zero eigenvalue may lean on it arbitrarily otherwise).
        comps[:, np.nanstd(X, axis=0) <= _CONSTANT_STD] = 0.0
        # Fix each axis's sign so results do not depend on the LAPACK build.
        signs = np.sign(comps[np.arange(len(comps)), np.argmax(np.abs(comps), axis=1)])
        # Stored as float32 (half the bundle space); used as stored, so a loaded bundle
        # predicts exactly as the fitted learner.
        self.components_ = (comps * np.where(signs == 0, 1.0, signs)[:, None]).astype(np.float32)
        self.codes_ = self._codes(Z).astype(np.float16)
        self.labels_ = (Y > 0).astype(np.uint8)
        self.weights_ = W.astype(np.float16)
        Wsum = W.sum(0)
        self.prior_ = np.where(Wsum > 0, (W * Y).sum(0) / np.maximum(Wsum, 1e-300), 0.5)
        self.prior_ = np.clip(self.prior_, 1e-4, 1 - 1e-4)
        # A typical poster's margin, for explanations: the mean over (up to 4096 of) the
        # training rows, each scored without itself (with itself it would echo its labels).
        n = len(self.codes_)
        rows = np.arange(n)
        if n > 4096:
            rows = np.sort(np.random.default_rng(self.seed).choice(n, 4096, replace=False))
        if n > 1:
            Q = self.codes_[rows].astype(np.float32)
            self.reference_margin_ = self._margins(Q, exclude=rows).mean(0)
        else:
            self.reference_margin_ = np.log(self.prior_ / (1 - self.prior_))
        return self

    def _codes(self, Z: np.ndarray) -> np.ndarray:
        """Unit codes (float32) of standardised rows; stored as float16 for training rows,
        used at full precision for a query (so its margin is smooth in the poster)."""
        C = (Z @ self.components_.T).astype(np.float32)
        norm = np.linalg.norm(C, axis=1, keepdims=True)
        # A row at the training mean has no direction: its code is 0 (see _margins).
        return np.where(norm > _NO_DIRECTION, C / np.maximum(norm, _NO_DIRECTION), 0.0)

    def _reference(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The training rows' codes, labels and label weights as float32, made once (not
        on every call: a poster at a time, that conversion would be most of the work)."""
        ref = self.__dict__.get("_reference_f32")
        if ref is None or ref[0].shape != self.codes_.shape:
            ref = (
                self.codes_.astype(np.float32),
                self.labels_.astype(np.float32),
                self.weights_.astype(np.float32),
            )
            self._reference_f32 = ref
        return ref

    def margin(self, X: np.ndarray) -> np.ndarray:
        return self._margins(self._codes(_scaled(X, self.mean_, self.scale_)))

    def _margins(self, Q: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """(q, components) unit codes -> (q, G) margins; ``exclude`` (q,): a training row
        each query may not take as a neighbour (itself)."""
        k, _, tau, alpha = self._settings()
        R, Yr, Wr = self._reference()
        k = min(k, len(R) - (exclude is not None))
        out = np.empty((len(Q), Yr.shape[1]))
        for start in range(0, len(Q), self._CHUNK):
            sim = Q[start : start + self._CHUNK] @ R.T
            if exclude is not None:
                sim[np.arange(len(sim)), exclude[start : start + self._CHUNK]] = -np.inf
            nb = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            s = np.take_along_axis(sim, nb, axis=1)
            wt = np.exp((s - s.max(1, keepdims=True)) / tau)  # (q, k)
            w_known = Wr[nb]  # (q, k, G)
            num = np.einsum("qk,qkg->qg", wt, w_known * Yr[nb]) + alpha * self.prior_
            den = np.einsum("qk,qkg->qg", wt, w_known) + alpha
            p = np.clip(num / den, 1e-4, 1 - 1e-4)
            # A query without direction is as similar to every training row as to any
            # other: its rate is the training rate, not that of k arbitrary rows.
            p[~Q[start : start + self._CHUNK].any(axis=1)] = self.prior_
            out[start : start + self._CHUNK] = np.log(p / (1 - p))
        return out

    def gradient(self, X: np.ndarray) -> np.ndarray:
        """(n, c) -> (n, G, c): d margin / d input, exact for the poster's neighbour set.

        With the query's unit code ``q = u / |u|`` (``u``: its principal components),
        similarities ``s_j = q . r_j`` and weights ``w_j = exp((s_j - s_max) / tau)``,
        ``dw_j/dq = w_j (r_j - r_max) / tau``; ``p_g = N_g / D_g`` gives
        ``dp_g = (dN_g - p_g dD_g) / D_g`` and the margin ``dm_g = dp_g / (p_g (1 - p_g))``
        (0 where ``p_g`` is clipped); then back through ``dq/du = (I - q q^T) / |u|``, the
        components and the standardisation."""
        k, _, tau, alpha = self._settings()
        R, Yr, Wr = self._reference()
        k = min(k, len(R))
        Z = _scaled(np.asarray(X, dtype=np.float64), self.mean_, self.scale_)
        C = self.components_.astype(np.float64)  # (m, c)
        R64 = R.astype(np.float64)  # once, not per row
        out = np.zeros((len(Z), Yr.shape[1], Z.shape[1]))
        for i, z in enumerate(Z):
            u = C @ z
            norm = float(np.linalg.norm(u))
            if not norm > _NO_DIRECTION:
                continue  # no direction: the training rate, flat in the poster
            q = u / norm
            sim = R64 @ q
            nb = np.argpartition(-sim, k - 1)[:k]
            s = sim[nb]
            top = int(np.argmax(s))
            w = np.exp((s - s[top]) / tau)  # (k,)
            r = R64[nb]  # (k, m)
            a = (Wr[nb] * Yr[nb]).astype(np.float64)  # (k, G)
            b = Wr[nb].astype(np.float64)
            num = w @ a + alpha * self.prior_
            den = w @ b + alpha
            p = num / den
            dw = (w[:, None] / tau) * (r - r[top])  # (k, m): d w_j / d q
            dp = (a.T @ dw - p[:, None] * (b.T @ dw)) / den[:, None]  # (G, m)
            inside = (p > 1e-4) & (p < 1 - 1e-4)
            dm_dq = np.where(inside[:, None], dp / (p * (1 - p))[:, None], 0.0)
            dm_du = (dm_dq - (dm_dq @ q)[:, None] * q[None, :]) / norm  # (G, m)
            out[i] = (dm_du @ C) / self.scale_
        return out

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
        arrays = {
            "mean": self.mean_,
            "scale": self.scale_,
            "components": self.components_,
            "codes": self.codes_,
            "labels": self.labels_,
            "weights": self.weights_,
            "prior": self.prior_,
            "reference_margin": np.asarray(self.reference_margin_, dtype=np.float64),
        }
        return {"rows": int(len(self.codes_))}, arrays, {}

    @classmethod
    def from_state(
        cls,
        meta: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        files: Mapping[str, bytes],
        params: Mapping[str, Any],
        n_jobs: int = 1,
    ) -> KNNBase:
        wanted = (
            "mean", "scale", "components", "codes", "labels", "weights", "prior",
            "reference_margin",
        )  # fmt: skip
        missing = [k for k in wanted if k not in arrays]
        if missing:
            raise ModelError(f"{cls.name} base: damaged state, missing arrays {missing}")
        self = cls(params, seed=int(params.get("random_state") or 0), n_jobs=n_jobs)
        self.mean_ = np.asarray(arrays["mean"], dtype=np.float64)
        self.scale_ = np.asarray(arrays["scale"], dtype=np.float64)
        self.components_ = np.asarray(arrays["components"], dtype=np.float32)
        self.codes_ = np.asarray(arrays["codes"], dtype=np.float16)
        self.labels_ = np.asarray(arrays["labels"], dtype=np.uint8)
        self.weights_ = np.asarray(arrays["weights"], dtype=np.float16)
        self.prior_ = np.asarray(arrays["prior"], dtype=np.float64)
        self.reference_margin_ = np.asarray(arrays["reference_margin"], dtype=np.float64)
        n, G = self.labels_.shape
        d = self.mean_.shape[0]
        if (
            self.components_.shape[1] != d
            or self.codes_.shape != (n, self.components_.shape[0])
            or self.weights_.shape != (n, G)
            or self.prior_.shape != (G,)
            or self.reference_margin_.shape != (G,)
            or int(meta.get("rows", n)) != n
        ):
            raise ModelError(f"{cls.name} base: damaged state, array shapes do not fit")
        return self
