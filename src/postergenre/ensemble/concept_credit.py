"""Credit part of the CNN embedding's opinion to the named visual concepts it recognises.

The MLP on the CNN embedding cannot be split per input, so its whole say used to be one
opaque cue ("the poster's overall look"). The named concepts (``concepts.*``: weapons,
gowns, drawn art...) are computed by the same ImageNet network from the same view of the
poster, so much of what the embedding says can be told in their words: on the training
posters, a ridge regression of the MLP's margin on the concepts' log scores explains about
44% of its variance on val posters (the shipped model, per genre median).

:class:`ConceptCredit` holds that regression. An explanation credits each concept with
``coef[c] * (log(score[c] + eps) - mean[c])`` of the MLP's margin (times the meta weight)
and leaves the residual to the embedding cue, so ``base + sum(contributions) == logit``
still holds exactly and predictions do not change at all. It is a description of the
embedding's opinion in terms of what the network recognises, not a second model: the card
reports the checkable share with and without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from postergenre.errors import ModelError

#: Feature-name prefix of the named concepts.
CONCEPT_PREFIX = "concepts."
#: Added before the log: concept scores are shares in [0, 1], many near 0.
EPS = 1e-3
#: Ridge penalty, relative to the number of rows x the mean feature variance (chosen on
#: val R^2 of the shipped model's MLP margin: 0.01 -> 0.443, 0.1 -> 0.436, 1 -> 0.352).
RIDGE = 0.01


@dataclass(frozen=True, eq=False)
class ConceptCredit:
    """``base``: index of the embedding base; ``columns``: concept feature names (c,);
    ``mean`` (c,) of the log scores on the training posters; ``coef`` (c, G_out)."""

    base: int
    columns: tuple[str, ...]
    mean: np.ndarray
    coef: np.ndarray

    def features(self, X: np.ndarray) -> np.ndarray:
        """(n, c) concept scores -> (n, c) centred log scores (missing -> 0: the mean)."""
        F = np.log(np.clip(np.asarray(X, dtype=np.float64), 0.0, None) + EPS) - self.mean
        return np.nan_to_num(F, nan=0.0, posinf=0.0, neginf=0.0)

    def parts(self, X: np.ndarray) -> np.ndarray:
        """(n, c) concept scores -> (n, G_out, c): each concept's share of the margin."""
        F = self.features(X)
        return F[:, None, :] * self.coef.T[None, :, :]

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"base": self.base, "columns": list(self.columns), "eps": EPS}
        return meta, {"credit.mean": self.mean, "credit.coef": self.coef}

    @classmethod
    def from_state(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> ConceptCredit:
        try:
            columns = tuple(str(c) for c in meta["columns"])
            mean = np.asarray(arrays["credit.mean"], dtype=np.float64)
            coef = np.asarray(arrays["credit.coef"], dtype=np.float64)
            base = int(meta["base"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"damaged model state: concept credit missing {exc}") from None
        if float(meta.get("eps", EPS)) != EPS:
            raise ModelError("model made by another postergenre: concept credit eps differs")
        if mean.shape != (len(columns),) or coef.ndim != 2 or coef.shape[0] != len(columns):
            raise ModelError("damaged model state: concept credit arrays do not fit")
        return cls(base=base, columns=columns, mean=mean, coef=coef)


def fit_concept_credit(
    margin: np.ndarray, X: np.ndarray, feature_names: Sequence[str], base: int
) -> ConceptCredit | None:
    """Ridge regression of an embedding base's training margins (n, G_out) on the concept
    columns of ``X`` (n, d); None when there are no concept columns or too few rows."""
    cols = [j for j, n in enumerate(feature_names) if str(n).startswith(CONCEPT_PREFIX)]
    M = np.asarray(margin, dtype=np.float64)
    if not cols or len(M) < 2 * len(cols):
        return None
    L = np.log(np.clip(np.asarray(X[:, cols], dtype=np.float64), 0.0, None) + EPS)
    L = np.where(np.isfinite(L), L, np.nan)
    mean = np.nan_to_num(np.nanmean(L, axis=0))
    F = np.nan_to_num(L - mean)
    penalty = RIDGE * len(F) * max(float(F.var(0).mean()), 1e-12)
    A = F.T @ F + penalty * np.eye(len(cols))
    coef = np.linalg.solve(A, F.T @ (M - M.mean(0)))
    return ConceptCredit(
        base=base,
        columns=tuple(str(feature_names[j]) for j in cols),
        mean=mean,
        coef=coef,
    )
