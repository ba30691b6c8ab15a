"""`postergenre finetune`: runs, reports, installs; killed with SIGKILL, the same command
resumes and ends with the network an uninterrupted run gives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from postergenre.cli import app
from postergenre.finetune import artifact


def command(labels: Path, out: Path, epochs: int) -> list[str]:
    return [
        "finetune", str(labels), "--out", str(out), "--random-weights", "--input-size", "32",
        "--input-scale", "32x48", "--epochs", str(epochs), "--batch-size", "8",
        "--min-count", "3", "--prior", str(labels.parent / "prior.json"), "--patience", "0",
        "--device", "cpu", "--threads", "1",
    ]  # fmt: skip


def test_finetune_command_writes_installs_and_reruns(
    labelled: Path, tmp_path: Path, home: Path
) -> None:
    out = tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(app, command(labelled, out, 1))
    assert first.exit_code == 0, first.output
    record = json.loads((out / artifact.RECORD_FILE).read_text())
    assert f"sha256 {record['sha256']}" in first.stdout
    assert "epoch 1: loss" in first.stderr and "val macro AP" in first.stderr
    assert artifact.locate(record["sha256"]).folder.parent == home / "weights" / "finetuned"
    again = runner.invoke(app, [*command(labelled, out, 1), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["sha256"] == record["sha256"]


def test_finetune_command_reports_a_bad_option_as_an_error(labelled: Path, tmp_path: Path) -> None:
    done = CliRunner().invoke(app, [*command(labelled, tmp_path / "o", 1), "--freeze", "40"])
    assert done.exit_code != 0 and "freeze" in str(done.exception or done.output)


def test_finetune_takes_gpu_as_cuda(labelled: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: this checks what --device gpu says without one")
    argv = [*command(labelled, tmp_path / "o", 1)]
    argv[argv.index("--device") + 1] = "gpu"
    done = CliRunner().invoke(app, argv)
    # Accepted as a choice (not a usage error, 2) and refused as cuda is, with the reason.
    assert done.exit_code == 1, done.output
    assert "no CUDA device" in str(done.exception or done.output)


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_result(
    labelled: Path, tmp_path: Path, config_for: Any
) -> None:
    from postergenre.finetune.config import RunSettings
    from postergenre.finetune.train import finetune

    epochs = 4
    whole = finetune(
        labelled, tmp_path / "whole", config_for(labelled, epochs=epochs), RunSettings("cpu", 1)
    )
    out = tmp_path / "out"
    env = {**os.environ, "POSTERGENRE_HOME": str(tmp_path / "home")}
    argv = [sys.executable, "-m", "postergenre", *command(labelled, out, epochs), "--no-install"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = out / "checkpoint" / "state.json"
    deadline = time.monotonic() + 120
    try:
        while not state.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert state.is_file(), "no epoch finished in time"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    killed_after = json.loads(state.read_text())["epoch"]
    assert killed_after < epochs
    assert not (out / artifact.WEIGHTS_FILE).exists()
    # The same command again (in this process: a second interpreter start costs more than
    # the whole fine-tune here).
    done = CliRunner().invoke(app, [*command(labelled, out, epochs), "--no-install"])
    assert done.exit_code == 0, done.output
    assert f"resuming after epoch {killed_after}" in done.stderr
    assert (out / artifact.WEIGHTS_FILE).read_bytes() == (
        whole.out / artifact.WEIGHTS_FILE
    ).read_bytes()


def test_finetune_help_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from postergenre.cli import app\n"
        "try:\n    app(args=['finetune', '--help'], prog_name='postergenre')\n"
        "except SystemExit:\n    pass\n"
        "print('LOADED', [m for m in ('torch', 'cv2', 'torchvision', 'sklearn') "
        "if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "--balance" in done.stdout and "--restart" in done.stdout
    assert done.stdout.rstrip().endswith("LOADED []"), done.stdout[-300:] + done.stderr
