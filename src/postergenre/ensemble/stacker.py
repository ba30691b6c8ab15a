"""GenreStacker: the stacked multi-label genre model, as a scikit-learn estimator.

Level 0 (trained out-of-fold, with an explicit loop): XGBoost on the interpretable cues,
an MLP on the CNN embedding. Level 1: per-genre logistic regression over the level-0
log-odds (raw margins), so explanations are exact (see :mod:`postergenre.ensemble.explain`).

Prediction, explanation and state I/O live in the numpy-only
:class:`~postergenre.ensemble.predictor.GenrePredictor`, which GenreStacker extends
with its parameters, ``fit`` and scikit-learn's API. scikit-learn is imported here at
module level (the class derives from ``BaseEstimator``); loading a bundle gives a
GenrePredictor and never imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Self

import numpy as np
from sklearn.base import BaseEstimator

from postergenre.ensemble.bases import (
    BaseLearner,
    base_class,
    genre_order,
    prior_logit,
    selection_log_prob,
    selection_weights,
    weight_matrix,
)
from postergenre.ensemble.genre_sets import GenreSets
from postergenre.ensemble.metrics import (
    DEFAULT_THRESHOLD_OBJECTIVE,
    THRESHOLD_OBJECTIVES,
    fold_assignment,
    tune_thresholds,
)
from postergenre.ensemble.predictor import GenrePredictor, _sigmoid
from postergenre.errors import ConfigError, ModelError

#: progress(stage, done, total): called as training goes.
Progress = Callable[[str, int, int], None]

#: Which learners a selection-aware fit reaches (``GenreStacker(selection_in=...)``).
SELECTION_LEARNERS = ("meta", "mlp", "all")
DEFAULT_SELECTION_IN = "meta"


def balanced_indices(Y: np.ndarray, cap: int, max_repeat: int, seed: int) -> np.ndarray:
    """Row indices (with repeats) that cap each genre at ``cap`` posters and oversample
    rare genres up to ``min(cap, max_repeat x count)`` (the original study's balancing).

    Each genre draws its quota from the rows that carry it; the union keeps repeats, so a
    rare genre's rows appear several times and a common genre's rows are subsampled.
    """
    Yb = np.asarray(Y) > 0
    rng = np.random.default_rng(seed)
    picks = []
    for g in np.argsort(Yb.sum(0), kind="mergesort"):
        rows = np.nonzero(Yb[:, g])[0]
        if not len(rows):
            continue
        quota = min(cap, max_repeat * len(rows))
        if quota <= len(rows):
            picks.append(rng.choice(rows, size=quota, replace=False))
        else:
            extra = rng.choice(rows, size=quota - len(rows), replace=True)
            picks.append(np.concatenate([rows, extra]))
    none = np.nonzero(~Yb.any(1))[0]
    if len(none):
        picks.append(none)
    out = np.sort(np.concatenate(picks)) if picks else np.arange(len(Yb))
    return out


class GenreStacker(GenrePredictor, BaseEstimator):  # type: ignore[misc]
    """Stacked multi-label genre classifier.

    Parameters
    ----------
    feature_names : sequence of str, optional
        Name of each column of ``X``. Names decide the groups: columns whose name starts
        with ``embedding_prefix + "."`` (default ``cnn.``) feed the embedding base (MLP),
        every other column feeds the cue base (XGBoost). Without names every column is
        a cue named ``x<j>`` (then no MLP is trained).
    genres : sequence of str, optional
        Name of each column of ``Y`` (for explanations; default ``g<j>``).
    bases : tuple of str
        Level-0 learners, names in :data:`postergenre.ensemble.bases.BASES`: ``xgb``
        (cues), ``mlp`` (embedding), ``knn`` (embedding: nearest training posters),
        ``mlp_all`` (every column). A base whose input group has no column is left out.
    n_folds : int
        Folds of the out-of-fold loop for level 0 (and for the meta predictions that
        thresholds are tuned on).
    pos_weight, mlp_pos_weight : {"sqrt", "balanced", None}
        Per-genre weight of a positive row in the XGBoost (``pos_weight``) and MLP
        (``mlp_pos_weight``) losses: sqrt(neg/pos), neg/pos, or none. The meta level is
        unweighted, so probabilities stay calibrated.
    balance : bool
        Train level 0 on a per-fold resample that caps each genre at ``balance_cap``
        posters and oversamples rare genres (at most ``balance_max_repeat`` times).
    meta_inputs : {"all", "same"}
        A genre's logistic regression reads every level-0 margin (``all``) or only the
        margins of that genre (``same``).
    meta_C : float
        Inverse L2 strength of the meta logistic regressions.
    selection_in : {"meta", "mlp", "all"}
        Which learners fit the rows of a collection selected on its first-listed genre
        (``fit(selection=...)``) by the selection-aware likelihood: the meta-learner, the
        MLP base or both; the others learn from the label weights alone.
    min_genres : int
        ``predict`` gives every poster at least this many genres (the highest scoring).
    threshold_objective : {"micro", "micro_all", "genre"}
        What the per-genre thresholds maximise on out-of-fold (or validation) rows:
        micro F1 over all genres with every genre kept predictable (``micro_all``, the
        default since December 2026: a genre micro F1 would drop keeps its own best-F1
        threshold; on val micro F1 0.5237 -> 0.5217, macro F1 0.2799 -> 0.2882 against
        ``micro``), micro F1 alone (``micro``: predicts common genres readily and rare ones
        only when sure, and may never predict a genre; the default before), or each
        genre's own F1 (higher macro F1, many more false positives on rare genres).
    xgb_*, mlp_*, knn_* : hyperparameters of the bases (``mlp_bags``: MLPs with different
        seeds whose margins are averaged; ``knn_neighbours``, ``knn_components``,
        ``knn_temperature``, ``knn_smoothing``: see
        :class:`~postergenre.ensemble.bases.KNNBase`).
    n_jobs : int, optional
        Threads for XGBoost and torch (default: all CPUs).
    random_state : int
        Seed of folds, subsampling, initialisation and shuffling.

    Defaults were chosen on the shared poster set's val split (17,874 train posters, 5-fold
    out-of-fold margins, val macro AP of each base alone and of the stack): XGBoost depth 3,
    300 rounds at 0.05, 20% of the cues per tree (0.227 alone, 77 s a fit on 2 cores; the
    earlier depth 4, 200 rounds at 0.1 gave 0.220 in 70 s); no positive weighting in either
    base (sqrt weighting cost XGBoost 0.012); three bagged 256-unit MLPs (0.302, one MLP
    0.296 +/- 0.007 across seeds); a meta regression per genre over that genre's margins
    only (``same``: stack 0.307, ``all``: 0.302, its 21 x B inputs overfit). The ``knn``
    base (December 2026, on the default two-network embedding with degraded copies): 150
    neighbours, 128 components, temperature 0.05, smoothing 4 raise the stack from 0.3059 to
    0.3099 (out-of-fold on the training rows 0.2945 -> 0.2982; 256 components 0.3109); the
    retrained model: 0.3101.

    Fitted attributes: ``n_features_in_``, ``feature_names_in_``, ``genres_``,
    ``bases_`` (list of fitted level-0 learners), ``base_names_``, ``base_columns_``,
    ``folds_`` (n,) fold of each training row, ``oof_margins_`` (n, B, G) level-0
    out-of-fold margins, ``oof_proba_`` (n, G) cross-fitted meta probabilities,
    ``meta_coef_`` (G, B*G), ``meta_intercept_`` (G,), ``thresholds_`` (G,),
    ``threshold_source_`` and ``prevalence_`` (G,).
    """

    def __init__(
        self,
        feature_names: Sequence[str] | None = None,
        genres: Sequence[str] | None = None,
        bases: tuple[str, ...] = ("xgb", "mlp", "knn"),
        n_folds: int = 5,
        pos_weight: str | None = None,
        mlp_pos_weight: str | None = None,
        balance: bool = False,
        balance_cap: int = 1000,
        balance_max_repeat: int = 3,
        meta_inputs: str = "same",
        meta_C: float = 1.0,
        selection_in: str = DEFAULT_SELECTION_IN,
        min_genres: int = 1,
        threshold_objective: str = DEFAULT_THRESHOLD_OBJECTIVE,
        embedding_prefix: str = "cnn",
        xgb_rounds: int = 300,
        xgb_max_depth: int = 3,
        xgb_learning_rate: float = 0.05,
        xgb_subsample: float = 0.8,
        xgb_colsample: float = 0.2,
        xgb_min_child_weight: float = 5.0,
        xgb_lambda: float = 1.0,
        xgb_max_bin: int = 32,
        mlp_hidden: int = 256,
        mlp_epochs: int = 8,
        mlp_batch_size: int = 256,
        mlp_learning_rate: float = 1e-3,
        mlp_weight_decay: float = 1e-4,
        mlp_dropout: float = 0.5,
        mlp_bags: int = 3,
        knn_neighbours: int = 150,
        knn_components: int = 128,
        knn_temperature: float = 0.05,
        knn_smoothing: float = 4.0,
        collection_directions: int = 0,
        n_jobs: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.feature_names = feature_names
        self.genres = genres
        self.bases = bases
        self.n_folds = n_folds
        self.pos_weight = pos_weight
        self.mlp_pos_weight = mlp_pos_weight
        self.balance = balance
        self.balance_cap = balance_cap
        self.balance_max_repeat = balance_max_repeat
        self.meta_inputs = meta_inputs
        self.meta_C = meta_C
        self.selection_in = selection_in
        self.min_genres = min_genres
        self.threshold_objective = threshold_objective
        self.embedding_prefix = embedding_prefix
        self.xgb_rounds = xgb_rounds
        self.xgb_max_depth = xgb_max_depth
        self.xgb_learning_rate = xgb_learning_rate
        self.xgb_subsample = xgb_subsample
        self.xgb_colsample = xgb_colsample
        self.xgb_min_child_weight = xgb_min_child_weight
        self.xgb_lambda = xgb_lambda
        self.xgb_max_bin = xgb_max_bin
        self.mlp_hidden = mlp_hidden
        self.mlp_epochs = mlp_epochs
        self.mlp_batch_size = mlp_batch_size
        self.mlp_learning_rate = mlp_learning_rate
        self.mlp_weight_decay = mlp_weight_decay
        self.mlp_dropout = mlp_dropout
        self.mlp_bags = mlp_bags
        self.knn_neighbours = knn_neighbours
        self.knn_components = knn_components
        self.knn_temperature = knn_temperature
        self.knn_smoothing = knn_smoothing
        self.collection_directions = collection_directions
        self.n_jobs = n_jobs
        self.random_state = random_state

    # -- scikit-learn plumbing ----------------------------------------------------------
    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        tags.input_tags.allow_nan = True
        from sklearn.utils import ClassifierTags

        tags.classifier_tags = ClassifierTags(multi_class=False, multi_label=True)
        return tags

    # -- validation ---------------------------------------------------------------------
    def _check_params(self) -> None:
        if not isinstance(self.n_folds, int | np.integer) or self.n_folds < 2:
            raise ConfigError(f"n_folds: expected an integer >= 2, got {self.n_folds!r}")
        k = self.collection_directions
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 0:
            raise ConfigError(f"collection_directions: expected an integer >= 0, got {k!r}")
        for key in ("pos_weight", "mlp_pos_weight"):
            if getattr(self, key) not in ("sqrt", "balanced", None):
                raise ConfigError(
                    f"{key}: expected 'sqrt', 'balanced' or None, got {getattr(self, key)!r}"
                )
        if self.selection_in not in SELECTION_LEARNERS:
            raise ConfigError(
                f"selection_in: expected one of {SELECTION_LEARNERS}, got {self.selection_in!r}"
            )
        if self.threshold_objective not in THRESHOLD_OBJECTIVES:
            raise ConfigError(
                f"threshold_objective: expected one of {THRESHOLD_OBJECTIVES}, "
                f"got {self.threshold_objective!r}"
            )
        if self.meta_inputs not in ("all", "same"):
            raise ConfigError(f"meta_inputs: expected 'all' or 'same', got {self.meta_inputs!r}")
        if not self.bases:
            raise ConfigError("bases: expected at least one base learner, got none")
        for name in self.bases:
            base_class(name)

    def _check_X(self, X: Any, fitting: bool = False) -> np.ndarray:
        if not fitting:
            # GenrePredictor's numpy check: the same messages as check_array's.
            return super()._check_X(X, fitting=False)
        from sklearn.utils.validation import check_array

        # check_array gives scikit-learn's own messages (sparse, complex, 1-D, empty...).
        arr: np.ndarray = check_array(
            X, dtype=np.float32, ensure_all_finite="allow-nan", accept_sparse=False
        )
        if self.feature_names is not None and len(self.feature_names) != arr.shape[1]:
            raise ValueError(
                f"expected X with {len(self.feature_names)} columns (one per feature "
                f"name), got {arr.shape[1]}"
            )
        return arr

    @staticmethod
    def _check_Y(Y: Any, n: int) -> np.ndarray:
        from sklearn.utils.multiclass import type_of_target
        from sklearn.utils.validation import check_array

        if Y is None:
            raise ValueError(
                "GenreStacker requires y to be passed, but the target y is None "
                "(expected an (n, G) 0/1 genre matrix)"
            )
        arr = check_array(Y, ensure_2d=False, dtype=None, ensure_all_finite=True)
        kind = type_of_target(arr)
        if kind.startswith("continuous") or kind in ("unknown", "multiclass-multioutput"):
            raise ValueError(
                f"Unknown label type: {kind}; expected Y as an (n, G) 0/1 genre matrix"
            )
        if kind == "multiclass":
            raise ValueError(
                "Only binary classification is supported per genre: expected Y as an "
                f"(n, G) 0/1 genre matrix, got a multiclass target of shape {arr.shape}"
            )
        if arr.ndim != 2:
            raise ValueError(
                f"GenreStacker is multi-label: expected Y as an (n={n}, G) 0/1 genre "
                f"matrix, got shape {arr.shape}"
            )
        if kind not in ("multilabel-indicator", "binary") or not np.isin(arr, (0, 1)).all():
            raise ValueError(
                f"Unknown label type: {kind}; expected Y as an (n, G) 0/1 genre matrix"
            )
        if arr.shape[0] != n or arr.shape[1] < 1:
            raise ValueError(f"expected Y as an (n={n}, G) 0/1 genre matrix, got {arr.shape}")
        return arr.astype(np.uint8)

    def _group_columns(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        prefix = self.embedding_prefix + "."
        emb = np.array([n.startswith(prefix) for n in names], dtype=bool)
        return {
            "embedding": np.nonzero(emb)[0],
            "cues": np.nonzero(~emb)[0],
            "all": np.arange(len(names)),
        }

    def _pos_weights(self, Y: np.ndarray, how: str | None) -> np.ndarray:
        pos = Y.sum(0).astype(np.float64)
        neg = len(Y) - pos
        ratio = np.where(pos > 0, neg / np.maximum(pos, 1.0), 1.0)
        if how == "balanced":
            return np.maximum(ratio, 1.0)
        if how == "sqrt":
            return np.maximum(np.sqrt(ratio), 1.0)
        return np.ones(Y.shape[1])

    # -- training -----------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        Y: Any,
        progress: Progress | None = None,
        sample_weight: Any = None,
        reference_prior: Any = None,
        groups: Any = None,
        selection: Any = None,
        collections: Any = None,
        genre_sets: GenreSets | None = None,
    ) -> GenreStacker:
        """Fit on ``X`` (n, d) float features and ``Y`` (n, G) 0/1 genres.

        ``sample_weight``: (n, G) per-(poster, genre) label weights (0: the poster says
        nothing about that genre; see :mod:`postergenre.ensemble.label_shift`), honoured
        by every base, the meta-learner and threshold tuning; an (n,) vector weighs whole
        rows. ``reference_prior`` (G,): the genre shares the weights pull towards, which the
        probabilities then refer to (default: the weighted training prevalence).
        ``groups`` (n,): rows with the same group (e.g. a poster and its augmented copies)
        always share a fold, so no out-of-fold margin is scored by a model that saw a copy.
        ``selection`` (n, G) bool: for each row of a collection that kept only films whose
        first-listed genre is among its True columns, those genres (see
        :class:`~postergenre.ensemble.label_shift.FirstGenreSelection`); the learners
        ``selection_in`` names fit such rows by a selection-aware likelihood.
        ``collections`` (n,): the collection each row comes from (None for a row that is
        no collection's own poster, such as an augmented copy); with
        ``collection_directions`` k > 0, the k embedding directions that best tell the
        collections apart among posters of the same genres are projected out before any
        base reads the embedding (:mod:`~postergenre.ensemble.projection`).
        ``genre_sets``: the genre combinations films have (a
        :class:`~postergenre.ensemble.genre_sets.GenreSets` over these genres); the
        probabilities are then conditioned on them, with offsets fitted on the out-of-fold
        meta log-odds so each genre's weighted mean probability stays the meta-learner's,
        and thresholds tuned on the conditioned out-of-fold probabilities.
        ``progress(stage, done, total)`` is called after each level-0 fit.
        """
        self._check_params()
        X = self._check_X(X, fitting=True)
        Y = self._check_Y(Y, len(X))
        n, G = Y.shape
        W = self._check_weights(sample_weight, Y)
        S = None
        if selection is not None:
            S = np.asarray(selection, dtype=bool)
            if S.shape != Y.shape:
                raise ValueError(f"expected selection of shape {Y.shape}, got {S.shape}")
        S_bases = S if self.selection_in in ("mlp", "all") else None
        S_meta = S if self.selection_in in ("meta", "all") else None
        fold_groups = groups  # (``groups`` below names the column groups)
        if n < self.n_folds:
            raise ValueError(f"n_samples={n} is fewer than n_folds={self.n_folds}")
        names = (
            list(self.feature_names)
            if self.feature_names is not None
            else [f"x{j}" for j in range(X.shape[1])]
        )
        if len(set(names)) != len(names):
            raise ValueError("expected unique feature names, got repeats")
        genres = list(self.genres) if self.genres is not None else [f"g{j}" for j in range(G)]
        if len(genres) != G:
            raise ValueError(f"expected {G} genre names (one per column of Y), got {len(genres)}")
        groups = self._group_columns(names)
        self.projection_ = None
        if self.collection_directions:
            if collections is None or len(collections) != n:
                raise ValueError(
                    f"collection_directions={self.collection_directions} needs the "
                    f"collection of each of the {n} rows (collections=...)"
                )
            from postergenre.ensemble.projection import fit_collection_projection

            emb = groups["embedding"]
            if len(emb):
                self.projection_ = fit_collection_projection(
                    X[:, emb], Y, collections, int(self.collection_directions), emb,
                    seed=int(self.random_state),
                )  # fmt: skip
            if self.projection_ is not None:
                X = self.projection_.apply(X)
        specs: list[tuple[str, type[BaseLearner], np.ndarray]] = []
        for name in self.bases:
            cls = base_class(name)
            cols = groups[cls.inputs]
            if len(cols):
                specs.append((name, cls, cols))
        if not specs:
            raise ValueError(
                f"no base learner has input columns: bases {self.bases} need "
                f"{sorted({base_class(b).inputs for b in self.bases})} columns"
            )
        params = self.get_params(deep=False)
        jobs = self._n_jobs()
        # Each base's loss weights: the label weights times its positive weighting.
        base_weights = [
            W
            * weight_matrix(
                Y,
                self._pos_weights(Y, getattr(self, cls.pos_weight_param))
                if cls.pos_weight_param
                else None,
            )
            for _, cls, _ in specs
        ]
        # Stratified on the labels that count (a masked label says nothing).
        folds = self._folds(Y * (W > 0), fold_groups)
        B = len(specs)
        oof = np.zeros((n, B, G))
        total = (int(self.n_folds) + 1) * B
        done = 0
        for k in range(int(self.n_folds)):
            train_rows = np.nonzero(folds != k)[0]
            test_rows = np.nonzero(folds == k)[0]
            train_rows = self._resample(train_rows, Y, seed=int(self.random_state) + k)
            for b, (name, cls, cols) in enumerate(specs):
                model = cls(params, seed=self._seed(k, b), n_jobs=jobs)
                _fit_base(model, X, Y, base_weights[b], S_bases, train_rows, cols)
                oof[test_rows, b] = model.margin(X[np.ix_(test_rows, cols)])
                done += 1
                if progress:
                    progress(f"fold {k + 1}/{self.n_folds}: {name}", done, total)
        all_rows = self._resample(np.arange(n), Y, seed=int(self.random_state) + int(self.n_folds))
        fitted: list[BaseLearner] = []
        for b, (name, cls, cols) in enumerate(specs):
            model = cls(params, seed=self._seed(int(self.n_folds), b), n_jobs=jobs)
            _fit_base(model, X, Y, base_weights[b], S_bases, all_rows, cols)
            fitted.append(model)
            done += 1
            if progress:
                progress(f"all rows: {name}", done, total)

        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.genres_ = genres
        self.classes_ = np.array([0, 1])
        self.bases_ = fitted
        self.base_names_ = [s[0] for s in specs]
        self.base_columns_ = [s[2] for s in specs]
        self.folds_ = folds
        self.oof_margins_ = oof
        Wsum = W.sum(0)
        self.prevalence_ = np.where(
            Wsum > 0, (W * Y).sum(0) / np.maximum(Wsum, 1e-300), Y.mean(0)
        ).astype(np.float64)
        if reference_prior is None:
            self.reference_prior_ = self.prevalence_.copy()
        else:
            ref = np.asarray(reference_prior, dtype=np.float64).reshape(-1)
            if ref.shape != (G,) or not ((ref > 0) & (ref < 1)).all():
                raise ValueError(f"expected reference_prior as ({G},) shares in (0, 1)")
            self.reference_prior_ = ref
        Z = oof.reshape(n, B * G)
        self.meta_coef_, self.meta_intercept_ = self._fit_meta(Z, Y, W, S_meta)
        self.genre_sets_ = None
        if genre_sets is not None:
            if list(genre_sets.genres) != genres:
                raise ValueError(
                    f"expected genre sets over the genres {genres}, got {list(genre_sets.genres)}"
                )
            z_all = Z @ self.meta_coef_.T + self.meta_intercept_
            self.genre_sets_ = genre_sets.calibrated(z_all, W)
        # Thresholds from meta predictions that are out-of-fold too: the meta model that
        # scores a row never saw it.
        oof_logit = np.zeros((n, G))
        for k in range(int(self.n_folds)):
            te = folds == k
            coef, icpt = self._fit_meta(
                Z[~te], Y[~te], W[~te], None if S_meta is None else S_meta[~te]
            )
            oof_logit[te] = Z[te] @ coef.T + icpt
        oof_proba = _sigmoid(self._conditioned(oof_logit))
        self.oof_proba_ = oof_proba
        self.thresholds_ = tune_thresholds(Y, oof_proba, self.threshold_objective, W)
        self.threshold_source_ = "out-of-fold"
        self.fit_concept_credit(X)
        return self

    def _folds(self, Y: np.ndarray, groups: Any) -> np.ndarray:
        if groups is None:
            return fold_assignment(Y, int(self.n_folds), int(self.random_state))
        keys = np.asarray(groups)
        if keys.shape != (len(Y),):
            raise ValueError(f"expected groups of shape ({len(Y)},), got {keys.shape}")
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        if len(uniq) < int(self.n_folds):
            raise ValueError(f"{len(uniq)} groups are fewer than n_folds={self.n_folds}")
        # One fold per group, assigned from the group's first row's labels.
        return fold_assignment(Y[first], int(self.n_folds), int(self.random_state))[inverse]

    @staticmethod
    def _check_weights(sample_weight: Any, Y: np.ndarray) -> np.ndarray:
        if sample_weight is None:
            return np.ones(Y.shape, dtype=np.float64)
        W = np.asarray(sample_weight, dtype=np.float64)
        if W.ndim == 1 and W.shape[0] == Y.shape[0]:
            W = np.repeat(W[:, None], Y.shape[1], axis=1)
        if W.shape != Y.shape:
            raise ValueError(
                f"expected sample_weight of shape {Y.shape} (per poster and genre) or "
                f"({Y.shape[0]},), got {W.shape}"
            )
        if not (np.isfinite(W).all() and (W >= 0).all()):
            raise ValueError("expected finite, non-negative sample weights")
        if not W.any():
            raise ValueError("sample_weight is all zero: expected some positive weights")
        return W

    def _seed(self, fold: int, base: int) -> int:
        return int(self.random_state) * 1009 + fold * 31 + base

    def _resample(self, rows: np.ndarray, Y: np.ndarray, seed: int) -> np.ndarray:
        if not self.balance:
            return rows
        picked = balanced_indices(
            Y[rows], int(self.balance_cap), int(self.balance_max_repeat), seed
        )
        return rows[picked]

    def _meta_mask(self, B: int, G: int) -> np.ndarray:
        if self.meta_inputs == "all":
            return np.ones((G, B * G), dtype=bool)
        mask = np.zeros((G, B, G), dtype=bool)
        for g in range(G):
            mask[g, :, g] = True
        return mask.reshape(G, B * G)

    def _fit_meta(
        self,
        Z: np.ndarray,
        Y: np.ndarray,
        W: np.ndarray | None = None,
        selection: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-genre L2 LR: margins Z (n, B*G) -> coef (G, B*G), intercept (G,); rows of
        label weight 0 for a genre take no part in its regression. With a ``selection``
        (see :meth:`fit`) the genres are fitted together, since the selection term ties
        them (:func:`_fit_meta_selected`)."""
        from sklearn.linear_model import LogisticRegression

        G = Y.shape[1]
        B = Z.shape[1] // G
        W = np.ones(Y.shape) if W is None else W
        mask = self._meta_mask(B, G)
        if selection is not None and selection.any():
            return _fit_meta_selected(
                Z, Y, W, selection, mask, float(self.meta_C), genre_order(self.genres, G)
            )
        coef = np.zeros((G, Z.shape[1]))
        Wn, learnt, intercept = _meta_genre_weights(Y, W)
        for g in np.nonzero(learnt)[0]:
            rows = W[:, g] > 0
            lr = LogisticRegression(C=float(self.meta_C), max_iter=2000, tol=1e-6)
            lr.fit(Z[np.ix_(rows, mask[g])], Y[rows, g], sample_weight=Wn[rows, g])
            coef[g, mask[g]] = lr.coef_[0]
            intercept[g] = lr.intercept_[0]
        return coef, intercept

    # -- prediction -----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "meta_coef_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(
                "This GenreStacker instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )

    def tune_thresholds(self, X: Any, Y: Any, sample_weight: Any = None) -> GenreStacker:
        """Re-tune the per-genre thresholds on held-out rows (e.g. a validation split),
        with their label weights when given."""
        self._check_fitted()
        X = self._check_X(X, fitting=False)
        Y = self._check_Y(Y, len(X))
        if Y.shape[1] != len(self.genres_):
            raise ValueError(f"expected Y with {len(self.genres_)} genres, got {Y.shape[1]}")
        W = self._check_weights(sample_weight, Y)
        self.thresholds_ = tune_thresholds(Y, self.predict_proba(X), self.threshold_objective, W)
        self.threshold_source_ = "validation"
        return self

    # -- persistence (GenrePredictor's, with this estimator's parameters) -----------------
    def _state_params(self) -> dict[str, Any]:
        return dict(self.get_params(deep=False))

    @classmethod
    def _from_params(cls, names: list[str], genres: list[str], params: dict[str, Any]) -> Self:
        valid = set(cls().get_params(deep=False))
        unknown = sorted(set(params) - valid)
        if unknown:
            raise ModelError(
                f"model made by another postergenre: unknown parameters {unknown}",
                hint="upgrade postergenre",
            )
        return cls(feature_names=names, genres=genres, **params)


def meta_weights_table(model: GenrePredictor) -> dict[str, dict[str, float]]:
    """genre -> {"<base>:<genre>": weight} of the meta level (for the model card)."""
    G = len(model.genres_)
    W = model.meta_coef_.reshape(G, len(model.bases_), G)
    out: dict[str, dict[str, float]] = {}
    for g, genre in enumerate(model.genres_):
        row = {}
        for b, name in enumerate(model.base_names_):
            row[f"{name}:{genre}"] = float(W[g, b, g])
        row["others(|w| sum)"] = float(np.abs(W[g]).sum() - sum(abs(v) for v in row.values()))
        out[genre] = {k: (0.0 if not math.isfinite(v) else v) for k, v in row.items()}
    return out


def _fit_base(
    model: BaseLearner,
    X: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    selection: np.ndarray | None,
    rows: np.ndarray,
    cols: np.ndarray,
) -> None:
    """Fit one level-0 learner on ``rows`` (its ``cols``), told of the selection if any."""
    Xr, Yr, Wr = X[np.ix_(rows, cols)], Y[rows], W[rows]
    if selection is not None:
        model.fit_selected(Xr, Yr, Wr, selection[rows])
    else:
        model.fit(Xr, Yr, Wr)


def _meta_genre_weights(Y: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the meta-learner's regression of each genre starts from: the label weights
    scaled to mean 1 over the genre's weighted rows (so that C means the same with and
    without weights), whether the genre has both classes there, and for a genre with one
    class only its smoothed rate (nothing more to learn)."""
    G = Y.shape[1]
    Wn = np.zeros(W.shape)
    learnt = np.zeros(G, dtype=bool)
    fixed = np.zeros(G)
    for g in range(G):
        rows = W[:, g] > 0
        y = Y[rows, g]
        learnt[g] = len(y) > 0 and y.min() != y.max()
        if learnt[g]:
            w = W[rows, g]
            Wn[rows, g] = w / w.mean()
        else:
            fixed[g] = prior_logit(Y[:, g : g + 1], W[:, g : g + 1])[0]
    return Wn, learnt, fixed


def _fit_meta_selected(
    Z: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    selection: np.ndarray,
    mask: np.ndarray,
    C: float,
    order: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The meta-learner's per-genre L2 logistic regressions fitted together, with the
    selection term of the rows of a collection selected on its first-listed genre: it
    minimises ``C * (sum of weighted log losses + sum over selected rows of log P(kept))
    + |coef|^2 / 2`` (the per-genre problems of :meth:`GenreStacker._fit_meta` summed,
    weights scaled to mean 1 per genre as there, plus the term that ties the genres).
    A genre with one class among its weighted rows keeps its smoothed rate."""
    import torch
    from scipy.optimize import minimize

    G = Y.shape[1]
    Wn, both, fixed = _meta_genre_weights(Y, W)
    # Genres listed up to a selected row's last admissible first genre count with weight 1
    # (those before its first one cancel against the selection term).
    Wn = selection_weights(Wn, selection, order)
    Wn[:, ~both] = 0.0
    free = torch.from_numpy(mask & both[:, None])
    Zt = torch.from_numpy(np.asarray(Z, dtype=np.float64))
    Yt = torch.from_numpy(np.asarray(Y, dtype=np.float64))
    Wt = torch.from_numpy(Wn)
    At = torch.from_numpy(selection[:, order])
    order_t = torch.from_numpy(order)
    fixed_t = torch.from_numpy(fixed)
    both_t = torch.from_numpy(both)
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")
    n_coef = G * Z.shape[1]

    def loss_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        t = torch.from_numpy(x).requires_grad_(True)
        coef = t[:n_coef].reshape(G, Z.shape[1]) * free
        z = Zt @ coef.T + torch.where(both_t, t[n_coef:], fixed_t)
        loss = C * ((bce(z, Yt) * Wt).sum() + selection_log_prob(torch, z, At, order_t).sum())
        loss = loss + 0.5 * (coef**2).sum()
        loss.backward()
        grad = t.grad
        assert grad is not None
        return float(loss.detach()), grad.numpy().copy()

    # L-BFGS as scikit-learn's logistic regression runs it, on the joint problem.
    res = minimize(
        loss_and_grad,
        np.zeros(n_coef + G),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 5000, "gtol": 1e-6, "ftol": 1e-12},
    )
    x = torch.from_numpy(res.x)
    out_coef = (x[:n_coef].reshape(G, Z.shape[1]) * free).numpy().copy()
    out_icpt = torch.where(both_t, x[n_coef:], fixed_t).numpy().copy()
    return out_coef, out_icpt
