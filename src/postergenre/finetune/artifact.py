"""A fine-tuned backbone on disk: where it lies, what it is, and whether it is intact.

``postergenre finetune --out DIR`` writes two files into DIR:

- ``backbone.safetensors``: the network, keys ``backbone.<key>`` (the same keys as the
  torchvision file it started from, so the ``cnn`` extractor loads it strictly) and
  ``head.weight`` (G, dim), ``head.bias`` (G,): the multi-label genre head;
- ``finetune.json``: backbone, preprocessing (input scale, fit, input size, ImageNet
  normalisation), genres, the sha256 of the ImageNet file it started from, the training
  data counts, the training settings and the val metrics. Its ``sha256`` is that of the
  safetensors file, the backbone's identity.

The ``cnn`` extractor's config names a fine-tuned backbone by that sha256 only, so a store
or bundle never depends on where the file lay. It is found in the ``finetuned/`` folder
of ``$POSTERGENRE_WEIGHTS_DIR`` or of the weights cache (``postergenre finetune`` installs
its result there), one sub-folder per backbone; a file whose sha256 differs is never used.
No code here downloads anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from postergenre.errors import ConfigError, WeightsError

if TYPE_CHECKING:
    from postergenre.features.cnn import CNNConfig

FORMAT = "postergenre-finetune"
FORMAT_VERSION = 1
WEIGHTS_FILE = "backbone.safetensors"
RECORD_FILE = "finetune.json"
#: Sub-folder of the weights cache (and of ``$POSTERGENRE_WEIGHTS_DIR``) holding them.
CACHE_FOLDER = "finetuned"
BACKBONE_PREFIX = "backbone."
HEAD_WEIGHT = "head.weight"
HEAD_BIAS = "head.bias"

_HINT = (
    "run `postergenre finetune LABELS --out DIR` (it installs its result in the weights "
    "cache), or copy a fine-tune output folder into {root}"
)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_DTYPES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}


def safetensors_bytes(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> bytes:
    """A safetensors file of ``arrays``, byte for byte the same for the same arrays.

    The safetensors library writes its JSON header from a hash map, so two saves of the
    same tensors can differ in header order, and so in sha256; the sha256 is this file's
    identity, so the header is written here: tensors sorted by name, compact JSON.
    """
    header: dict[str, Any] = {"__metadata__": {k: str(metadata[k]) for k in sorted(metadata)}}
    chunks, offset = [], 0
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        if not a.flags.c_contiguous:  # (np.ascontiguousarray would make a 0-d array 1-d)
            a = a.copy(order="C")
        if a.dtype.name not in _DTYPES:
            raise ValueError(f"safetensors: unsupported dtype {a.dtype} of {name}")
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": _DTYPES[a.dtype.name],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"))
    text += " " * (-len(text) % 8)  # the data starts 8-byte aligned
    return len(text).to_bytes(8, "little") + text.encode("utf-8") + b"".join(chunks)


@dataclass(frozen=True)
class FinetunedBackbone:
    """A fine-tune output folder and its parsed ``finetune.json``."""

    folder: Path
    record: Mapping[str, Any]

    @property
    def sha256(self) -> str:
        return str(self.record["sha256"])

    @property
    def backbone(self) -> str:
        return str(self.record["backbone"])

    @property
    def genres(self) -> list[str]:
        return [str(g) for g in self.record["genres"]]

    @property
    def preprocessing(self) -> Mapping[str, Any]:
        pre: Mapping[str, Any] = self.record["preprocessing"]
        return pre

    @property
    def weights_path(self) -> Path:
        return self.folder / WEIGHTS_FILE

    def read_verified(self, sha256: str | None = None) -> bytes:
        """The safetensors file's bytes, refused (WeightsError) unless their sha256 is
        ``sha256`` (default: the one the record names)."""
        want = sha256 or self.sha256
        try:
            data = self.weights_path.read_bytes()
        except OSError as exc:
            raise WeightsError(
                f"fine-tuned backbone {self.weights_path} cannot be read ({exc})"
            ) from None
        got = sha256_bytes(data)
        if got != want:
            raise WeightsError(
                f"fine-tuned backbone {self.weights_path} has sha256 {got}, but {want} is "
                "asked for; a file whose sha256 does not match is never used",
                hint="use the backbone the store or model was made with (its sha256 is in "
                "the cnn config), or re-extract with this one",
            )
        return data

    def verify(self, sha256: str | None = None) -> None:
        self.read_verified(sha256)

    def cnn_config(self, **overrides: Any) -> CNNConfig:
        """The ``cnn`` extractor config that embeds posters with this backbone: its
        backbone, fit and input size; ``overrides`` for the rest (style, hflip, ...)."""
        from postergenre.features.cnn import CNNConfig

        pre = self.preprocessing
        base = {
            "backbone": self.backbone,
            "fit": str(pre["fit"]),
            "input_size": int(pre["input_size"]),
            "finetuned": self.sha256,
            # The fine-tuned network alone, not joined with the default extra backbone, and
            # on the poster as it was trained (no mirror averaging).
            "also": (),
            "hflip": False,
        }
        return CNNConfig(**{**base, **overrides})

    def check_cnn_config(self, config: CNNConfig) -> None:
        """ConfigError unless ``config`` feeds this backbone as it was trained."""
        pre = self.preprocessing
        wrong = []
        if config.backbone != self.backbone:
            wrong.append(f"backbone {config.backbone!r} (trained: {self.backbone!r})")
        if config.fit != pre["fit"]:
            wrong.append(f"fit {config.fit!r} (trained: {pre['fit']!r})")
        if config.size != int(pre["input_size"]):
            wrong.append(f"input_size {config.size} (trained: {pre['input_size']})")
        if wrong:
            raise ConfigError(
                f"cnn: fine-tuned backbone {self.sha256[:12]} ({self.folder}) was not trained "
                f"for this config: {', '.join(wrong)}",
                hint="take the config from FinetunedBackbone.cnn_config()",
            )


def read(path: str | os.PathLike[str]) -> FinetunedBackbone:
    """A fine-tune output given as its folder, its ``finetune.json`` or its safetensors."""
    p = Path(path).expanduser()
    folder = p if p.is_dir() else p.parent
    record_path = folder / RECORD_FILE
    if not record_path.is_file():
        raise ConfigError(
            f"{p} is not a fine-tuned backbone (no {RECORD_FILE} in {folder})",
            hint="give the --out folder of `postergenre finetune`",
        )
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{record_path}: unreadable ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ConfigError(f"{record_path}: not a {FORMAT} record")
    if int(record.get("format_version", 0)) > FORMAT_VERSION:
        raise ConfigError(
            f"{record_path}: format version {record.get('format_version')} is newer than "
            f"this postergenre reads ({FORMAT_VERSION})",
            hint="upgrade postergenre",
        )
    missing = [k for k in ("sha256", "backbone", "genres", "preprocessing") if k not in record]
    if missing:
        raise ConfigError(f"{record_path}: damaged record, no {', '.join(missing)}")
    return FinetunedBackbone(folder, record)


def roots() -> list[Path]:
    """Folders searched for fine-tuned backbones, in order."""
    from postergenre import weights

    out = []
    if os.environ.get("POSTERGENRE_WEIGHTS_DIR"):
        out.append(Path(os.environ["POSTERGENRE_WEIGHTS_DIR"]).expanduser() / CACHE_FOLDER)
    out.append(weights.cache_dir() / CACHE_FOLDER)
    return out


def installed() -> list[FinetunedBackbone]:
    """Every readable fine-tuned backbone in :func:`roots`, sorted by folder."""
    found = []
    for root in roots():
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if (folder / RECORD_FILE).is_file():
                try:
                    found.append(read(folder))
                except ConfigError:
                    continue  # an unreadable folder is not the backbone asked for
    return found


def locate(sha256: str) -> FinetunedBackbone:
    """The installed fine-tuned backbone whose record names ``sha256`` (WeightsError if
    none). Its file is checked when it is read (:meth:`FinetunedBackbone.read_verified`)."""
    for fb in installed():
        if fb.sha256 == sha256:
            return fb
    raise WeightsError(
        f"no fine-tuned backbone with sha256 {sha256} in {' or '.join(map(str, roots()))}",
        hint=_HINT.format(root=roots()[-1]),
    )


def resolve(ref: str | os.PathLike[str]) -> FinetunedBackbone:
    """A fine-tuned backbone named by a path (folder, record or safetensors file), by the
    name of its folder in the weights cache, or by its sha256."""
    p = Path(ref).expanduser()
    if p.exists():
        return read(p)
    text = str(ref)
    if os.sep not in text and "/" not in text:
        for root in roots():
            if (root / text / RECORD_FILE).is_file():
                return read(root / text)
        if len(text) == 64:
            return locate(text.lower())
    raise ConfigError(
        f"fine-tuned backbone {text!r}: no such folder, and no backbone of that name in "
        f"{' or '.join(map(str, roots()))}",
        hint=_HINT.format(root=roots()[-1]),
    )


def install(fb: FinetunedBackbone, name: str | None = None) -> FinetunedBackbone:
    """Copy a fine-tune output into the weights cache (``finetuned/NAME``, default the first
    16 hex digits of its sha256), so the ``cnn`` extractor finds it by sha256. Idempotent;
    a ConfigError if NAME already holds another backbone."""
    from postergenre import weights

    data = fb.read_verified()
    name = name or fb.sha256[:16]
    if not name or "/" in name or os.sep in name or name.startswith("."):
        raise ConfigError(f"install name: expected a plain folder name, got {name!r}")
    root = weights.cache_dir() / CACHE_FOLDER
    target = root / name
    if (target / RECORD_FILE).is_file():
        present = read(target)
        if present.sha256 != fb.sha256:
            raise ConfigError(
                f"{target} already holds another fine-tuned backbone ({present.sha256[:12]})",
                hint="choose another name",
            )
        present.verify()
        return present
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}-"))
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes it private
        (tmp / WEIGHTS_FILE).write_bytes(data)
        shutil.copyfile(fb.folder / RECORD_FILE, tmp / RECORD_FILE)
        os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WeightsError(
            f"cannot install the fine-tuned backbone into {target} ({exc})"
        ) from None
    return read(target)
