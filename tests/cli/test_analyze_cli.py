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
from postergenre.errors import ConfigError


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
    assert card_paths(out, ["x/a.jpg"]) == [out / "a.png"]  # no extension: a folder
    # A file name with several posters: one file per poster beside it, never a folder.
    assert card_paths(tmp_path / "two.jpg", ["x/a.jpg", "y/a.jpg", "b.png"]) == [
        tmp_path / "two-a.jpg",
        tmp_path / "two-a-2.jpg",
        tmp_path / "two-b.jpg",
    ]
    with pytest.raises(ConfigError, match=r"expected a \.png or \.jpg file name or a folder"):
        card_paths(tmp_path / "card.gif", ["x/a.jpg"])


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


def test_verbose_explain_shows_base_cues_other_and_logit_that_add_up(
    model: str, folder: Path
) -> None:
    r = invoke([str(folder / "p2.jpg"), "--model", model, "--explain", "--verbose", "--cues", "3"])
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
        assert f"log-odds {logit:+.2f}" in header


def test_default_explain_says_raises_or_lowers_in_points(model: str, folder: Path) -> None:
    import re

    args = [str(folder / "p2.jpg"), "--model", model, "--explain", "--cues", "3"]
    r = invoke(args)
    assert r.exit_code == 0, r.stderr
    assert "log-odds" not in r.stdout and "base (" not in r.stdout
    (d,) = _json_lines(invoke([*args, "--json"]).stdout)
    blocks = r.stdout.split("Why ")[1:]
    assert len(blocks) == len(d["explanations"])  # type: ignore[arg-type]
    for block, e in zip(blocks, d["explanations"].values(), strict=True):  # type: ignore[union-attr]
        assert block.startswith(f"{e['genre']}: ")
        assert f"a typical poster: {e['base_probability']:.0%}" in block
        rows = re.findall(r"^\s+(raises|lowers|no effect)\s+([+-]\d+(?:\.\d)?) pts", block, re.M)
        effects = [c["effect"] for c in e["cues"]] + [e["other"]["effect"]]
        assert len(rows) == len(effects) == 4  # 3 cues and the other cues
        for (word, shown), effect in zip(rows, effects, strict=True):
            assert word == ("raises" if effect > 0 else "lowers" if effect < 0 else "no effect")
            assert float(shown) == pytest.approx(100 * effect, abs=0.51)


def test_top_k_explains_that_many_genres(model: str, folder: Path) -> None:
    r = invoke([str(folder / "p0.jpg"), "--model", model, "--json", "--explain", "--top-k", "3"])
    (d,) = _json_lines(r.stdout)
    expl = d["explanations"]
    assert isinstance(expl, dict) and len(expl) == 3
    assert list(expl) == list(d["probabilities"])[:3]  # type: ignore[arg-type]


def test_top_k_or_verbose_without_explain_is_a_usage_error(model: str, folder: Path) -> None:
    for extra in (["--top-k", "3"], ["--verbose"], ["--verbose", "--explain", "--json"]):
        r = invoke([str(folder / "p0.jpg"), "--model", model, *extra])
        assert r.exit_code == 2 and "--explain" in r.stderr, extra
        assert r.stdout == ""  # refused before any poster was analysed


def test_at_least_one_genre_is_said_and_can_be_turned_off(model: str, folder: Path) -> None:
    poster = str(folder / "p0.jpg")
    r = invoke([poster, "--model", model, "--threshold", "1", "--explain"])
    assert r.exit_code == 0, r.stderr
    top = r.stdout.splitlines()[2].strip().split(" ")[0]  # the most probable genre
    assert f"predicted: {top} (below its threshold: every poster gets at least one genre " \
        "unless --no-at-least-one)" in r.stdout  # fmt: skip
    assert f"Why {top}: " in r.stdout and "predicted anyway" in r.stdout
    (d,) = _json_lines(invoke([poster, "--model", model, "--threshold", "1", "--json"]).stdout)
    assert d["predicted"] == d["predicted_below_threshold"] == [top]
    off = [poster, "--model", model, "--threshold", "1", "--no-at-least-one"]
    r = invoke([*off, "--explain"])
    assert r.exit_code == 0, r.stderr
    assert "predicted: none (no genre reached its threshold)" in r.stdout and "Why " not in r.stdout
    (d,) = _json_lines(invoke([*off, "--json"]).stdout)
    assert d["predicted"] == [] and d["predicted_below_threshold"] == []
    helped = invoke(["--help"])
    assert "at least one genre" in " ".join(helped.stdout.split())
    assert "--no-at-least-one" in helped.stdout


def test_a_genre_with_threshold_above_one_is_marked(
    model: str, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postergenre.analysis import Analyzer

    real = Analyzer.load.__func__  # type: ignore[attr-defined]

    def load(cls: type, *args: Any, **kw: Any) -> Analyzer:
        analyzer = real(cls, *args, **kw)
        analyzer.thresholds[analyzer.genres.index("Animation")] = 1.000000001
        return analyzer

    monkeypatch.setattr(Analyzer, "load", classmethod(load))
    poster = str(folder / "p1.jpg")
    r = invoke([poster, "--model", model, "--explain", "--top-k", "4"])
    assert r.exit_code == 0, r.stderr
    assert "not predicted by this model (threshold above 100%): Animation" in r.stdout
    assert "Why Animation: " in r.stdout and "(not predicted by this model)" in r.stdout
    (d,) = _json_lines(invoke([poster, "--model", model, "--json"]).stdout)
    assert d["not_predicted_by_model"] == ["Animation"] and "Animation" not in d["predicted"]
    card = tmp_path / "card.png"
    assert invoke([poster, "--model", model, "--card", str(card)]).exit_code == 0


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


def test_card_name_sets_its_format_and_names_several_cards(
    model: str, folder: Path, tmp_path: Path
) -> None:
    from PIL import Image

    one = tmp_path / "card.jpg"
    r = invoke([str(folder / "p0.jpg"), "--model", model, "--card", str(one)])
    assert r.exit_code == 0, r.stderr
    with Image.open(one) as im:
        assert im.format == "JPEG"
    several = tmp_path / "out" / "two.png"
    r = invoke([str(folder / "p0.jpg"), str(folder / "p1.jpg"), "--model", model,
                "--card", str(several)])  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in several.parent.iterdir()) == ["two-p0.png", "two-p1.png"]
    assert not several.exists()  # no folder named like a file
    r = invoke([str(folder / "p0.jpg"), "--model", model, "--card", str(tmp_path / "c.gif")])
    assert r.exit_code == 2 and ".gif" in r.stderr and ".png" in r.stderr
    assert not (tmp_path / "c.gif").exists()


def test_too_large_poster_hint_names_the_option_that_raises_the_limit(
    model: str, folder: Path
) -> None:
    poster = str(folder / "p0.jpg")  # 160x236: 37,760 pixels
    r = invoke([poster, "--model", model, "--max-pixels", "10000", "--json"])
    assert r.exit_code == 1
    (d,) = _json_lines(r.stdout)
    assert d["kind"] == "too_large" and "--max-pixels" in d["hint"]
    assert "--max-pixels N" in r.stderr and "(max_pixels)" not in r.stderr
    assert invoke([poster, "--model", model, "--max-pixels", "40000"]).exit_code == 0


def test_device_gpu_is_cuda(model: str, folder: Path) -> None:
    import torch

    from postergenre.cli.common import Device

    assert Device("gpu").torch_name == "cuda" and Device("cpu").torch_name == "cpu"
    r = invoke([str(folder / "p0.jpg"), "--model", model, "--device", "gpu"])
    if torch.cuda.is_available():
        assert r.exit_code == 0, r.stderr
    else:  # accepted as cuda (not a usage error), then refused as cuda is
        assert r.exit_code == 1 and "no CUDA device" in str(r.exception or r.stderr)


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
