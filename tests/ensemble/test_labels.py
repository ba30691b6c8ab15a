"""Labels are joined by poster_id (sha256 of the file) and nothing is dropped silently."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from postergenre.ensemble.labels import build_vocabulary, join_labels, parse_genres, read_labels
from postergenre.errors import DataError


def _write(tmp_path: Path, rows: list[str], header: str = "file,split,genres") -> Path:
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join([header, *rows]) + "\n")
    return csv


def test_read_labels_hashes_files_relative_to_the_csv(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(b"poster a")
    csv = _write(tmp_path, ["img/a.jpg,train,Comedy|Drama", "img/missing.jpg,val,Drama"])
    rows = read_labels(csv)
    assert rows[0].poster_id == hashlib.sha256(b"poster a").hexdigest()
    assert rows[0].genres == ("Comedy", "Drama") and rows[0].split == "train"
    assert rows[1].poster_id is None and rows[1].problem == "missing_file"


def test_read_labels_accepts_poster_id_column(tmp_path: Path) -> None:
    csv = _write(tmp_path, ["ABC123,Horror"], header="poster_id,genres")
    rows = read_labels(csv, split_column=None)
    assert rows[0].poster_id == "abc123" and rows[0].split is None


@pytest.mark.parametrize(
    ("header", "message"),
    [("file,genre", "expected columns"), ("file,genres", "no split column")],
)
def test_bad_csv_is_a_data_error(tmp_path: Path, header: str, message: str) -> None:
    csv = _write(tmp_path, ["a.jpg,Drama"], header=header)
    with pytest.raises(DataError, match=message):
        read_labels(csv)


def test_parse_genres_drops_blanks_and_repeats() -> None:
    assert parse_genres(" Drama||Comedy|Drama ") == ("Drama", "Comedy")


def test_vocabulary_keeps_genres_with_min_count() -> None:
    vocab, counts = build_vocabulary([("A", "B"), ("A",), ("A", "C"), ("B",)], min_count=2)
    assert vocab == ["A", "B"] and counts["C"] == 1


def test_join_counts_every_dropped_row(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    files = {}
    for name in ("ok1", "ok2", "failed", "absent", "rare", "dup"):
        data = f"bytes of {name}".encode() if name != "dup" else b"bytes of ok1"
        (tmp_path / "p" / f"{name}.jpg").write_bytes(data)
        files[name] = hashlib.sha256(data).hexdigest()
    csv = _write(
        tmp_path,
        [
            "p/ok1.jpg,train,Drama",
            "p/ok2.jpg,train,Comedy|News",
            "p/failed.jpg,train,Drama",
            "p/absent.jpg,train,Drama",
            "p/rare.jpg,train,News",
            "p/gone.jpg,train,Drama",
            "p/dup.jpg,train,Drama",
            "p/ok2.jpg,val,Comedy",
        ],
    )
    rows = read_labels(csv)
    store_ids = sorted([files["ok1"], files["ok2"], files["rare"]])
    joined = join_labels(
        rows,
        store_ids,
        ["Comedy", "Drama"],
        failures={files["failed"]: "faces:corrupt"},
        splits=["train"],
    )
    r = joined.report
    assert r.kept == 3  # ok1, ok2, dup (same bytes as ok1)
    assert r.failed_extraction == {"faces:corrupt": 1}
    assert r.not_in_store == 1 and r.missing_file == 1 and r.no_known_genre == 1
    assert r.other_split == 1 and r.duplicate_poster == 1
    assert r.rare_genre_tags == {"News": 2}
    assert r.kept + r.dropped + r.other_split == r.label_rows
    assert joined.Y.tolist() == [[0, 1], [1, 0], [0, 1]]
    assert [store_ids[i] for i in joined.store_rows] == [files["ok1"], files["ok2"], files["ok1"]]
    text = "\n".join(r.lines())
    assert "feature extraction failed (faces:corrupt 1)" in text
    assert "not in the store" in text and "no genre in the vocabulary" in text


def test_load_labelled_joins_a_store_made_elsewhere(tmp_path: Path) -> None:
    """Rows join by file bytes, so a store whose recorded paths differ still matches."""
    from postergenre.ensemble.data import load_labelled
    from postergenre.ensemble.synthetic import make_labelled_store

    syn = make_labelled_store(tmp_path / "a", n=40, seed=1)
    moved = tmp_path / "moved"
    syn.labels.parent.rename(moved)
    data = load_labelled(moved / "store", moved / "labels.csv", min_count=1)
    assert data.report.kept == 40
    order = {pid: i for i, pid in enumerate(syn.poster_ids)}
    rows = [order[p] for p in data.poster_ids]
    np.testing.assert_array_equal(
        data.Y, syn.Y[rows][:, [syn.genres.index(g) for g in data.genres]]
    )
    np.testing.assert_allclose(data.X, syn.X[rows])
