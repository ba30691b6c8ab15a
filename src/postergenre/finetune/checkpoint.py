"""The fine-tune's checkpoint: the state after each finished epoch, so a killed run resumes.

Files in ``DIR/checkpoint/`` (safetensors and JSON only, never pickle):

- ``epoch-NNN.safetensors``: the network (``model.<key>``) and the optimiser's moments and
  step counts (``opt.<parameter>.<exp_avg|exp_avg_sq|step>``) after epoch NNN;
- ``best-NNN.safetensors``: the network after the best epoch so far (by val macro AP);
- ``state.json``, written last (its atomic replacement marks the epoch done): the epoch,
  the files above with their sha256s, the history, the best epoch, whether the run has
  finished, and the fingerprint of its setup (a run with another setup never resumes it).

Everything else the next epoch needs (data order, augmentation, dropout, learning rate)
is a function of (seed, epoch, step), so nothing else is saved.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from postergenre.errors import ConfigError
from postergenre.finetune.artifact import sha256_bytes

if TYPE_CHECKING:
    import torch

FORMAT = "postergenre-finetune-checkpoint"
STATE_FILE = "state.json"
_OPT_KEYS = ("exp_avg", "exp_avg_sq", "step")


class Checkpoint:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def read(self) -> dict[str, Any] | None:
        """The last state, or None when no epoch has finished."""
        path = self.folder / STATE_FILE
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _damaged(path, str(exc)) from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise _damaged(path, "not a fine-tune checkpoint")
        return state

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- tensors ----------------------------------------------------------------------------
    def load_tensors(self, name: str, sha256: str) -> dict[str, torch.Tensor]:
        from safetensors.torch import load

        path = self.folder / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise _damaged(path, str(exc)) from None
        if sha256_bytes(data) != sha256:
            raise _damaged(path, "its sha256 is not the one state.json recorded")
        return load(data)

    def write_tensors(self, name: str, tensors: Mapping[str, torch.Tensor]) -> str:
        """Write ``name`` atomically; return its sha256."""
        from safetensors.torch import save

        data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.folder / name, data)
        return sha256_bytes(data)

    def write_state(self, state: Mapping[str, Any]) -> None:
        """Replace ``state.json`` (the commit point), then drop files it no longer names."""
        text = json.dumps({**state, "format": FORMAT}, indent=1, sort_keys=True)
        atomic_write(self.folder / STATE_FILE, text.encode("utf-8"))
        keep = {STATE_FILE, str(state.get("last_file")), str(state.get("best_file"))}
        for p in self.folder.iterdir():
            if p.name not in keep:
                p.unlink(missing_ok=True)


def model_tensors(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"model.{k}": v for k, v in net.state_dict().items()}


def optimizer_tensors(
    opt: torch.optim.Optimizer, names: Mapping[int, str]
) -> dict[str, torch.Tensor]:
    """The optimiser's per-parameter state keyed by parameter name (``names``: id(param) ->
    name), so it loads into a freshly built optimiser."""
    out = {}
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p) or {}
            for key in _OPT_KEYS:
                if key in state:
                    value = state[key]
                    out[f"opt.{names[id(p)]}.{key}"] = (
                        value if hasattr(value, "detach") else _scalar(float(value))
                    )
    return out


def load_model(net: torch.nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    net.load_state_dict(
        {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    )


def load_optimizer(
    opt: torch.optim.Optimizer,
    params: Mapping[str, torch.nn.Parameter],
    tensors: Mapping[str, torch.Tensor],
) -> None:
    import torch

    for name, p in params.items():
        state = {}
        for key in _OPT_KEYS:
            t = tensors.get(f"opt.{name}.{key}")
            if t is not None:
                state[key] = t if key == "step" else t.to(device=p.device, dtype=p.dtype)
        if state:
            # The moments take the parameter's memory layout (channels_last convs).
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    like = torch.empty_like(p)
                    like.copy_(state[key])
                    state[key] = like
            opt.state[p] = state


def _scalar(value: float) -> torch.Tensor:
    import torch

    return torch.tensor(value, dtype=torch.float32)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half a file),
    with the permissions a plain new file would get."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _damaged(path: Path, why: str) -> ConfigError:
    return ConfigError(
        f"fine-tune checkpoint {path} is damaged ({why})",
        hint="run the same command with --restart to start over",
    )
