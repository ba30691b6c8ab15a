"""Genre combinations that films have: conditioning the stack's genres on them.

The stack scores every genre on its own: log-odds ``z`` (n, G). Read as independent yes/no
answers they spread probability over genre sets no film has: IMDb lists at most three
genres per film, and some genres almost never go together (a documentary is seldom also a
horror film). Among 36,918 IMDb films 423 sets of the model genres occur at least five
times. :class:`GenreSets` keeps those sets (the *support*) and conditions on them::

    P(S | poster) = exp(1_S . (z + b)) / sum over supported S' of exp(1_S' . (z + b))

and a genre's probability is the mass of the supported sets that hold it. Over every
possible set this gives back ``sigmoid(z + b)`` exactly (the genres independent); over the
supported ones, a poster whose Documentary and Drama scores are both high has to choose.
The offsets ``b`` (G,) are fitted on the training rows so that each genre's (label-
weighted) mean probability stays what the stack's own was: the probabilities still mean
"among IMDb films".

The shipped table (``postergenre/data/genre_sets.json``) holds only counts of genre
combinations (statistics of the film list, not the list). A set must occur in at least
``min_count`` films to be supported, so no single film decides what is possible.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from postergenre.errors import ConfigError, ModelError

#: Where the shipped table of genre combinations lives (package data).
SETS_FILE = Path(__file__).resolve().parents[1] / "data" / "genre_sets.json"
#: A combination must be this common among the table's films to be supported.
DEFAULT_MIN_COUNT = 5
#: The cue name the conditioning's share of a genre's log-odds goes to in explanations.
GENRE_SETS_CUE = "genres.combination"
_LOG_FLOOR = 1e-300
_MAX_OFFSET = 8.0


@dataclass(frozen=True)
class GenreSetTable:
    """How many films carry each combination of genres: ``sets`` maps a sorted tuple of
    genre names to its count; ``n`` films in all; ``source`` says whose films."""

    sets: Mapping[tuple[str, ...], int]
    n: int
    source: str = ""

    @classmethod
    def from_genre_lists(cls, lists: Iterable[Iterable[str]], source: str) -> GenreSetTable:
        counts: Counter[tuple[str, ...]] = Counter(tuple(sorted(set(gl))) for gl in lists)
        n = sum(counts.values())
        if not n:
            raise ConfigError(f"genre sets from {source}: no films to count")
        return cls(dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))), n, source)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "n": self.n,
            "sets": [{"genres": list(s), "films": c} for s, c in self.sets.items()],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> GenreSetTable:
        try:
            sets = {tuple(sorted(map(str, r["genres"]))): int(r["films"]) for r in d["sets"]}
            n = int(d.get("n") or sum(sets.values()))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f"genre sets {where}: expected {{'sets': [{{'genres': [...], 'films': n}}]}}"
            ) from None
        if not sets or any(c < 0 for c in sets.values()):
            raise ConfigError(f"genre sets {where}: expected at least one set, counts >= 0")
        return cls(sets, n, str(d.get("source", where)))

    def support(self, genres: Sequence[str], min_count: int = DEFAULT_MIN_COUNT) -> GenreSets:
        """The combinations of ``genres`` (the others dropped from each film's set) that at
        least ``min_count`` films have, the empty one excepted (every poster the model
        learns from has a genre). Refused when a genre is in no such combination: it
        could never be predicted."""
        index = {g: j for j, g in enumerate(genres)}
        counts: Counter[tuple[int, ...]] = Counter()
        for names, c in self.sets.items():
            counts[tuple(sorted(index[g] for g in names if g in index))] += c
        kept = sorted(
            (s for s, c in counts.items() if s and c >= min_count), key=lambda s: (len(s), s)
        )
        support = np.zeros((len(kept), len(genres)), dtype=bool)
        for k, cols in enumerate(kept):
            support[k, np.asarray(cols, dtype=np.int64)] = True
        missing = [g for j, g in enumerate(genres) if not support[:, j].any()]
        if missing:
            raise ConfigError(
                f"genre sets ({self.source}): no combination of {min_count}+ films holds "
                f"{', '.join(missing)}",
                hint="train without genre sets (--genre-sets none) or give a table that "
                "names these genres",
            )
        return GenreSets(
            genres=tuple(genres),
            support=support,
            counts=np.array([counts[s] for s in kept], dtype=np.int64),
            offset=np.zeros(len(genres)),
            source=self.source,
            n_films=self.n,
            min_count=int(min_count),
        )


def read_genre_set_table(path: str | Path | None = None) -> GenreSetTable:
    """The table in ``path`` (JSON as :meth:`GenreSetTable.to_dict` writes it, or a CSV
    with a ``genres`` column of ``|``-separated genre lists, one film per row); the
    shipped one without a path."""
    p = Path(path) if path is not None else SETS_FILE
    if not p.is_file():
        raise ConfigError(f"genre sets {p} does not exist")
    text = p.read_text(encoding="utf-8-sig")
    if p.suffix.lower() == ".csv":
        import csv

        from postergenre.ensemble.labels import parse_genres

        rows = list(csv.DictReader(text.splitlines()))
        if not rows or "genres" not in rows[0]:
            raise ConfigError(f"genre sets {p}: expected a CSV with a 'genres' column")
        return GenreSetTable.from_genre_lists((parse_genres(r["genres"]) for r in rows), str(p))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"genre sets {p}: not JSON ({exc})") from None
    return GenreSetTable.from_dict(data, where=str(p))


@dataclass(frozen=True, eq=False)
class GenreSets:
    """The supported genre sets of one model and the conditioning on them (see the module
    docstring). ``support`` (K, G) bool, ``counts`` (K,) films with each set, ``offset``
    (G,) added to the log-odds before conditioning."""

    genres: tuple[str, ...]
    support: np.ndarray
    counts: np.ndarray
    offset: np.ndarray
    source: str = ""
    n_films: int = 0
    min_count: int = DEFAULT_MIN_COUNT
    #: The support as 0/1 floats, for the matrix products of every call (derived).
    _U: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        G = len(self.genres)
        if self.support.ndim != 2 or self.support.shape[1] != G or not len(self.support):
            raise ModelError(f"genre sets: expected a (K, {G}) support, got {self.support.shape}")
        if self.offset.shape != (G,) or self.counts.shape != (len(self.support),):
            raise ModelError("genre sets: offset or counts do not match the support")
        if not self.support.any(axis=0).all() or not np.isfinite(self.offset).all():
            raise ModelError("genre sets: a genre in no supported set, or a non-finite offset")
        object.__setattr__(self, "_U", self.support.astype(np.float64))

    @property
    def max_genres(self) -> int:
        """The most genres a supported set holds."""
        return int(self.support.sum(axis=1).max())

    def set_proba(self, z: np.ndarray) -> np.ndarray:
        """(n, G) independent log-odds -> (n, K) probability of each supported set (the
        rows of :attr:`support`)."""
        return _set_weights(np.asarray(z, dtype=np.float64) + self.offset, self._U)

    def log_odds(self, z: np.ndarray) -> np.ndarray:
        """(n, G) independent log-odds -> (n, G) log-odds of each genre given that the
        poster's genres form a supported set."""
        w = self.set_proba(z)
        pos = np.maximum(w @ self._U, _LOG_FLOOR)
        neg = np.maximum(w @ (1.0 - self._U), _LOG_FLOOR)
        return np.log(pos) - np.log(neg)

    def proba(self, z: np.ndarray) -> np.ndarray:
        """(n, G) independent log-odds -> (n, G) conditioned probabilities."""
        return self.set_proba(z) @ self._U

    def jacobian(self, z: np.ndarray) -> np.ndarray:
        """(n, G, G) derivative of :meth:`log_odds` [n, g] with respect to ``z`` [n, h]:
        ``Cov(1_g, 1_h) / (q_g (1 - q_g))`` under the poster's set probabilities."""
        w = self.set_proba(z)
        U = self._U
        q = w @ U
        both = np.einsum("nk,kg,kh->ngh", w, U, U)
        cov = both - q[:, :, None] * q[:, None, :]
        return cov / np.maximum(q * (1.0 - q), _LOG_FLOOR)[:, :, None]

    def calibrated(
        self, z: np.ndarray, weights: np.ndarray | None = None, max_iter: int = 200
    ) -> GenreSets:
        """A copy whose offsets make each genre's (``weights``-weighted, (n, G)) mean
        conditioned probability over the rows ``z`` (n, G) equal the mean of
        ``sigmoid(z)``: conditioning then reorders probability between genres and posters
        without changing how common each genre is said to be. (Offsets stay within
        +/-8: where the support cannot reach a mean, the genre gets as close as that allows.)"""
        z = np.asarray(z, dtype=np.float64)
        W = np.ones_like(z) if weights is None else np.asarray(weights, dtype=np.float64)
        if W.shape != z.shape:
            raise ValueError(f"expected weights of shape {z.shape}, got {W.shape}")
        Wsum = np.maximum(W.sum(axis=0), _LOG_FLOOR)
        target = np.clip((W / (1.0 + np.exp(-z))).sum(axis=0) / Wsum, 1e-6, 1 - 1e-6)
        b = np.zeros(z.shape[1])
        for _ in range(max_iter):
            q = _set_weights(z + b, self._U) @ self._U
            m = np.clip((W * q).sum(axis=0) / Wsum, 1e-6, 1 - 1e-6)
            step = np.log(target / (1 - target)) - np.log(m / (1 - m))
            # Bounded: a mean no supported set can reach (say, genres that never go
            # together asked to add up past 1) must not run the offsets off to infinity.
            b = np.clip(b + step, -_MAX_OFFSET, _MAX_OFFSET)
            if np.abs(step).max() < 1e-7:
                break
        return dataclasses.replace(self, offset=b)

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta: dict[str, Any] = {
            "source": self.source,
            "n_films": int(self.n_films),
            "min_count": int(self.min_count),
            "sets": int(len(self.support)),
        }
        arrays: dict[str, np.ndarray] = {
            "genre_sets.support": self.support.astype(np.uint8),
            "genre_sets.counts": self.counts.astype(np.int64),
            "genre_sets.offset": self.offset.astype(np.float64),
        }
        return meta, arrays

    @classmethod
    def from_state(
        cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], genres: Sequence[str]
    ) -> GenreSets:
        try:
            support = np.asarray(arrays["genre_sets.support"]).astype(bool)
            counts = np.asarray(arrays["genre_sets.counts"]).astype(np.int64)
            offset = np.asarray(arrays["genre_sets.offset"], dtype=np.float64)
        except KeyError as exc:
            raise ModelError(f"model bundle: genre sets lack the array {exc}") from None
        if support.shape[0] != int(meta.get("sets", -1)):
            raise ModelError("model bundle: genre sets: the support does not match its record")
        n_films, min_count = int(meta.get("n_films", 0)), int(meta.get("min_count", 0))
        source = str(meta.get("source", ""))
        return cls(tuple(genres), support, counts, offset, source, n_films, min_count)


def _set_weights(z: np.ndarray, U: np.ndarray) -> np.ndarray:
    """(n, G) log-odds (offsets added) and (K, G) 0/1 support -> (n, K) probability of each
    supported set: a softmax over the sets of the sum of their genres' log-odds."""
    s = z @ U.T
    s -= s.max(axis=1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)
