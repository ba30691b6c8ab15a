"""`postergenre extract` and `postergenre store info` as a user runs them, kill -9 included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import encode, make_poster

from postergenre import features
from postergenre.cli import main
from postergenre.errors import PosterError
from postergenre.features.store import FeatureStore

TESTS = Path(__file__).resolve().parents[1]
#: Runs the CLI in a fresh interpreter with the toy extractor of test_runner registered.
PROBE = f"""
import sys
sys.path[:0] = [{str(TESTS)!r}, {str(TESTS / "features")!r}]
from postergenre import features
features.REGISTRY["toy"] = "test_runner:ToyExtractor"
from postergenre.cli import main
main(sys.argv[1:])
"""


@pytest.fixture(autouse=True)
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(TESTS / "features"))
    monkeypatch.setitem(features.REGISTRY, "toy", "test_runner:ToyExtractor")


def posters(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"p{i:02d}.jpg"
        p.write_bytes(encode(make_poster(i, size=(64, 44)), "JPEG"))
        out.append(p)
    return out


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def subprocess_cli(
    args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.mark.slow
def test_kill_9_midway_then_rerun_equals_a_clean_run(tmp_path: Path) -> None:
    posters(tmp_path / "p", 13)
    args = [
        "extract",
        str(tmp_path / "p"),
        "-e",
        "toy",
        "--shard-size",
        "4",
        "--batch-size",
        "2",
        "--workers",
        "1",
    ]
    store = tmp_path / "killed"
    # The toy extractor SIGKILLs its own process after 7 posters: shard 0 (4 posters) is
    # done, shard 1 is half computed.
    crashed = subprocess_cli([*args, "--out", str(store)], env={"TOY_KILL_AFTER": "7"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    fs = FeatureStore(store)
    assert fs.done_shards("toy") == [0]

    resumed = subprocess_cli([*args, "--out", str(store), "--json"])
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["shards_computed"] == 3 and summary["shards_skipped"] == 1
    assert summary["computed"] == 9 and summary["ok"] == 13

    clean = subprocess_cli([*args, "--out", str(tmp_path / "clean")])
    assert clean.returncode == 0, clean.stderr
    a, b = FeatureStore(tmp_path / "clean").load(), fs.load()
    assert a.ids == b.ids and a.paths == b.paths and len(a.ids) == 13
    np.testing.assert_array_equal(a.X, b.X)


def test_bad_posters_exit_0_and_are_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mixed"
    posters(folder, 3)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "nothing.png").write_bytes(b"")
    store = tmp_path / "store"
    code, out, err = cli(
        ["extract", str(folder), "--out", str(store), "-e", "toy", "--workers", "0", "--json"],
        capsys,
    )
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["ok"], summary["failed"]) == (3, 2)
    assert summary["failed_by_kind"] == {"corrupt": 1, "empty": 1}
    assert f"{folder / 'broken.jpg'}: corrupt" in err
    assert f"{folder / 'nothing.png'}: empty" in err
    assert "3 ok, 2 failed" in err

    code, out, err = cli(["store", "info", str(store), "--json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["extractors"]["toy"]["ok"] == 3
    assert info["extractors"]["toy"]["failed_by_kind"] == {"corrupt": 1, "empty": 1}
    assert {Path(f["path"]).name for f in info["failures"]} == {"broken.jpg", "nothing.png"}
    code, out, _ = cli(["store", "info", str(store)], capsys)
    assert code == 0 and "toy" in out and "corrupt: 1" in out


def test_labels_csv_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = posters(tmp_path / "data" / "images", 4)
    csv = tmp_path / "data" / "labels.csv"
    csv.write_text(
        "imdb_id,file,split,genres\n"
        + "".join(f"tt{i},images/{p.name},train,Drama\n" for i, p in enumerate(files[:3]))
    )
    code, out, err = cli(
        [
            "extract",
            str(csv),
            "--out",
            str(tmp_path / "s"),
            "-e",
            "toy",
            "--workers",
            "0",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads(out)["ok"] == 3
    assert sorted(FeatureStore(tmp_path / "s").load().paths) == [str(p) for p in files[:3]]


def test_run_level_errors_exit_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    posters(tmp_path / "p", 2)
    store = str(tmp_path / "s")
    code, _, err = cli(["extract", str(tmp_path / "missing"), "--out", store, "-e", "toy"], capsys)
    assert code == 1 and "no such file or folder" in err
    code, _, err = cli(["extract", str(tmp_path / "p"), "--out", store, "-e", "nope"], capsys)
    assert code == 1 and "unknown extractor 'nope'" in err
    code, _, err = cli(
        ["extract", str(tmp_path / "p"), "--out", store, "-e", "toy", "--workers", "0"], capsys
    )
    assert code == 0, err
    # The same store, made by another version of the extractor: refused, then rebuilt.
    from test_runner import ToyExtractor

    original = ToyExtractor.version
    try:
        ToyExtractor.version = "2"
        code, _, err = cli(
            ["extract", str(tmp_path / "p"), "--out", store, "-e", "toy", "--workers", "0"], capsys
        )
        assert (
            code == 1 and "version '1' in the store, '2' now" in err and "--mode overwrite" in err
        )
        code, _, err = cli(
            [
                "extract",
                str(tmp_path / "p"),
                "--out",
                store,
                "-e",
                "toy",
                "--workers",
                "0",
                "--mode",
                "overwrite",
            ],
            capsys,
        )
        assert code == 0, err
        assert FeatureStore(store).manifest("toy")["version"] == "2"
    finally:
        ToyExtractor.version = original
    code, _, err = cli(["store", "info", str(tmp_path / "p")], capsys)
    assert code == 1 and "no feature store" in err


def test_a_bug_exits_1_naming_extractor_and_poster_and_the_rerun_computes_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_runner import ToyExtractor

    files = posters(tmp_path / "p", 3)
    args = ["extract", str(tmp_path / "p"), "--out", str(tmp_path / "s"), "-e", "toy"]
    args += ["--workers", "0", "--batch-size", "1"]

    def buggy(self: Any, images: Any) -> Any:
        raise AttributeError("module 'numpy' has no attribute 'float'")

    with pytest.MonkeyPatch.context() as bug:
        bug.setattr(ToyExtractor, "_extract", buggy)
        code, _, err = cli(args, capsys)
    assert code == 1
    lines = [ln for ln in err.splitlines() if "postergenre: error:" in ln]
    assert len(lines) == 1 and "extractor toy failed on " in lines[0]
    assert any(str(f) in lines[0] for f in files) and "AttributeError" in lines[0]
    assert FeatureStore(tmp_path / "s").done_shards("toy") == []
    code, out, err = cli([*args, "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["ok"], summary["failed"], summary["computed"]) == (3, 0, 3)


def test_retry_failed_recomputes_the_posters_that_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import postergenre.images

    files = posters(tmp_path / "p", 3)
    args = ["extract", str(tmp_path / "p"), "--out", str(tmp_path / "s"), "-e", "toy"]
    args += ["--workers", "0", "--json"]
    real = postergenre.images.decode_poster

    def older(data: bytes, name: str = "", **kw: Any) -> Any:  # cannot read one file
        if name == str(files[1]):
            raise PosterError(name, "corrupt", "unsupported JPEG variant")
        return real(data, name=name, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(postergenre.images, "decode_poster", older)
        code, out, err = cli(args, capsys)
    assert code == 0, err
    assert json.loads(out)["failed_by_kind"] == {"corrupt": 1}
    code, out, err = cli(args, capsys)  # resume: failures are kept
    assert code == 0 and json.loads(out)["failed"] == 1
    code, out, err = cli([*args, "--retry-failed"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["ok"], summary["failed"], summary["computed"]) == (3, 0, 1)
    assert FeatureStore(tmp_path / "s").failures() == []


def test_a_device_this_machine_lacks_fails_before_any_store_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without a CUDA device")
    posters(tmp_path / "p", 2)
    for device in ("cuda", "gpu"):  # gpu: another name for cuda, not a usage error
        store = tmp_path / f"s-{device}"
        args = ["extract", str(tmp_path / "p"), "--out", str(store), "-e", "toy"]
        code, _, err = cli([*args, "--device", device, "--workers", "0"], capsys)
        assert code == 1 and "no CUDA device" in err and "--device cpu" in err
        assert not store.exists()


def test_store_info_on_a_poster_folder_says_to_extract_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "posters"
    posters(folder / "sub", 2)
    code, _, err = cli(["store", "info", str(folder)], capsys)
    assert code == 1 and "it is a folder of posters" in err
    assert f"postergenre extract {folder} --out STORE" in err
    assert f"--out {folder}`" not in err  # not: write a store into the posters' folder
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(["store", "info", str(empty)], capsys)
    assert code == 1 and "folder of posters" not in err and "no feature store" in err


def test_the_cnn_fit_choices_are_the_extractors_fit_modes() -> None:
    from postergenre.cli.extract import CnnFit
    from postergenre.features.cnn import FIT_MODES

    assert [m.value for m in CnnFit] == list(FIT_MODES)


def test_cnn_fit_and_hflip_need_cnn_and_a_known_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    posters(tmp_path / "p", 2)
    store = str(tmp_path / "s")
    base = ["extract", str(tmp_path / "p"), "--out", store, "--workers", "0"]
    code, _, err = cli([*base, "-e", "toy", "--cnn-fit", "tall"], capsys)
    assert code == 1 and "--cnn-fit needs the cnn extractor" in err
    code, _, err = cli([*base, "-e", "cnn", "--cnn-fit", "wide"], capsys)
    assert code == 2 and "'wide' is not one of" in err and "'tall'" in err
    code, _, err = cli([*base, "-e", "toy", "--no-cnn-hflip"], capsys)
    assert code == 1 and "--cnn-hflip needs the cnn extractor" in err
    assert not (tmp_path / "s").exists()  # refused before any store was made


@pytest.mark.weights
def test_cnn_fit_and_hflip_are_recorded_in_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import require_weights

    require_weights("mobilenet_v2")
    posters(tmp_path / "p", 2)
    store = tmp_path / "s"
    argv = ["extract", str(tmp_path / "p"), "--out", str(store), "-e", "cnn", "--workers", "0",
            "--cnn-backbone", "mobilenet_v2", "--cnn-fit", "pad", "--cnn-hflip"]  # fmt: skip
    code, _, err = cli(argv, capsys)
    assert code == 0, err
    config = FeatureStore(store).manifest("cnn")["config"]
    assert config["fit"] == "pad" and config["backbone"] == "mobilenet_v2"  # not the default
    assert config["hflip"] is True
    assert FeatureStore(store).load(["cnn"]).X.shape == (2, 1280)
