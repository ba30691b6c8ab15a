"""Label shift between poster collections, and the reference genre prior.

Training posters come from collections that sampled genres very differently (one holds
only movies whose first genre is Comedy or Drama). If each collection's labels are taken
as they are, "looks like a poster of collection A" becomes evidence for A's genres, and a
model learns the collection instead of the genre. Two rules remove that signal:

- **unlabelled, not negative**: where a collection's share of a genre is far below the
  reference prior (below ``min_ratio`` times it), the collection evidently did not sample
  that genre; its rows get weight 0 for it (they say nothing about it either way);
- **reweighted to the reference**: elsewhere, within every collection, positives of a genre
  weigh ``q / p`` and negatives ``(1 - q) / (1 - p)`` (``p`` the collection's share, ``q``
  the reference), so each collection's weighted share equals the reference and its mean
  weight stays 1. Then knowing the collection tells a learner nothing about the genre.

The result is a per-(poster, genre) weight matrix that every learner, threshold tuner and
metric of the ensemble honours. The default reference prior is the share of each genre
among 36,918 IMDb films (``postergenre/data/genre_prior.json``), so the shipped model's
probabilities mean "among IMDb films"; :func:`adapt_to_prior` moves them to a catalogue
with another genre mix (the standard label-shift correction).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from postergenre.errors import ConfigError, DataError

#: Where the default reference prior lives (package data).
PRIOR_FILE = Path(__file__).resolve().parents[1] / "data" / "genre_prior.json"
#: The group column of the shared labels.
DEFAULT_GROUP_COLUMN = "source"
#: Keep probabilities this far from 0 and 1 when adapting (finite log-odds).
_EPS = 1e-6


@dataclass(frozen=True)
class GenrePrior:
    """Share of films carrying each genre (a genre's share is independent of the others').

    ``shares``: genre -> share in (0, 1); ``source``: where the figures come from;
    ``n``: how many films they were counted on (0 when unknown).
    """

    shares: Mapping[str, float]
    source: str = ""
    n: int = 0

    def __post_init__(self) -> None:
        for g, v in self.shares.items():
            if not (isinstance(v, int | float) and 0.0 < float(v) < 1.0):
                raise ConfigError(f"genre prior: share of {g!r}: expected 0 < share < 1, got {v!r}")

    def vector(self, genres: Sequence[str], where: str = "") -> np.ndarray:
        """(G,) shares of ``genres``; a ConfigError names every genre the prior lacks."""
        missing = [g for g in genres if g not in self.shares]
        if missing:
            raise ConfigError(
                f"genre prior {where or self.source}: no share for {', '.join(missing)}",
                hint="give a share (0 < share < 1) for every genre of the model",
            )
        return np.array([float(self.shares[g]) for g in genres], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "n": self.n, "shares": dict(self.shares)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> GenrePrior:
        shares = d.get("shares", d)
        if not isinstance(shares, Mapping) or not shares:
            raise ConfigError(
                f"genre prior {where}: expected a JSON object of genre -> share, or "
                '{"shares": {...}}'
            )
        try:
            clean = {str(k): float(v) for k, v in shares.items()}
        except (TypeError, ValueError):
            raise ConfigError(f"genre prior {where}: every share must be a number") from None
        return cls(clean, source=str(d.get("source", where)), n=int(d.get("n", 0) or 0))


def default_prior() -> GenrePrior:
    """The shipped reference prior: genre shares among IMDb films."""
    return read_prior(PRIOR_FILE)


def read_prior(path: str | os.PathLike[str]) -> GenrePrior:
    """A prior from a JSON file (``{"Drama": 0.5, ...}`` or ``{"shares": {...}}``) or a CSV
    with ``genre,share`` columns."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"genre prior {p} does not exist")
    text = p.read_text(encoding="utf-8-sig")
    if p.suffix.lower() == ".csv":
        import csv

        rows = list(csv.DictReader(text.splitlines()))
        if not rows or not {"genre", "share"} <= set(rows[0]):
            raise ConfigError(f"genre prior {p}: expected CSV columns 'genre' and 'share'")
        try:
            shares = {r["genre"].strip(): float(r["share"]) for r in rows}
        except ValueError:
            raise ConfigError(f"genre prior {p}: every share must be a number") from None
        return GenrePrior(shares, source=str(p))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"genre prior {p}: not JSON ({exc})") from None
    prior = GenrePrior.from_dict(data, where=str(p))
    return prior if prior.source else GenrePrior(prior.shares, str(p), prior.n)


def prior_from_genre_lists(genre_lists: Sequence[Sequence[str]], source: str) -> GenrePrior:
    """Shares of each genre among films given as genre lists (e.g. ``imdb_genres.csv``)."""
    from collections import Counter

    n = len(genre_lists)
    if not n:
        raise DataError(f"{source}: no films to count genres on")
    counts: Counter[str] = Counter()
    for gl in genre_lists:
        counts.update(set(gl))
    # Smoothed so a genre seen once never gets share 0 or 1.
    shares = {g: (c + 0.5) / (n + 1.0) for g, c in sorted(counts.items())}
    return GenrePrior(shares, source=source, n=n)


# -- label weights -------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightRule:
    """How collections' labels are weighted towards the reference prior.

    ``min_ratio``: a collection whose share of a genre is below ``min_ratio`` x the
    reference share did not sample that genre (its rows are unlabelled for it).
    ``max_weight``: cap on any single weight (a genre a collection barely sampled would
    otherwise hang on a few posters).
    """

    min_ratio: float = 0.25
    max_weight: float = 10.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_ratio < 1.0:
            raise ConfigError(f"min_ratio: expected 0 <= ratio < 1, got {self.min_ratio}")
        if not self.max_weight >= 1.0:
            raise ConfigError(f"max_weight: expected >= 1, got {self.max_weight}")


@dataclass
class LabelWeights:
    """Per-(poster, genre) weights and how they were made.

    ``W`` (n, G) float64 >= 0; ``table``: one row per (collection, genre) with the
    collection's share, the reference share, the decision (``masked`` or ``weighted``)
    and the positive/negative weights.
    """

    W: np.ndarray
    genres: list[str]
    groups: list[str]
    rule: WeightRule
    prior: GenrePrior
    table: list[dict[str, Any]] = field(default_factory=list)

    def masked(self) -> dict[str, list[str]]:
        """collection -> genres its rows are unlabelled for."""
        out: dict[str, list[str]] = {}
        for row in self.table:
            if row["decision"] == "masked":
                out.setdefault(row["collection"], []).append(row["genre"])
        return out

    def lines(self) -> list[str]:
        """The rule, its cut-offs and the weight table, for people (stderr, model card)."""
        out = [
            f"label weights: within each collection ({', '.join(sorted(set(self.groups)))}), "
            f"each genre is reweighted to the reference prior ({self.prior.source}); a "
            f"collection whose share of a genre is below {self.rule.min_ratio:g} x the "
            "reference leaves that genre unlabelled (weight 0); weights are capped at "
            f"{self.rule.max_weight:g}",
        ]
        for coll, gs in sorted(self.masked().items()):
            out.append(f"  {coll}: unlabelled for {', '.join(gs)}")
        return out

    def markdown_table(self) -> str:
        """collection x genre: share in the collection / reference, and the weights."""
        colls = sorted({r["collection"] for r in self.table})
        head = "| genre | reference | " + " | ".join(colls) + " |"
        sep = "|---|---|" + "---|" * len(colls)
        rows = [head, sep]
        by = {(r["collection"], r["genre"]): r for r in self.table}
        for g in self.genres:
            ref = by[(colls[0], g)]["reference"] if colls else math.nan
            cells = []
            for c in colls:
                r = by[(c, g)]
                if r["decision"] == "masked":
                    cells.append(f"{r['share']:.1%}: unlabelled")
                else:
                    cells.append(f"{r['share']:.1%}: +{r['w_pos']:.2f} / -{r['w_neg']:.2f}")
            rows.append(f"| {g} | {ref:.1%} | " + " | ".join(cells) + " |")
        return "\n".join(rows)

    def weights_for(self, Y: np.ndarray, groups: Sequence[str | None]) -> np.ndarray:
        """(n, G) weights of other rows (e.g. validation) by this table: a row of a known
        collection gets that collection's cell weights; rows of other collections get 1."""
        return table_weights(self.table, self.genres, Y, groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": {"min_ratio": self.rule.min_ratio, "max_weight": self.rule.max_weight},
            "prior": self.prior.to_dict(),
            "table": self.table,
        }


def collection_weights(
    Y: np.ndarray,
    groups: Sequence[str],
    genres: Sequence[str],
    prior: GenrePrior,
    rule: WeightRule = WeightRule(),
) -> LabelWeights:
    """Weights (n, G) for labels ``Y`` (n, G) 0/1 of posters from collections ``groups`` (n,).

    See the module docstring for the rule. A collection-genre cell with no positive at all
    is masked whatever ``min_ratio`` says (nothing to weight).
    """
    Yb = np.asarray(Y) > 0
    n, G = Yb.shape
    if len(groups) != n:
        raise ValueError(f"expected one collection per row ({n}), got {len(groups)}")
    if len(genres) != G:
        raise ValueError(f"expected {G} genre names, got {len(genres)}")
    q = prior.vector(genres)
    W = np.ones((n, G), dtype=np.float64)
    table: list[dict[str, Any]] = []
    garr = np.asarray(list(groups), dtype=object)
    for coll in sorted(set(groups)):
        rows = garr == coll
        m = int(rows.sum())
        share = Yb[rows].mean(0)
        for g in range(G):
            p = float(share[g])
            entry: dict[str, Any] = {
                "collection": coll,
                "genre": genres[g],
                "posters": m,
                "positives": int(Yb[rows, g].sum()),
                "share": p,
                "reference": float(q[g]),
            }
            if p <= 0.0 or p < rule.min_ratio * q[g]:
                W[rows, g] = 0.0
                entry.update(decision="masked", w_pos=0.0, w_neg=0.0)
            else:
                w_pos = min(q[g] / p, rule.max_weight)
                w_neg = min((1.0 - q[g]) / (1.0 - p), rule.max_weight) if p < 1.0 else 0.0
                W[rows, g] = np.where(Yb[rows, g], w_pos, w_neg)
                entry.update(decision="weighted", w_pos=float(w_pos), w_neg=float(w_neg))
            table.append(entry)
    return LabelWeights(W, list(genres), list(groups), rule, prior, table)


# -- adapting probabilities to another prior ------------------------------------------------
def adapt_to_prior(P: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Probabilities ``P`` (..., G) that refer to genre shares ``source`` (G,) -> the same
    posters' probabilities in a catalogue with shares ``target`` (G,).

    The standard label-shift correction, per genre: the odds are multiplied by
    ``(t / s) / ((1 - t) / (1 - s))``; in log-odds, ``logit(p') = logit(p) + logit(t) -
    logit(s)``. Monotone per genre, so a threshold adapts by the same formula.
    """
    P = np.clip(np.asarray(P, dtype=np.float64), _EPS, 1.0 - _EPS)
    return 1.0 / (1.0 + np.exp(-(_logit(P) + prior_shift(source, target))))


def prior_shift(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(G,) the log-odds shift :func:`adapt_to_prior` adds."""
    return _logit(np.asarray(target, dtype=np.float64)) - _logit(np.asarray(source, np.float64))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(p / (1.0 - p))


def table_weights(
    table: Sequence[Mapping[str, Any]],
    genres: Sequence[str],
    Y: np.ndarray,
    groups: Sequence[str | None],
) -> np.ndarray:
    """(n, G) weights of rows ``Y`` (n, G) from collections ``groups`` by a weight table
    (:attr:`LabelWeights.table`, as a bundle records it). Unknown collections weigh 1."""
    Yb = np.asarray(Y) > 0
    cells = {(str(r["collection"]), str(r["genre"])): r for r in table}
    W = np.ones(Yb.shape, dtype=np.float64)
    for i, grp in enumerate(groups):
        for g, genre in enumerate(genres):
            r = cells.get((str(grp), genre))
            if r is not None:
                W[i, g] = float(r["w_pos"] if Yb[i, g] else r["w_neg"])
    return W


@dataclass(frozen=True)
class FirstGenreSelection:
    """A collection that kept only films whose first-listed genre is one of ``first``.

    IMDb lists a film's genres alphabetically, so such a collection holds, for instance,
    no Action film at all and a Drama only where no Comedy (nor Crime or Documentary)
    comes first: "no Comedy" there means "Drama", which holds nowhere else. A learner
    told of the selection scores each of the collection's rows by
    ``P(genres | poster) / P(kept | poster)`` instead of ``P(genres | poster)``, with
    ``P(kept) = sum over a in first of p_a * prod over genres g sorting before a of
    (1 - p_g)`` (genres independent given the poster), so it learns the genres of films at
    large, not of the collection's selection (see :func:`selection_matrix`).
    """

    collection: str
    first: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> FirstGenreSelection:
        """``"perceptilabs=Comedy,Drama"`` -> the collection and its admissible first genres."""
        name, sep, rest = text.partition("=")
        first = tuple(g.strip() for g in rest.split(",") if g.strip())
        if not sep or not name.strip() or not first:
            raise ConfigError(
                f"selection {text!r}: expected COLLECTION=GENRE[,GENRE...], "
                "e.g. perceptilabs=Comedy,Drama"
            )
        return cls(name.strip(), first)

    def describe(self) -> str:
        return f"{self.collection}: kept only films whose first-listed genre is " + " or ".join(
            self.first
        )


def selection_record(selections: Sequence[FirstGenreSelection]) -> dict[str, list[str]]:
    """collection -> its admissible first genres, as bundles and cards record them."""
    return {s.collection: list(s.first) for s in selections}


def selection_matrix(
    selections: Sequence[FirstGenreSelection],
    row_groups: Sequence[str | None],
    genres: Sequence[str],
) -> np.ndarray | None:
    """(n, G) bool: for a row of a selected collection, the genres that may come first in
    its genre list (all False for other rows); None without selections. Raises
    ConfigError for a collection no row belongs to or a genre the model does not know."""
    if not selections:
        return None
    index = {g: j for j, g in enumerate(genres)}
    groups = np.asarray([str(g) if g is not None else "" for g in row_groups], dtype=object)
    A = np.zeros((len(groups), len(genres)), dtype=bool)
    for s in selections:
        unknown = [g for g in s.first if g not in index]
        if unknown:
            raise ConfigError(
                f"selection {s.collection}: unknown genre(s) {', '.join(unknown)} "
                f"(the model's genres: {', '.join(genres)})"
            )
        rows = groups == s.collection
        if not rows.any():
            raise ConfigError(
                f"selection {s.collection}: no training poster is from that collection "
                f"(collections: {', '.join(sorted(set(groups.tolist())))})"
            )
        A[np.ix_(rows, [index[g] for g in s.first])] = True
    return A
