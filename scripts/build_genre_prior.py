"""Derive the shipped reference genre prior and genre-combination table from an IMDb genre list.

    python scripts/build_genre_prior.py ../shared/data/imdb_genres.csv

Writes ``src/postergenre/data/genre_prior.json`` (each genre's share among the listed
films) and ``src/postergenre/data/genre_sets.json`` (how many films carry each combination
of genres). Statistics only; the list itself (film ids) is not shipped.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from postergenre.ensemble.genre_sets import SETS_FILE, GenreSetTable
from postergenre.ensemble.label_shift import PRIOR_FILE, prior_from_genre_lists
from postergenre.ensemble.labels import parse_genres


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path, help="imdb_id,genres CSV (pipe-separated genres)")
    ap.add_argument("--out", type=Path, default=PRIOR_FILE)
    ap.add_argument("--sets-out", type=Path, default=SETS_FILE)
    args = ap.parse_args()
    with open(args.csv, newline="", encoding="utf-8") as fh:
        lists = [parse_genres(r["genres"]) for r in csv.DictReader(fh)]
    prior = prior_from_genre_lists(lists, source="IMDb genres of 36,918 films")
    prior = type(prior)(prior.shares, source=f"IMDb genres of {prior.n:,} films", n=prior.n)
    d = prior.to_dict()
    d["shares"] = {g: round(v, 6) for g, v in d["shares"].items()}
    args.out.write_text(json.dumps(d, indent=1) + "\n")
    print(f"wrote {args.out}: {len(d['shares'])} genres from {prior.n} films")
    table = GenreSetTable.from_genre_lists(lists, source=f"IMDb genres of {prior.n:,} films")
    d = table.to_dict()
    rows = ",\n".join("  " + json.dumps(r) for r in d.pop("sets"))
    head = json.dumps(d, indent=1)[:-2]  # one combination per line: readable diffs
    args.sets_out.write_text(f'{head},\n "sets": [\n{rows}\n ]\n}}\n')
    print(f"wrote {args.sets_out}: {len(table.sets)} genre combinations from {table.n} films")


if __name__ == "__main__":
    main()
