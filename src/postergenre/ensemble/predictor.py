"""GenrePredictor: a fitted stacked genre model, for prediction and explanation.

Level 0: base learners map their input columns to one margin (log-odds) per genre.
Level 1: per-genre logistic regression over those margins, so explanations are exact
(see :mod:`postergenre.ensemble.explain`).

numpy only. :func:`postergenre.ensemble.bundle.load_bundle` gives a GenrePredictor, and
predicting or explaining with it imports neither scikit-learn nor xgboost (nor scipy or
pandas, which they bring): about a second of a cold start.
:class:`~postergenre.ensemble.stacker.GenreStacker`, the scikit-learn estimator that
trains the stack, derives from it and adds parameters, ``fit`` and tags.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from postergenre.ensemble.bases import BaseLearner, base_class
from postergenre.ensemble.explain import Explanation
from postergenre.ensemble.genre_sets import GENRE_SETS_CUE
from postergenre.ensemble.metrics import decide
from postergenre.errors import ModelError

if TYPE_CHECKING:
    from postergenre.ensemble.concept_credit import ConceptCredit
    from postergenre.ensemble.genre_sets import GenreSets
    from postergenre.ensemble.projection import CollectionProjection

#: Pseudo-cues of bases that cannot be split per feature: the MLP on the CNN embedding,
#: and the MLP on every feature (the whole poster's look, CNN embedding first of all).
EMBEDDING_SUFFIX = ".embedding"
HOLISTIC_SUFFIX = ".holistic"

_RESHAPE = (
    "Reshape your data either using array.reshape(-1, 1) if your data has a single "
    "feature or array.reshape(1, -1) if it contains a single sample."
)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def check_rows(X: Any, n_features: int, who: str = "GenreStacker") -> np.ndarray:
    """X -> (n, n_features) float32 rows to predict; NaN (missing) allowed.

    Raises what scikit-learn's ``check_array`` raises, with its messages, for sparse,
    complex, non-2-D, empty or infinite input, and then, for a wrong column count,
    "X has N features, but GenreStacker is expecting M features as input".
    """
    if hasattr(X, "toarray") and hasattr(X, "nnz"):  # scipy.sparse, without importing it
        raise TypeError(
            "Sparse data was passed, but dense data is required. Use '.toarray()' to "
            "convert to a dense numpy array."
        )
    arr = np.asarray(X)
    if arr.dtype.kind == "c":
        raise ValueError(f"Complex data not supported\n{arr}\n")
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim < 2:
        kind = "scalar" if arr.ndim == 0 else "1D"
        raise ValueError(f"Expected 2D array, got {kind} array instead:\narray={arr}.\n{_RESHAPE}")
    if arr.ndim > 2:
        raise ValueError(f"Found array with dim {arr.ndim}, while dim <= 2 is required.")
    if arr.shape[0] < 1:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={arr.shape}) while a minimum of 1 is required."
        )
    if arr.shape[1] < 1:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required."
        )
    if np.isinf(arr).any():
        raise ValueError("Input contains infinity or a value too large for dtype('float32').")
    if arr.shape[1] != n_features:
        raise ValueError(
            f"X has {arr.shape[1]} features, but {who} is expecting {n_features} features as input"
        )
    return arr


class GenrePredictor:
    """A fitted stacked multi-label genre model: probabilities, decisions, explanations.

    Made by :meth:`from_state` (bundles) or by fitting a
    :class:`~postergenre.ensemble.stacker.GenreStacker`. Fitted attributes:
    ``n_features_in_``, ``feature_names_in_`` (d,), ``genres_`` (G,), ``bases_`` (B
    level-0 learners), ``base_names_``, ``base_columns_`` (the input columns of each),
    ``meta_coef_`` (G, B*G), ``meta_intercept_`` (G,), ``thresholds_`` (G,),
    ``threshold_source_`` and ``prevalence_`` (G,). Parameters it reads, as GenreStacker
    names them: ``embedding_prefix``, ``min_genres``, ``threshold_objective``, ``n_jobs``.
    """

    #: Every parameter a bundle may record: GenreStacker's constructor arguments (a test
    #: keeps the two equal). A bundle naming another was made by a different postergenre,
    #: whose model may not mean what this one would compute, so it is refused.
    PARAMETERS: ClassVar[frozenset[str]] = frozenset(
        {
            "balance", "balance_cap", "balance_max_repeat", "bases", "collection_directions",
            "embedding_prefix", "feature_names", "genres", "knn_components", "knn_neighbours",
            "knn_smoothing", "knn_temperature", "meta_C", "meta_inputs", "min_genres", "mlp_bags",
            "mlp_batch_size", "mlp_dropout", "mlp_epochs", "mlp_hidden", "mlp_learning_rate",
            "mlp_pos_weight", "mlp_weight_decay", "n_folds", "n_jobs", "pos_weight",
            "random_state", "selection_in", "threshold_objective", "xgb_colsample", "xgb_lambda",
            "xgb_learning_rate", "xgb_max_bin", "xgb_max_depth", "xgb_min_child_weight",
            "xgb_rounds", "xgb_subsample",
        }
    )  # fmt: skip

    #: Values of the parameters read here for a bundle made before the parameter
    #: existed: what such a bundle's model did (and what loading one always gave).
    LEGACY_PARAMS: ClassVar[Mapping[str, Any]] = {
        "embedding_prefix": "cnn",
        "min_genres": 1,
        "threshold_objective": "micro",
        "n_jobs": None,
    }

    feature_names: Sequence[str] | None
    genres: Sequence[str] | None
    embedding_prefix: str
    min_genres: int
    threshold_objective: str
    n_jobs: int | None
    _params: dict[str, Any]

    n_features_in_: int
    feature_names_in_: np.ndarray
    genres_: list[str]
    classes_: np.ndarray
    bases_: list[BaseLearner]
    base_names_: list[str]
    base_columns_: list[np.ndarray]
    meta_coef_: np.ndarray
    meta_intercept_: np.ndarray
    thresholds_: np.ndarray
    threshold_source_: str
    prevalence_: np.ndarray
    #: (G,) genre shares the probabilities refer to (absent in older bundles).
    reference_prior_: np.ndarray
    #: How the training labels were weighted by collection (None: not at all).
    label_weights_: dict[str, Any] | None
    concept_credit_: ConceptCredit | None
    #: The collection directions taken out of the embedding (None: none).
    projection_: CollectionProjection | None
    #: The genre combinations the probabilities are conditioned on (None: genres independent).
    genre_sets_: GenreSets | None

    def _n_jobs(self) -> int:
        return int(self.n_jobs) if self.n_jobs else max(1, os.cpu_count() or 1)

    def _check_fitted(self) -> None:
        if not hasattr(self, "meta_coef_"):
            raise ModelError(
                f"this {type(self).__name__} holds no fitted model",
                hint="get one from load_bundle, or fit a GenreStacker",
            )

    def _check_X(self, X: Any, fitting: bool = False) -> np.ndarray:
        return self._projected(check_rows(X, self.n_features_in_))

    def _projected(self, X: np.ndarray) -> np.ndarray:
        """``X`` with the collection directions taken out of the embedding (see
        :mod:`~postergenre.ensemble.projection`), as every base was trained on; the map
        is idempotent, so rows that went through it already come out the same."""
        projection = getattr(self, "projection_", None)
        return X if projection is None else projection.apply(X)

    @property
    def reference_prior(self) -> np.ndarray:
        """(G,) the genre shares the probabilities refer to: the reference prior the labels
        were weighted towards (the training prevalence for models trained without one)."""
        ref = getattr(self, "reference_prior_", None)
        return np.asarray(self.prevalence_ if ref is None else ref, dtype=np.float64)

    def adapted(self, target: Any) -> Self:
        """A copy whose probabilities and thresholds refer to the genre shares ``target``
        ((G,) array, or a mapping genre -> share) instead of :attr:`reference_prior`.

        The standard label-shift correction: each genre's log-odds move by
        ``logit(target) - logit(reference)``, added to the meta intercept (explanations
        stay exact: the shift is part of the bias), and each threshold moves alike, so
        a poster's decision changes only through the prior. A mapping may name only the
        genres whose share is known (say Documentary at 0.4): the others keep their
        reference share, so their probabilities do not move; names that are not genres
        of the model are ignored, but a mapping that names none of them is refused.

        A model conditioned on genre combinations (:attr:`genre_sets_`) shifts the
        log-odds before conditioning, which is the same correction for whole genre sets
        (each set's odds times the product of its genres' prior ratios); there the other
        genres move too, but only through the combinations they form with the named ones,
        and the thresholds' shift is the per-genre approximation.
        """
        import copy

        from postergenre.ensemble.label_shift import adapt_to_prior, prior_shift

        self._check_fitted()
        if isinstance(target, Mapping):
            if not any(g in target for g in self.genres_):
                named = ", ".join(sorted(map(str, target))[:6]) or "nothing"
                raise ModelError(
                    f"genre prior: names none of the model's genres (it names {named})",
                    hint=f"the model's genres: {', '.join(self.genres_)}",
                )
            ref = self.reference_prior
            target = [
                float(target[g]) if g in target else float(ref[j])
                for j, g in enumerate(self.genres_)
            ]
        t = np.asarray(target, dtype=np.float64).reshape(-1)
        if t.shape != (len(self.genres_),) or not ((t > 0) & (t < 1)).all():
            raise ModelError(
                f"genre prior: expected {len(self.genres_)} shares strictly between 0 and 1"
            )
        src = self.reference_prior
        out = copy.copy(self)
        out.meta_intercept_ = self.meta_intercept_ + prior_shift(src, t)
        never = self.thresholds_ > 1.0
        out.thresholds_ = np.where(
            never, self.thresholds_, adapt_to_prior(self.thresholds_, src, t)
        )
        out.reference_prior_ = t
        return out

    # -- prediction -----------------------------------------------------------------------
    def base_margins(self, X: Any) -> np.ndarray:
        """(n, d) -> (n, B, G) level-0 margins of the bases fitted on all rows."""
        self._check_fitted()
        X = self._check_X(X, fitting=False)
        return np.stack(
            [m.margin(X[:, cols]) for m, cols in zip(self.bases_, self.base_columns_, strict=True)],
            axis=1,
        )

    def meta_log_odds(self, X: Any) -> np.ndarray:
        """(n, d) -> (n, G) the meta-learner's log-odds of each genre, each on its own
        (before any conditioning on genre combinations)."""
        M = self.base_margins(X)
        return M.reshape(len(M), -1) @ self.meta_coef_.T + self.meta_intercept_

    def decision_function(self, X: Any) -> np.ndarray:
        """(n, d) -> (n, G) log-odds of each genre: the meta-learner's, conditioned on the
        genre combinations films have where the model holds them (see
        :mod:`~postergenre.ensemble.genre_sets`)."""
        return self._conditioned(self.meta_log_odds(X))

    def _conditioned(self, z: np.ndarray) -> np.ndarray:
        sets = getattr(self, "genre_sets_", None)
        return z if sets is None else sets.log_odds(z)

    def predict_proba(self, X: Any) -> np.ndarray:
        """(n, d) -> (n, G) probability of each genre (positive class)."""
        return _sigmoid(self.decision_function(X))

    def predict(self, X: Any) -> np.ndarray:
        """(n, d) -> (n, G) 0/1 genres: probability >= the genre's threshold, and at
        least ``min_genres`` genres per poster."""
        return self.decide(self.predict_proba(X)).astype(np.int64)

    # -- explanation ------------------------------------------------------------------------
    # The public interface explanations use (analysis, cards, a server): ``explain`` (what
    # each cue contributes), ``logit_gradient`` (Grad-CAM's direction) and ``decide``.
    @property
    def meta_weights(self) -> np.ndarray:
        """(G, B, G) the meta weights as [genre, base, base output]: genre g's log-odds are
        ``intercept[g] + sum_b W[g, b] @ margin_b``."""
        self._check_fitted()
        G = len(self.genres_)
        return np.asarray(self.meta_coef_, dtype=np.float64).reshape(G, len(self.bases_), G)

    def decide(
        self, proba: Any, thresholds: Any = None, min_genres: int | None = None
    ) -> np.ndarray:
        """(n, G) probabilities -> (n, G) bool predicted genres: the model's rule (its
        thresholds unless ``thresholds`` is given, (G,) or a scalar; at least
        ``min_genres`` per poster, the model's own unless given: 0 turns the rule off),
        the same :func:`~postergenre.ensemble.metrics.decide` that :meth:`predict` and
        evaluation use.

        A genre whose threshold is above 1 (one no training poster had) is never
        predicted, not even to make up ``min_genres``: that comes from the other genres.
        """
        self._check_fitted()
        thr = self.thresholds_ if thresholds is None else thresholds
        thr = np.broadcast_to(np.asarray(thr, dtype=np.float64), (len(self.genres_),))
        k = int(self.min_genres) if min_genres is None else int(min_genres)
        if k < 0:
            raise ValueError(f"min_genres: expected >= 0, got {k}")
        return decide(np.asarray(proba, dtype=np.float64), thr, k)

    def logit_gradient(self, X: Any) -> np.ndarray | None:
        """(n, d) -> (n, G, d) float64: the exact gradient of each genre's log-odds with
        respect to each input column, or None when no base is differentiable.

        The meta level is linear in the base margins, so this is the meta-weighted sum of
        each base's :meth:`~postergenre.ensemble.bases.BaseLearner.gradient`; tree bases
        are piecewise constant and add nothing. Conditioning on genre combinations mixes
        the genres' log-odds: its Jacobian carries the meta level's gradient through.
        """
        self._check_fitted()
        X = self._check_X(X, fitting=False)
        W = self.meta_weights
        out = np.zeros((len(X), len(self.genres_), X.shape[1]))
        found = False
        for b, (model, cols) in enumerate(zip(self.bases_, self.base_columns_, strict=True)):
            grad = model.gradient(X[:, cols])  # (n, G_out, c)
            if grad is None:
                continue
            found = True
            out[:, :, cols] += np.einsum("nhc,gh->ngc", grad, W[:, b, :])
        sets = getattr(self, "genre_sets_", None)
        if found and sets is not None:
            out = np.einsum("ngh,nhc->ngc", sets.jacobian(self.meta_log_odds(X)), out)
        projection = getattr(self, "projection_", None)
        if found and projection is not None:
            out = projection.pull_back(out)  # the bases saw the projected embedding
        return out if found else None

    @property
    def cue_names_(self) -> list[str]:
        """Names of the explanation's cues: decomposable bases' features, then a pseudo-cue
        per non-decomposable base."""
        self._check_fitted()
        names: list[str] = []
        seen: set[str] = set()
        for model, cols in zip(self.bases_, self.base_columns_, strict=True):
            if model.decomposable:
                for j in cols:
                    n = str(self.feature_names_in_[j])
                    if n not in seen:
                        seen.add(n)
                        names.append(n)
        credit = getattr(self, "concept_credit_", None)
        for n in credit.columns if credit is not None else ():
            if n not in seen:
                seen.add(n)
                names.append(n)
        for model in self.bases_:
            if not model.decomposable:
                n = self._pseudo_cue(model)
                if n not in seen:
                    seen.add(n)
                    names.append(n)
        if getattr(self, "genre_sets_", None) is not None:
            names.append(GENRE_SETS_CUE)
        return names

    def _pseudo_cue(self, model: BaseLearner) -> str:
        if model.inputs == "embedding":
            return self.embedding_prefix + EMBEDDING_SUFFIX
        if model.inputs == "all":
            return self.embedding_prefix + HOLISTIC_SUFFIX
        return f"{model.name}.margin"

    def explain(self, X: Any) -> Explanation:
        """Exact additive explanation of the log-odds of every genre (see ``explain.py``)."""
        self._check_fitted()
        X = self._check_X(X, fitting=False)
        n, G = len(X), len(self.genres_)
        cue_names = self.cue_names_
        index = {c: i for i, c in enumerate(cue_names)}
        position = {str(c): j for j, c in enumerate(self.feature_names_in_)}
        W = self.meta_weights
        base = np.broadcast_to(self.meta_intercept_, (n, G)).copy()
        contrib = np.zeros((n, G, len(cue_names)))
        logit = base.copy()
        for b, (model, cols) in enumerate(zip(self.bases_, self.base_columns_, strict=True)):
            Xb = X[:, cols]
            if model.decomposable:
                parts = model.contributions(Xb)  # (n, G_out, c + 1), bias last
                mapped = np.einsum("nhc,gh->ngc", parts, W[:, b, :])
                # A base's columns have distinct names, so no cue index repeats here.
                idx = np.array([index[str(self.feature_names_in_[j])] for j in cols], dtype=int)
                contrib[:, :, idx] += mapped[:, :, :-1]
                base += mapped[:, :, -1]
                margin = parts.sum(-1)
            else:
                margin = model.margin(Xb)
                ref = model.reference_margin(margin.shape[1])
                own = (margin - ref) @ W[:, b, :].T
                credit = getattr(self, "concept_credit_", None)
                if credit is not None and credit.base == b:
                    # The part of the embedding's say that the named concepts account for
                    # (see concept_credit.py); the residual stays with the embedding cue.
                    idx = np.array([index[c] for c in credit.columns], dtype=int)
                    cols_c = np.array([position[c] for c in credit.columns], dtype=int)
                    mapped = np.einsum("nhc,gh->ngc", credit.parts(X[:, cols_c]), W[:, b, :])
                    contrib[:, :, idx] += mapped
                    own = own - mapped.sum(-1)
                contrib[:, :, index[self._pseudo_cue(model)]] += own
                base += ref @ W[:, b, :].T
            logit += margin @ W[:, b, :].T
        if getattr(self, "genre_sets_", None) is not None:
            # What conditioning on genre combinations did to each genre's log-odds: a cue
            # of its own, so the cues still add up to the probability shown.
            conditioned = self._conditioned(logit)
            contrib[:, :, index[GENRE_SETS_CUE]] = conditioned - logit
            logit = conditioned
        return Explanation(
            base=base,
            contributions=contrib,
            cue_names=cue_names,
            logit=logit,
            genres=list(self.genres_),
        )

    def fit_concept_credit(self, X: Any) -> Self:
        """Fit :class:`~postergenre.ensemble.concept_credit.ConceptCredit` on the training
        rows ``X`` (n, d): how much of the embedding base's margin the named concepts
        account for, credited to them in :meth:`explain`. Predictions do not change.
        None (no credit) without concept columns or an embedding base."""
        from postergenre.ensemble.concept_credit import fit_concept_credit

        self._check_fitted()
        X = self._check_X(X, fitting=False)
        self.concept_credit_ = None
        for b, (model, cols) in enumerate(zip(self.bases_, self.base_columns_, strict=True)):
            if not model.decomposable and model.inputs == "embedding":
                self.concept_credit_ = fit_concept_credit(
                    model.margin(X[:, cols]), X, list(self.feature_names_in_), b
                )
                break
        return self

    # -- persistence (used by bundle.py; plain JSON + arrays + raw files, never pickle) ----
    def _state_params(self) -> dict[str, Any]:
        """The parameters a bundle records (GenreStacker's constructor parameters)."""
        return dict(getattr(self, "_params", {}))

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
        self._check_fitted()
        params = self._state_params()
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}
        params.pop("feature_names", None)
        params.pop("genres", None)
        arrays: dict[str, np.ndarray] = {
            "meta.coef": self.meta_coef_,
            "meta.intercept": self.meta_intercept_,
            "thresholds": self.thresholds_,
            "prevalence": self.prevalence_,
            "reference_prior": self.reference_prior,
        }
        files: dict[str, bytes] = {}
        bases = []
        for b, (model, name, cols) in enumerate(
            zip(self.bases_, self.base_names_, self.base_columns_, strict=True)
        ):
            meta, arrs, raw = model.state()
            for k, v in arrs.items():
                arrays[f"base{b}.{k}"] = np.asarray(v)
            renamed = {f"base{b}-{k}": v for k, v in raw.items()}
            files.update(renamed)
            bases.append(
                {
                    "name": name,
                    "columns": [str(self.feature_names_in_[j]) for j in cols],
                    "state": meta,
                    "files": {k: f"base{b}-{k}" for k in raw},
                }
            )
        meta_json = {
            "params": params,
            "feature_names": [str(n) for n in self.feature_names_in_],
            "genres": list(self.genres_),
            "bases": bases,
            "threshold_source": self.threshold_source_,
            "label_weights": getattr(self, "label_weights_", None),
        }
        credit = getattr(self, "concept_credit_", None)
        if credit is not None:
            credit_meta, credit_arrays = credit.to_state()
            meta_json["concept_credit"] = credit_meta
            arrays.update(credit_arrays)
        projection = getattr(self, "projection_", None)
        if projection is not None:
            projection_meta, projection_arrays = projection.to_state()
            meta_json["collection_projection"] = projection_meta
            arrays.update(projection_arrays)
        sets = getattr(self, "genre_sets_", None)
        if sets is not None:
            sets_meta, sets_arrays = sets.to_state()
            meta_json["genre_sets"] = sets_meta
            arrays.update(sets_arrays)
        return meta_json, arrays, files

    @classmethod
    def _from_params(cls, names: list[str], genres: list[str], params: dict[str, Any]) -> Self:
        """An unfitted instance carrying a bundle's parameters."""
        unknown = sorted(set(params) - cls.PARAMETERS)
        if unknown:
            raise ModelError(
                f"model made by another postergenre: unknown parameters {unknown}",
                hint="upgrade postergenre",
            )
        self = cls.__new__(cls)
        values = {**cls.LEGACY_PARAMS, **params}
        prefix, min_genres = values["embedding_prefix"], values["min_genres"]
        objective, n_jobs = values["threshold_objective"], values["n_jobs"]
        if (
            not isinstance(prefix, str)
            or not isinstance(min_genres, int)
            or not isinstance(objective, str)
            or not (n_jobs is None or isinstance(n_jobs, int))
        ):
            raise ModelError(
                "damaged model state: parameters of the wrong type "
                f"{ {k: values[k] for k in cls.LEGACY_PARAMS} }"
            )
        self.feature_names, self.genres = names, genres
        self.embedding_prefix, self.min_genres = prefix, min_genres
        self.threshold_objective, self.n_jobs = objective, n_jobs
        self._params = {"feature_names": names, "genres": genres, **params}
        return self

    @classmethod
    def from_state(
        cls,
        meta: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        files: Mapping[str, bytes],
        n_jobs: int | None = None,
    ) -> Self:
        """Rebuild a fitted model from :meth:`to_state`'s output."""
        try:
            params = dict(meta["params"])
            names = list(meta["feature_names"])
            genres = list(meta["genres"])
            base_specs = list(meta["bases"])
        except (KeyError, TypeError) as exc:
            raise ModelError(f"damaged model state: missing {exc}") from None
        if "bases" in params:
            params["bases"] = tuple(params["bases"])
        self = cls._from_params(names, genres, params)
        jobs = n_jobs if n_jobs is not None else self._n_jobs()
        position = {n: j for j, n in enumerate(names)}
        G = len(genres)
        self.bases_, self.base_names_, self.base_columns_ = [], [], []
        for b, spec in enumerate(base_specs):
            bcls = base_class(str(spec["name"]))
            cols = np.array([position[c] for c in spec["columns"]], dtype=np.int64)
            prefix = f"base{b}."
            arrs = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            raw = {k: files[v] for k, v in dict(spec.get("files", {})).items() if v in files}
            self.bases_.append(
                bcls.from_state(spec.get("state", {}), arrs, raw, params, n_jobs=jobs)
            )
            self.base_names_.append(str(spec["name"]))
            self.base_columns_.append(cols)
        B = len(self.bases_)
        try:
            self.meta_coef_ = np.asarray(arrays["meta.coef"], dtype=np.float64)
            self.meta_intercept_ = np.asarray(arrays["meta.intercept"], dtype=np.float64)
            self.thresholds_ = np.asarray(arrays["thresholds"], dtype=np.float64)
            self.prevalence_ = np.asarray(arrays["prevalence"], dtype=np.float64)
        except KeyError as exc:
            raise ModelError(f"damaged model state: missing array {exc}") from None
        if (
            self.meta_coef_.shape != (G, B * G)
            or self.meta_intercept_.shape != (G,)
            or self.thresholds_.shape != (G,)
        ):
            raise ModelError(
                f"damaged model state: meta arrays {self.meta_coef_.shape}"
                f"/{self.meta_intercept_.shape}"
                f" do not fit {G} genres x {B} bases"
            )
        self.n_features_in_ = len(names)
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.genres_ = genres
        self.classes_ = np.array([0, 1])
        self.threshold_source_ = str(meta.get("threshold_source", "unknown"))
        if "reference_prior" in arrays:
            ref = np.asarray(arrays["reference_prior"], dtype=np.float64)
            if ref.shape != (G,):
                raise ModelError(f"damaged model state: reference prior of shape {ref.shape}")
            self.reference_prior_ = ref
        self.label_weights_ = meta.get("label_weights")
        self.concept_credit_ = None
        if meta.get("concept_credit") is not None:
            from postergenre.ensemble.concept_credit import ConceptCredit

            credit = ConceptCredit.from_state(meta["concept_credit"], arrays)
            if credit.base >= B or any(c not in position for c in credit.columns):
                raise ModelError("damaged model state: concept credit names unknown columns")
            self.concept_credit_ = credit
        self.projection_ = None
        if meta.get("collection_projection") is not None:
            from postergenre.ensemble.projection import CollectionProjection

            self.projection_ = CollectionProjection.from_state(
                meta["collection_projection"], arrays, len(names)
            )
        self.genre_sets_ = None
        if meta.get("genre_sets") is not None:
            from postergenre.ensemble.genre_sets import GenreSets

            self.genre_sets_ = GenreSets.from_state(meta["genre_sets"], arrays, genres)
        return self
