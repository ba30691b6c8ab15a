"""Directions of the embedding that tell the collections apart, projected out.

Two posters with the same genres but from different collections (another archive, another
scanner, another era of thumbnails) should look alike to a genre model. Where the labels
say which collection each training poster is from, :func:`fit_collection_projection`
finds, one after another, the directions of the standardised embedding along which a
logistic regression best tells the collections apart among posters *of the same genres*
(each genre set is centred first, so a direction that separates genres is not taken for
one that separates collections), and removes each before looking for the next: iterative
null-space projection (Ravfogel et al., 2020). The bases that read the embedding then see

    x' = mean + scale * (z - z B^T B),   z = (x - mean) / scale,

with ``B`` (k, d) orthonormal, so the k directions carry nothing, the rest is untouched,
and x' is in the embedding's own units. The map is linear and idempotent; a gradient
over x' becomes one over x through :meth:`CollectionProjection.pull_back`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from postergenre.errors import ModelError

#: L2 strength of each direction's logistic regression (scikit-learn's C, on standardised
#: columns) and the most rows a collection contributes to it (each collection subsampled
#: to the same count, so the direction is not the largest collection's).
DIRECTION_C = 0.05
MAX_ROWS_PER_COLLECTION = 4096
#: A collection with fewer rows takes no part (too few to show a direction of its own).
MIN_ROWS_PER_COLLECTION = 20


@dataclass
class CollectionProjection:
    """A fitted projection on the columns ``columns`` of the feature matrix."""

    columns: np.ndarray  # (d,) int: the embedding's columns
    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    basis: np.ndarray  # (k, d) orthonormal rows
    #: Training accuracy of each direction's regression before its removal (balanced
    #: rows; 0.5 = the collections no longer apart along any direction found).
    accuracy: list[float]

    def apply(self, X: np.ndarray) -> np.ndarray:
        """(n, c) -> a float32 copy with the embedding columns projected."""
        out = np.array(X, dtype=np.float32, copy=True)
        cols = self._where()
        E = out[:, cols]
        # x' = x - scale * (z B^T) B with z B^T = x (B / scale)^T - (mean / scale) B^T: two
        # thin matrix products instead of standardising every value (a hot path of predict).
        coef = E @ (self.basis / self.scale).T.astype(np.float32)
        coef -= ((self.mean / self.scale) @ self.basis.T).astype(np.float32)
        out[:, cols] = E - coef @ (self.basis * self.scale).astype(np.float32)
        return out

    def _where(self) -> slice | np.ndarray:
        """The embedding's columns: a slice where they are contiguous (as the CNN's are),
        which numpy reads and writes without gathering."""
        c = self.columns
        if len(c) and np.array_equal(c, np.arange(c[0], c[0] + len(c))):
            return slice(int(c[0]), int(c[0]) + len(c))
        return c

    def pull_back(self, grad: np.ndarray) -> np.ndarray:
        """(..., c) gradient over the projected features -> over the raw features (the
        embedding part through the map's Jacobian, the others as they are)."""
        out = np.array(grad, dtype=np.float64, copy=True)
        g = out[..., self.columns] * self.scale
        g = g - (g @ self.basis.T) @ self.basis
        out[..., self.columns] = g / self.scale
        return out

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"directions": int(len(self.basis)), "accuracy": list(self.accuracy)}
        arrays = {
            "projection.columns": self.columns.astype(np.int64),
            "projection.mean": self.mean,
            "projection.scale": self.scale,
            "projection.basis": self.basis,
        }
        return meta, arrays

    @classmethod
    def from_state(
        cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], n_features: int
    ) -> CollectionProjection:
        try:
            cols = np.asarray(arrays["projection.columns"], dtype=np.int64)
            mean = np.asarray(arrays["projection.mean"], dtype=np.float64)
            scale = np.asarray(arrays["projection.scale"], dtype=np.float64)
            basis = np.asarray(arrays["projection.basis"], dtype=np.float64)
        except KeyError as exc:
            raise ModelError(f"damaged model state: missing array {exc}") from None
        d = len(cols)
        if (
            mean.shape != (d,)
            or scale.shape != (d,)
            or basis.ndim != 2
            or basis.shape[1] != d
            or (d and (cols.min() < 0 or cols.max() >= n_features))
            or not np.all(scale > 0)
        ):
            raise ModelError("damaged model state: collection projection arrays do not fit")
        return cls(cols, mean, scale, basis, [float(a) for a in meta.get("accuracy", [])])


def fit_collection_projection(
    E: np.ndarray,
    Y: np.ndarray,
    collections: Sequence[Any],
    directions: int,
    columns: np.ndarray,
    seed: int = 0,
) -> CollectionProjection | None:
    """Find ``directions`` collection directions of the embedding rows ``E`` (n, d), whose
    genres are ``Y`` (n, G) and collections ``collections`` (n,; None: a row that takes
    no part, such as an augmented copy). None when fewer than two collections take part
    (a collection needs ``MIN_ROWS_PER_COLLECTION`` rows).
    """
    from sklearn.linear_model import LogisticRegression

    coll = np.array(["" if c is None else str(c) for c in collections], dtype=object)
    names = sorted(c for c in set(coll) if c and int((coll == c).sum()) >= MIN_ROWS_PER_COLLECTION)
    part = np.isin(coll, names)
    if directions < 1 or len(names) < 2:
        return None
    E = np.asarray(E, dtype=np.float64)[part]
    Y = np.asarray(Y)[part] > 0
    coll = coll[part]
    mean = E.mean(0)
    std = E.std(0)
    scale = np.where(std > 1e-6, std, 1.0)
    Z = (E - mean) / scale
    # Centre within each genre set: what is left is how a poster differs from posters of
    # the same genres, where the collection is the only label.
    keys = np.packbits(Y, axis=1)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros((inverse.max() + 1, Z.shape[1]))
    np.add.at(sums, inverse, Z)
    counts = np.bincount(inverse).astype(np.float64)
    Z -= sums[inverse] / counts[inverse, None]
    rng = np.random.default_rng(seed)
    per = min(MAX_ROWS_PER_COLLECTION, min(int((coll == c).sum()) for c in names))
    rows = np.sort(
        np.concatenate([rng.choice(np.nonzero(coll == c)[0], per, replace=False) for c in names])
    )
    R = Z[rows]
    target = np.array([names.index(c) for c in coll[rows]])
    basis: list[np.ndarray] = []
    accuracy: list[float] = []
    while len(basis) < directions:
        clf = LogisticRegression(C=DIRECTION_C, max_iter=300).fit(R, target)
        accuracy.append(float(clf.score(R, target)))
        found = 0
        # Two collections give one direction a step; more give one per collection.
        for w in np.atleast_2d(clf.coef_):
            w = w.astype(np.float64)
            for b in basis:
                w = w - (w @ b) * b
            norm = float(np.linalg.norm(w))
            if norm < 1e-12 or len(basis) >= directions:
                continue
            w /= norm
            basis.append(w)
            R -= np.outer(R @ w, w)
            found += 1
        if not found:
            break
    return CollectionProjection(
        np.asarray(columns, dtype=np.int64), mean, scale, np.array(basis), accuracy
    )
