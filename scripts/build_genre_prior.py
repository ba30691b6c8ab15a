"""Derive the shipped reference genre prior from an IMDb genre list.

    python scripts/build_genre_prior.py ../shared/data/imdb_genres.csv

Writes ``src/postergenre/data/genre_prior.json``: each genre's share among the listed films
(statistics only; the list itself is not shipped).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from postergenre.ensemble.label_shift import PRIOR_FILE, prior_from_genre_lists
from postergenre.ensemble.labels import parse_genres


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path, help="imdb_id,genres CSV (pipe-separated genres)")
    ap.add_argument("--out", type=Path, default=PRIOR_FILE)
    args = ap.parse_args()
    with open(args.csv, newline="", encoding="utf-8") as fh:
        lists = [parse_genres(r["genres"]) for r in csv.DictReader(fh)]
    prior = prior_from_genre_lists(lists, source="IMDb genres of 36,918 films")
    prior = type(prior)(prior.shares, source=f"IMDb genres of {prior.n:,} films", n=prior.n)
    d = prior.to_dict()
    d["shares"] = {g: round(v, 6) for g, v in d["shares"].items()}
    args.out.write_text(json.dumps(d, indent=1) + "\n")
    print(f"wrote {args.out}: {len(d['shares'])} genres from {prior.n} films")


if __name__ == "__main__":
    main()
