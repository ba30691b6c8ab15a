"""Seed baselines (DESIGN.md): the models the stack has to beat, on the same features.

Each baseline is ``fit(X, Y)`` on (n, d) features named ``feature_names`` and (n, G) 0/1
genres, then ``scores(X) -> (n, G)`` probabilities (or monotone scores in [0, 1]). Each
picks its own columns by name prefix, so all take the same store matrix.

- :class:`MLkNN`: multi-label k-nearest neighbours (Zhang & Zhou, 2007), k = 40, on the
  CNN embedding (PCA to 256 dimensions, cosine similarity).
- :class:`NaiveBayesBR`: binary relevance Gaussian naive Bayes on GIST + colour.
- :class:`Rakel`: random k-labelsets (Tsoumakas & Vlahavas, 2007), k = 3, 2G overlapping
  labelsets, a label-powerset multinomial logistic regression on the PCA'd CNN embedding.
- :class:`LogisticHead`: one L2 logistic regression per genre on the standardised CNN
  embedding (the "transfer learning" baseline).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from postergenre.errors import DataError


def select_columns(feature_names: Sequence[str], prefixes: Sequence[str]) -> np.ndarray:
    cols = np.array(
        [j for j, n in enumerate(feature_names) if any(n.startswith(p + ".") for p in prefixes)],
        dtype=np.int64,
    )
    if not len(cols):
        raise DataError(
            f"no feature of group {'/'.join(prefixes)} among the {len(feature_names)} features",
            hint=f"extract the {'/'.join(prefixes)} features into the store",
        )
    return cols


class Standardiser:
    def fit(self, X: np.ndarray) -> Standardiser:
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = np.nan_to_num(np.nanmean(X, axis=0))
        std = np.nan_to_num(np.nanstd(X, axis=0))
        self.scale_ = np.where(std > 1e-9, std, 1.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        return np.nan_to_num(Z, nan=0.0, posinf=0.0, neginf=0.0)


class PCA:
    """Principal components via SVD of the standardised training matrix (deterministic)."""

    def __init__(self, n_components: int) -> None:
        self.n_components = n_components

    def fit(self, X: np.ndarray) -> PCA:
        self.std_ = Standardiser().fit(X)
        Z = self.std_.transform(X)
        _, _, vt = np.linalg.svd(Z, full_matrices=False)
        k = min(self.n_components, vt.shape[0])
        comps = vt[:k]
        # Fix each component's sign so results do not depend on the LAPACK build.
        signs = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
        self.components_ = comps * signs[:, None]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return self.std_.transform(X) @ self.components_.T


class Baseline(ABC):
    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        feature_names: Sequence[str],
        sample_weight: np.ndarray | None = None,
    ) -> Baseline:
        """``sample_weight`` (n, G): per-(poster, genre) label weights (0: the poster says
        nothing about that genre), as the stack gets them; None: all ones."""
        self.columns_ = select_columns(feature_names, self.inputs)
        Yb = np.asarray(Y) > 0
        W = np.ones(Yb.shape) if sample_weight is None else np.asarray(sample_weight, float)
        if W.shape != Yb.shape:
            raise ValueError(f"expected sample_weight of shape {Yb.shape}, got {W.shape}")
        self._fit(np.asarray(X, dtype=np.float64)[:, self.columns_], Yb, W)
        return self

    def scores(self, X: np.ndarray) -> np.ndarray:
        return self._scores(np.asarray(X, dtype=np.float64)[:, self.columns_])

    @abstractmethod
    def _fit(self, X: np.ndarray, Y: np.ndarray, W: np.ndarray) -> None: ...

    @abstractmethod
    def _scores(self, X: np.ndarray) -> np.ndarray: ...


def _knn(
    query: np.ndarray, ref: np.ndarray, k: int, exclude_self: bool, chunk: int = 2048
) -> np.ndarray:
    """(nq, k) indices of the k most cosine-similar rows of ``ref`` (rows L2-normalised)."""
    out = np.empty((len(query), k), dtype=np.int64)
    for start in range(0, len(query), chunk):
        sim = query[start : start + chunk] @ ref.T
        if exclude_self:
            rows = np.arange(sim.shape[0])
            sim[rows, start + rows] = -np.inf
        part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        # Order within the k by similarity, ties by index: deterministic.
        vals = np.take_along_axis(sim, part, axis=1)
        order = np.lexsort((part, -vals), axis=1)
        out[start : start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


class MLkNN(Baseline):
    """ML-kNN: per genre, a Bayes rule on how many of the k neighbours carry the genre."""

    name = "ML-kNN (k=40, CNN)"
    inputs = ("cnn",)

    def __init__(self, k: int = 40, smoothing: float = 1.0, n_components: int = 256) -> None:
        self.k = k
        self.smoothing = smoothing
        self.n_components = n_components

    def _embed(self, X: np.ndarray) -> np.ndarray:
        Z = self.pca_.transform(X).astype(np.float32)
        return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)

    def _fit(self, X: np.ndarray, Y: np.ndarray, W: np.ndarray) -> None:
        n, G = Y.shape
        k, s = min(self.k, n - 1), self.smoothing
        self.k_ = k
        self.pca_ = PCA(self.n_components).fit(X)
        self.ref_ = self._embed(X)
        self.Y_ = Y
        # Weighted: the prior and the count likelihoods count each (poster, genre) by its
        # label weight; a neighbour counts for a genre only where its label is known.
        self.W_ = W
        self.prior_ = (s + (W * Y).sum(0)) / (2 * s + W.sum(0))
        nb = _knn(self.ref_, self.ref_, k, exclude_self=True)
        counts = self._counts(nb)  # (n, G)
        c1 = np.zeros((k + 1, G))
        c0 = np.zeros((k + 1, G))
        for g in range(G):
            c1[:, g] = np.bincount(counts[Y[:, g], g], weights=W[Y[:, g], g], minlength=k + 1)
            c0[:, g] = np.bincount(counts[~Y[:, g], g], weights=W[~Y[:, g], g], minlength=k + 1)
        self.like1_ = (s + c1) / (s * (k + 1) + c1.sum(0))
        self.like0_ = (s + c0) / (s * (k + 1) + c0.sum(0))

    def _counts(self, nb: np.ndarray) -> np.ndarray:
        """(nq, G) neighbours carrying each genre, rescaled to k where some neighbours'
        labels are unknown (weight 0) for it."""
        known = (self.W_[nb] > 0).sum(1)
        pos = (self.Y_[nb] & (self.W_[nb] > 0)).sum(1)
        scaled = np.rint(pos * self.k_ / np.maximum(known, 1))
        return np.clip(scaled, 0, self.k_).astype(np.int64)

    def _scores(self, X: np.ndarray) -> np.ndarray:
        counts = self._counts(_knn(self._embed(X), self.ref_, self.k_, exclude_self=False))
        G = counts.shape[1]
        cols = np.arange(G)[None, :]
        p1 = self.prior_ * self.like1_[counts, cols]
        p0 = (1 - self.prior_) * self.like0_[counts, cols]
        return p1 / (p1 + p0)


class NaiveBayesBR(Baseline):
    """Binary relevance Gaussian naive Bayes; scores keep NB's log-odds ranking."""

    name = "Naive Bayes BR (GIST+colour)"
    inputs = ("gist", "color")

    def _fit(self, X: np.ndarray, Y: np.ndarray, W: np.ndarray) -> None:
        from sklearn.naive_bayes import GaussianNB

        self.std_ = Standardiser().fit(X)
        Z = self.std_.transform(X)
        self.models_ = []
        for g in range(Y.shape[1]):
            rows = W[:, g] > 0
            y = Y[rows, g].astype(int)
            self.models_.append(
                GaussianNB().fit(Z[rows], y, sample_weight=W[rows, g])
                if 0 < y.sum() < len(y)
                else None
            )
        self.prevalence_ = (W * Y).sum(0) / np.maximum(W.sum(0), 1e-300)

    def _scores(self, X: np.ndarray) -> np.ndarray:
        Z = self.std_.transform(X)
        out = np.empty((len(X), len(self.models_)))
        for g, m in enumerate(self.models_):
            if m is None:
                out[:, g] = self.prevalence_[g]
                continue
            logp = m.predict_joint_log_proba(Z)
            idx = list(m.classes_).index(1)
            # NB probabilities saturate at 0/1; the log-odds keep the ranking (AP) intact.
            z = np.clip(logp[:, idx] - logp[:, 1 - idx], -700, 700)
            out[:, g] = 1.0 / (1.0 + np.exp(-z))
        return out


class LogisticHead(Baseline):
    """One L2 logistic regression per genre on the standardised CNN embedding."""

    name = "logistic head (CNN)"
    inputs = ("cnn",)

    def __init__(self, C: float = 0.01) -> None:
        self.C = C

    def _fit(self, X: np.ndarray, Y: np.ndarray, W: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        self.std_ = Standardiser().fit(X)
        Z = self.std_.transform(X)
        self.coef_ = np.zeros((Y.shape[1], Z.shape[1]))
        self.intercept_ = np.zeros(Y.shape[1])
        for g in range(Y.shape[1]):
            rows = W[:, g] > 0
            y = Y[rows, g].astype(int)
            if not len(y) or y.min() == y.max():
                self.intercept_[g] = 20.0 if len(y) and y[0] else -20.0
                continue
            w = W[rows, g]
            lr = LogisticRegression(C=self.C, max_iter=1000).fit(
                Z[rows], y, sample_weight=w / w.mean()
            )
            self.coef_[g], self.intercept_[g] = lr.coef_[0], lr.intercept_[0]

    def _scores(self, X: np.ndarray) -> np.ndarray:
        z = self.std_.transform(X) @ self.coef_.T + self.intercept_
        return 0.5 * (1.0 + np.tanh(0.5 * z))


class Rakel(Baseline):
    """RAkEL: label-powerset classifiers on random 3-label subsets, votes averaged."""

    name = "RAKEL (k=3, CNN)"
    inputs = ("cnn",)

    def __init__(
        self,
        k: int = 3,
        n_sets: int | None = None,
        C: float = 0.1,
        n_components: int = 256,
        seed: int = 0,
    ) -> None:
        self.k = k
        self.n_sets = n_sets
        self.C = C
        self.n_components = n_components
        self.seed = seed

    def _labelsets(self, G: int) -> list[tuple[int, ...]]:
        rng = np.random.default_rng(self.seed)
        k = min(self.k, G)
        want = self.n_sets if self.n_sets is not None else 2 * G
        # First a random partition, so every genre is in some labelset; then random
        # distinct labelsets up to ``want`` (RAkEL-o).
        perm = rng.permutation(G)
        sets = [tuple(sorted(int(g) for g in perm[i : i + k])) for i in range(0, G, k)]
        if len(sets[-1]) < k:
            rest = [g for g in range(G) if g not in sets[-1]]
            fill = rng.choice(rest, size=k - len(sets[-1]), replace=False)
            sets[-1] = tuple(sorted([*sets[-1], *map(int, fill)]))
        seen = set(sets)
        tries = 0
        from math import comb

        limit = comb(G, k)
        while len(sets) < min(want, limit) and tries < 100 * want:
            tries += 1
            cand = tuple(sorted(int(g) for g in rng.choice(G, size=k, replace=False)))
            if cand not in seen:
                seen.add(cand)
                sets.append(cand)
        return sets

    def _fit(self, X: np.ndarray, Y: np.ndarray, W: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        self.pca_ = PCA(self.n_components).fit(X)
        Z = Standardiser().fit(self.pca_.transform(X))
        self.zstd_ = Z
        F = Z.transform(self.pca_.transform(X))
        G = Y.shape[1]
        self.sets_ = self._labelsets(G)
        self.models_: list[Any] = []
        self.classes_: list[np.ndarray] = []
        for labels in self.sets_:
            # A labelset is known only where all its genres are: a row unlabelled for one
            # of them takes no part; otherwise it weighs the mean of its genres' weights.
            Ws = W[:, list(labels)]
            rows = (Ws > 0).all(1)
            code = (Y[rows][:, list(labels)] * (1 << np.arange(len(labels)))).sum(1)
            uniq = np.unique(code)
            if len(uniq) <= 1:
                self.models_.append(None)
                self.classes_.append(uniq if len(uniq) else np.zeros(1, dtype=np.int64))
                continue
            w = Ws[rows].mean(1)
            m = LogisticRegression(C=self.C, max_iter=500).fit(
                F[rows], code, sample_weight=w / w.mean()
            )
            self.models_.append(m)
            self.classes_.append(m.classes_)
        self.G_ = G

    def _scores(self, X: np.ndarray) -> np.ndarray:
        F = self.zstd_.transform(self.pca_.transform(X))
        votes = np.zeros((len(X), self.G_))
        counts = np.zeros(self.G_)
        for labels, m, classes in zip(self.sets_, self.models_, self.classes_, strict=True):
            proba = np.ones((len(X), 1)) if m is None else m.predict_proba(F)
            for pos, g in enumerate(labels):
                has = ((classes >> pos) & 1).astype(bool)
                votes[:, g] += proba[:, has].sum(1)
                counts[g] += 1
        return votes / np.maximum(counts, 1)


#: name -> class; the benchmark runs them in this order.
BASELINES: dict[str, type[Baseline]] = {
    "mlknn": MLkNN,
    "naive_bayes": NaiveBayesBR,
    "rakel": Rakel,
    "logistic": LogisticHead,
}
