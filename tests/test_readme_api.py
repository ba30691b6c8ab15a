"""The README's Python example runs as written (on a synthetic poster, with the shipped model)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from conftest import REPO, encode, make_poster, require_weights


def readme_python_example() -> str:
    text = (REPO / "README.md").read_text()
    after = text.split("From Python (", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.weights
def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_weights("mobilenet_v2", "yolo11n-seg", "retinaface_mnet025", "emotion_minixception")
    code = readme_python_example()
    assert "postergenre.analyze(" in code and "postergenre.load_model(" in code
    (tmp_path / "poster.jpg").write_bytes(encode(make_poster(11), "JPEG"))
    monkeypatch.chdir(tmp_path)
    # The example prints a probability by name: the synthetic poster's top genre stands in.
    import postergenre

    top = postergenre.analyze("poster.jpg").top_genre
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace('"Comedy"', repr(top)), "README.md", "exec"), {})  # noqa: S102
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[") and " pts  " in lines[2]
    assert lines[-1] == "missing.jpg missing.jpg: no such file"
    assert lines[-2].startswith("poster.jpg [")
