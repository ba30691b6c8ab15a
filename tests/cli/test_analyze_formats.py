"""`postergenre analyze --format table|json|jsonl|csv --out FILE`: the same results in tables."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import encode, make_poster

from postergenre.errors import ConfigError


@pytest.fixture(scope="module")
def model() -> str:
    from test_analysis import tiny_bundle

    return str(tiny_bundle())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    posters = tmp_path / "posters"
    posters.mkdir()
    for i in range(3):
        (posters / f"p{i}.jpg").write_bytes(encode(make_poster(300 + i), "JPEG", quality=90))
    (posters / "bad.png").write_bytes(b"not a png at all")
    return posters


def invoke(args: list[str]) -> Any:
    from typer.testing import CliRunner

    from postergenre.cli import app

    return CliRunner().invoke(app, ["analyze", *args, "--device", "cpu"])


def jsonl(folder: Path, model: str) -> list[dict[str, Any]]:
    r = invoke([str(folder), "--model", model, "--json"])
    assert r.exit_code == 1  # bad.png
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_csv_has_a_row_per_poster_and_a_column_per_genre(model: str, folder: Path) -> None:
    want = {row["path"]: row for row in jsonl(folder, model)}
    r = invoke([str(folder), "--model", model, "--format", "csv"])
    assert r.exit_code == 1  # a poster failed: still a row
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["path"] for row in rows] == list(want)
    genres = [c[len("proba.") :] for c in rows[0] if c.startswith("proba.")]
    ok = next(row for row in want.values() if "probabilities" in row)
    assert sorted(genres) == sorted(ok["probabilities"])
    assert list(rows[0])[:4] == ["path", "status", "error", "predicted"]
    for row in rows:
        expected = want[row["path"]]
        if "probabilities" not in expected:
            assert (row["status"], row["predicted"]) == ("not_image", "")
            assert row["error"] == expected["error"] and row[f"proba.{genres[0]}"] == ""
            continue
        assert row["status"] == "ok"
        assert set(row["predicted"].split("|")) == set(expected["predicted"])
        for g in genres:
            assert float(row[f"proba.{g}"]) == expected["probabilities"][g]
            assert float(row[f"threshold.{g}"]) == expected["thresholds"][g]


def test_json_is_the_array_of_the_json_lines(model: str, folder: Path) -> None:
    r = invoke([str(folder), "--model", model, "--format", "json"])
    assert json.loads(r.stdout) == jsonl(folder, model)
    r = invoke([str(folder), "--model", model, "--format", "jsonl"])
    assert [json.loads(line) for line in r.stdout.splitlines()] == jsonl(folder, model)


def test_table_is_one_line_per_poster(model: str, folder: Path) -> None:
    r = invoke([str(folder), "--model", model, "--format", "table"])
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["poster", "predicted", "most"]
    for row in jsonl(folder, model):
        line = next(ln for ln in lines if ln.startswith(row["path"]))
        if "predicted" in row:
            assert ", ".join(row["predicted"]) in line
        else:
            assert "[not_image]" in line


def test_out_file_takes_its_format_from_the_extension(
    model: str, folder: Path, tmp_path: Path
) -> None:
    for name, check in (
        ("genres.csv", lambda text: text.startswith("path,status,error,predicted,proba.")),
        ("genres.json", lambda text: len(json.loads(text)) == 4),
        ("genres.jsonl", lambda text: len(text.splitlines()) == 4),
        ("genres.txt", lambda text: "predicted:" in text),
    ):
        out = tmp_path / name
        r = invoke([str(folder), "--model", model, "--out", str(out)])
        assert r.exit_code == 1 and r.stdout == "", name
        assert check(out.read_text()), name
        assert "bad.png" in r.stderr


def test_contradictions_and_flat_explanations_are_refused(
    model: str, folder: Path, tmp_path: Path
) -> None:
    r = invoke([str(folder), "--model", model, "--json", "--format", "csv"])
    assert isinstance(r.exception, ConfigError) and "--json" in str(r.exception)
    r = invoke([str(folder), "--model", model, "--format", "csv", "--explain"])
    assert r.exit_code == 2 and "--explain" in r.stderr
    r = invoke([str(folder), "--model", model, "--out", str(tmp_path / "no" / "x.csv")])
    assert isinstance(r.exception, ConfigError) and "does not exist" in str(r.exception)


def test_only_missing_inputs_still_give_their_rows(model: str, tmp_path: Path) -> None:
    r = invoke([str(tmp_path / "nothing*.jpg"), "--model", model, "--format", "csv"])
    assert r.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [(row["path"], row["status"]) for row in rows] == [
        (str(tmp_path / "nothing*.jpg"), "missing")
    ]


@pytest.mark.parametrize(("n", "shown"), [(1, False), (5, True)])
def test_progress_bar_on_a_terminal_for_several_posters(n: int, shown: bool) -> None:
    from rich.console import Console

    from postergenre.cli.analyze import _progress

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=80)
    with _progress(console, n) as advance:
        for _ in range(n):
            advance()
    assert ("analysing" in buf.getvalue()) is shown
