"""Exact additive explanations of the stack's log-odds.

The meta model is linear in the level-0 margins, and XGBoost splits its margin exactly
per feature (``pred_contribs``, TreeSHAP), so for every poster and genre::

    logit = base + contributions.sum(-1)

where ``contributions[..., c]`` is meta weight x that feature's contribution inside the
XGBoost model, summed over the XGBoost outputs the meta model reads, and a base that
cannot be split (the MLP on the CNN embedding) is one pseudo-cue (``cnn.embedding``)
carrying meta weight x (its margin - its mean margin on the training posters). ``base``
holds the meta intercept, the meta weight x XGBoost's bias (its expected margin, genre
prior included) and the meta weight x each unsplit base's mean margin: the log-odds of a
typical poster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Explanation:
    """``base`` (n, G), ``contributions`` (n, G, C), ``logit`` (n, G) float64;
    ``cue_names`` (C,); ``genres`` (G,)."""

    base: np.ndarray
    contributions: np.ndarray
    cue_names: list[str]
    logit: np.ndarray
    genres: list[str]

    @property
    def proba(self) -> np.ndarray:
        """(n, G) probabilities, identical to ``predict_proba``."""
        return 1.0 / (1.0 + np.exp(-self.logit))

    def max_error(self) -> float:
        """Largest |base + sum(contributions) - logit| (0 up to float rounding)."""
        if self.logit.size == 0:
            return 0.0
        return float(np.abs(self.base + self.contributions.sum(-1) - self.logit).max())

    def top(self, row: int, genre: int | str, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` cues with the largest |contribution| to one genre of one poster."""
        g = self.genres.index(genre) if isinstance(genre, str) else int(genre)
        c = self.contributions[row, g]
        order = np.argsort(-np.abs(c), kind="mergesort")[:k]
        return [(self.cue_names[i], float(c[i])) for i in order]
