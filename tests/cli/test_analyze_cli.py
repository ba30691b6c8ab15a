"""`postergenre analyze`: every option, JSON lines, cards, bad files and exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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


# -- the command, on a small real bundle (see tests/test_analysis.py) -------------------------


@pytest.fixture(scope="module")
def model() -> str:
    from test_analysis import tiny_bundle

    return str(tiny_bundle())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for i in range(3):
        _write(tmp_path / "posters" / f"p{i}.jpg", seed=300 + i)
    return tmp_path / "posters"


def invoke(args: list[str]) -> Any:
    from typer.testing import CliRunner

    from postergenre.cli import app

    device = [] if "--device" in args else ["--device", "cpu"]
    return CliRunner().invoke(app, ["analyze", *args, *device])


GENRES = {"Horror", "Comedy", "Drama", "Animation"}


def test_plain_output_lists_every_genre_sorted_and_the_predicted_set(
    model: str, folder: Path
) -> None:
    r = invoke([str(folder / "p0.jpg"), "--model", model])
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(str(folder / "p0.jpg"))
    assert lines[1].strip().startswith("predicted: ")
    probs = lines[2].strip().split(", ")
    assert {p.rsplit(" ", 1)[0] for p in probs} == GENRES
    assert "Why" not in r.stdout  # no explanation without --explain


def test_json_lines_carry_every_genre_and_explain_adds_cues(model: str, folder: Path) -> None:
    r = invoke([str(folder), "--model", model, "--json"])
    assert r.exit_code == 0, r.stderr
    rows = _json_lines(r.stdout)
    assert [Path(str(d["path"])).name for d in rows] == ["p0.jpg", "p1.jpg", "p2.jpg"]
    for d in rows:
        probs = d["probabilities"]
        assert isinstance(probs, dict) and set(probs) == GENRES
        assert list(probs.values()) == sorted(probs.values(), reverse=True)
        assert d["predicted"] and "explanations" not in d
    r = invoke([str(folder / "p1.jpg"), "--model", model, "--json", "--explain", "--cues", "2"])
    (d,) = _json_lines(r.stdout)
    assert set(d["explanations"]) == set(d["predicted"])  # type: ignore[arg-type]
    for e in d["explanations"].values():  # type: ignore[union-attr]
        assert len(e["cues"]) == 2
        total = e["base"] + sum(c["contribution"] for c in e["cues"]) + e["other"]["contribution"]
        assert total == pytest.approx(e["logit"], abs=1e-4)
        assert all(c["text"] and c["group"] for c in e["cues"])


def test_explain_shows_base_cues_other_and_logit_that_add_up(model: str, folder: Path) -> None:
    r = invoke([str(folder / "p2.jpg"), "--model", model, "--explain", "--cues", "3"])
    assert r.exit_code == 0, r.stderr
    out = r.stdout
    assert "Why " in out and "base (a typical poster)" in out and "other cues" in out
    # Per genre block: the printed numbers (2 decimals) add up to the printed log-odds.
    import re

    for block in out.split("Why ")[1:]:
        header, rows = block.split("\n", 1)
        assert "log-odds" in header
        values = [float(v) for v in re.findall(r"([+-]\d+\.\d\d)\s*$", rows, re.M)]
        *parts, logit = values[: 3 + 3]  # base, 3 cues, other, logit
        assert len(parts) == 5
        assert sum(parts) == pytest.approx(logit, abs=0.03)


def test_top_k_explains_that_many_genres(model: str, folder: Path) -> None:
    r = invoke([str(folder / "p0.jpg"), "--model", model, "--json", "--explain", "--top-k", "3"])
    (d,) = _json_lines(r.stdout)
    expl = d["explanations"]
    assert isinstance(expl, dict) and len(expl) == 3
    assert list(expl) == list(d["probabilities"])[:3]  # type: ignore[arg-type]


def test_threshold_option(model: str, folder: Path) -> None:
    poster = str(folder / "p0.jpg")
    (zero,) = _json_lines(invoke([poster, "--model", model, "--json", "--threshold", "0"]).stdout)
    (one,) = _json_lines(invoke([poster, "--model", model, "--json", "--threshold", "1"]).stdout)
    assert set(zero["predicted"]) == GENRES  # type: ignore[arg-type]
    assert one["predicted"] == [next(iter(one["probabilities"]))]  # type: ignore[call-overload]
    assert set(zero["thresholds"].values()) == {0.0}  # type: ignore[union-attr]
    r = invoke([poster, "--model", model, "--threshold", "2"])
    assert r.exit_code == 2 and "auto" in r.stderr


def test_card_for_one_poster_is_a_file(model: str, folder: Path, tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "card.png"
    r = invoke([str(folder / "p0.jpg"), "--model", model, "--card", str(out)])
    assert r.exit_code == 0, r.stderr
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 800 and im.height >= 720
    assert f"card: {out}" in r.stdout


def test_card_for_several_posters_is_a_folder(model: str, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "cards"
    r = invoke([str(folder / "*.jpg"), "--model", model, "--card", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png", "p2.png"]
    rows = _json_lines(r.stdout)
    assert [Path(str(d["card"])).name for d in rows] == ["p0.png", "p1.png", "p2.png"]
    assert all("explanations" not in d for d in rows)  # --card alone adds no cues to JSON


def test_corrupt_file_others_analysed_exit_1(model: str, folder: Path) -> None:
    bad = folder / "zz_bad.jpg"
    bad.write_bytes(encode(make_poster(9))[:200])
    r = invoke([str(folder), "--model", model, "--json"])
    assert r.exit_code == 1
    rows = _json_lines(r.stdout)
    assert len(rows) == 4
    errors = [d for d in rows if "error" in d]
    assert len(errors) == 1 and errors[0]["path"] == str(bad) and errors[0]["kind"] == "corrupt"
    assert sum("probabilities" in d for d in rows) == 3
    assert str(bad) in r.stderr and "1 of 4 posters could not be analysed" in r.stderr


def test_missing_file_human_output_exit_1(model: str, folder: Path) -> None:
    r = invoke([str(folder / "p0.jpg"), str(folder / "nope.jpg"), "--model", model])
    assert r.exit_code == 1
    assert "predicted:" in r.stdout
    assert "nope.jpg: no such file" in r.stderr


def test_bad_model_folder_and_device(folder: Path, tmp_path: Path) -> None:
    r = invoke([str(folder / "p0.jpg"), "--model", str(tmp_path / "absent")])
    assert r.exit_code == 2  # Typer checks the folder exists
    r = invoke([str(folder / "p0.jpg"), "--device", "tpu"])
    assert r.exit_code == 2 and "tpu" in r.stderr


def test_real_process_streams_json_and_errors(model: str, folder: Path) -> None:
    import subprocess
    import sys

    (folder / "bad.png").write_bytes(b"not a png at all")
    done = subprocess.run(
        [sys.executable, "-m", "postergenre", "analyze", str(folder / "bad.png"),
         str(folder / "p0.jpg"), "--model", model, "--json", "--device", "cpu"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1
    rows = _json_lines(done.stdout)
    assert rows[0]["kind"] == "not_image" and "probabilities" in rows[1]
    assert done.stderr.startswith("postergenre: error: ")


def test_card_that_cannot_be_written_fails_that_poster(model: str, folder: Path) -> None:
    blocker = folder / "not_a_folder.txt"
    blocker.write_text("a file where the card folder should be")
    r = invoke([str(folder / "p0.jpg"), "--model", model, "--card", str(blocker / "card.png")])
    assert r.exit_code == 1
    assert "cannot write the card" in r.stderr
    assert "predicted:" not in r.stdout


def test_analyze_help_imports_no_heavy_library() -> None:
    import subprocess
    import sys

    heavy = ("torch", "torchvision", "cv2", "ultralytics", "xgboost", "sklearn")
    code = (
        "import sys\nfrom postergenre.cli import app\n"
        "try:\n    app(args=['analyze', '--help'], prog_name='postergenre')\n"
        "except SystemExit:\n    pass\n"
        f"print('LOADED', [m for m in {heavy!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--explain" in out.stdout and "--card" in out.stdout and "folder" in out.stdout
    assert out.stdout.rstrip().endswith("LOADED []")
