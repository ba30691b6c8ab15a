"""`postergenre analyze`: every option, JSON lines, cards, bad files and exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from conftest import encode, make_poster

from postergenre.cli.analyze import card_paths, expand_posters, parse_threshold


def _write(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(make_poster(seed), "JPEG", quality=90))
    return path


# -- argument helpers (no model needed) ------------------------------------------------------


def test_expand_posters_files_folders_globs_in_the_order_given(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jpg")
    _write(tmp_path / "dir" / "sub" / "c.png")
    _write(tmp_path / "dir" / "b.JPG")
    (tmp_path / "dir" / "notes.txt").write_text("not a poster")
    (tmp_path / "empty").mkdir()
    got = expand_posters(
        [
            str(tmp_path / "dir"),
            str(a),
            str(tmp_path / "*.jpg"),  # matches a.jpg again: kept once
            str(tmp_path / "nothing*.jpg"),
            str(tmp_path / "empty"),
            str(tmp_path / "missing.jpg"),
        ]
    )
    paths = [p for p, problem in got if problem is None]
    assert paths == [
        str(tmp_path / "dir" / "b.JPG"),
        str(tmp_path / "dir" / "sub" / "c.png"),
        str(a),
        str(tmp_path / "missing.jpg"),  # kept: loading it reports "missing"
    ]
    problems = {p: problem for p, problem in got if problem is not None}
    assert problems == {
        str(tmp_path / "nothing*.jpg"): "no files match this pattern",
        str(tmp_path / "empty"): "no poster images in this folder",
    }


def test_card_paths_file_for_one_poster_folder_for_several(tmp_path: Path) -> None:
    assert card_paths(tmp_path / "card.png", ["x/a.jpg"]) == [tmp_path / "card.png"]
    assert card_paths(tmp_path, ["x/a.jpg"]) == [tmp_path / "a.png"]  # existing folder
    out = tmp_path / "cards"
    assert card_paths(out, ["x/a.jpg", "y/a.jpg", "b.webp"]) == [
        out / "a.png",
        out / "a-2.png",
        out / "b.png",
    ]


def test_threshold_parsing() -> None:
    assert parse_threshold("auto") is None
    assert parse_threshold("AUTO") is None
    assert parse_threshold("0.35") == pytest.approx(0.35)
    for bad in ("1.5", "-0.1", "high"):
        with pytest.raises(typer.BadParameter):
            parse_threshold(bad)


def test_card_path_with_trailing_slash_is_a_folder(tmp_path: Path) -> None:
    target = str(tmp_path / "new") + os.sep
    assert card_paths(target, ["x/a.jpg"]) == [tmp_path / "new" / "a.png"]


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
