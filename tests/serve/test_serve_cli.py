"""``postergenre serve`` as a command: light --help, clear start-up errors, exit codes."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "cv2", "ultralytics", "xgboost", "sklearn", "fastapi", "uvicorn", "starlette")


def test_serve_help_imports_neither_torch_nor_the_web_stack() -> None:
    code = (
        "import sys\n"
        "from postergenre.cli import app\n"
        "try:\n    app(args=['serve', '--help'], prog_name='postergenre')\n"
        "except SystemExit:\n    pass\n"
        f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--host" in out.stdout and "--queue" in out.stdout and "127.0.0.1" in out.stdout
    assert out.stdout.rsplit("LOADED", 1)[1].strip() == "[]"


def _serve(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postergenre", "serve", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("postergenre: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _serve("--port", str(port), "--model", str(tmp_path))
    assert done.returncode == 1
    line = _error_line(done.stderr)
    assert f"127.0.0.1:{port}" in line and "hint: choose another --port" in line


def test_a_model_that_cannot_load_stops_the_server_with_exit_1(tmp_path: Path) -> None:
    done = _serve("--port", "0", "--model", str(tmp_path), "--device", "cpu")
    assert done.returncode == 1
    assert "serving http://127.0.0.1:" in done.stderr  # it had started, then stopped
    line = _error_line(done.stderr)
    assert "no model bundle" in line and "hint:" in line
