"""The command's skeleton: --version/--help stay light; errors become one line and exit 1."""

from __future__ import annotations

import subprocess
import sys

from postergenre import __version__

HEAVY = ("torch", "cv2", "ultralytics", "xgboost", "torchvision", "sklearn")


def run_probe(args: list[str]) -> tuple[str, set[str]]:
    code = (
        "import sys\n"
        "from postergenre.cli import app\n"
        f"try:\n    app(args={args!r}, prog_name='postergenre')\n"
        "except SystemExit:\n    pass\n"
        f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = out.stdout.rsplit("LOADED", 1)[1].strip()
    return out.stdout, set(eval(loaded))  # noqa: S307 (our own printed list)


def test_version_and_help_import_no_heavy_library() -> None:
    out, loaded = run_probe(["--version"])
    assert f"postergenre {__version__}" in out
    assert loaded == set()
    out, loaded = run_probe(["--help"])
    for command in ("analyze", "extract", "train", "evaluate", "weights"):
        assert command in out
    assert loaded == set()


def test_usage_error_exits_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "postergenre", "no-such-command"], capture_output=True, text=True
    )
    assert done.returncode == 2


def test_postergenre_error_is_one_line_exit_1(tmp_path) -> None:
    env_home = tmp_path / "h"
    done = subprocess.run(
        [sys.executable, "-m", "postergenre", "weights", "import", __file__],
        capture_output=True, text=True, env={"POSTERGENRE_HOME": str(env_home), "PATH": ""},
    )  # fmt: skip
    assert done.returncode == 1
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("postergenre: error:") and "hint:" in lines[0]
