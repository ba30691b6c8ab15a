"""The benchmark row "fine-tuned CNN (original study's method)": the fine-tuned network's
own genre head, scored like every other row.

The head is linear on the pooled embedding, and dropout is off when predicting, so on a
store whose ``cnn`` features were extracted with the fine-tuned backbone (config
``finetuned`` = its sha256, same fit and input size, no mirror averaging) the head's
scores are ``sigmoid(E @ W.T + b)`` of the store's first ``dim`` cnn columns: exactly the
network's output on those posters, computed from the store, so the row gets the same
rows, thresholds and external posters as every other row. The stack row of that same
benchmark is then "the stack on the fine-tuned embedding".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from postergenre.errors import DataError, StoreError
from postergenre.finetune.artifact import HEAD_BIAS, HEAD_WEIGHT, FinetunedBackbone, resolve

ROW_NAME = "fine-tuned CNN (original study's method)"

#: (X_train, Y_train, W_train, X, feature_names, genres) -> (name, kind, scores_fn,
#: fit_seconds, note), the ``extra_rows`` protocol of ``run_benchmark``.
RowMaker = Callable[..., tuple[str, str, Callable[[np.ndarray], np.ndarray], float | None, str]]


def head_arrays(fb: FinetunedBackbone) -> tuple[np.ndarray, np.ndarray]:
    """(G, dim) weight and (G,) bias of the genre head, from the verified file."""
    from safetensors.numpy import load

    tensors = load(fb.read_verified())
    try:
        return (
            np.asarray(tensors[HEAD_WEIGHT], dtype=np.float64),
            np.asarray(tensors[HEAD_BIAS], dtype=np.float64),
        )
    except KeyError as exc:
        raise DataError(f"{fb.weights_path}: no genre head ({exc})") from None


def check_store(fb: FinetunedBackbone, store: str | os.PathLike[str]) -> None:
    """StoreError unless the store's cnn features were made with this backbone as trained."""
    from postergenre.store import FeatureStore

    fs = FeatureStore(store)
    if "cnn" not in fs.extractors():
        raise StoreError(f"store {store} has no cnn features", hint=_extract_hint(fb))
    config = fs.manifest("cnn").get("config") or {}
    pre = fb.preprocessing
    wrong = []
    if config.get("finetuned") != fb.sha256:
        wrong.append(
            f"backbone {str(config.get('finetuned') or 'ImageNet')[:12]} (wanted {fb.sha256[:12]})"
        )
    if config.get("fit") != pre["fit"] or config.get("input_size") != pre["input_size"]:
        wrong.append(
            f"fit {config.get('fit')}@{config.get('input_size')} "
            f"(trained: {pre['fit']}@{pre['input_size']})"
        )
    if config.get("hflip"):
        wrong.append("mirror averaging (hflip) on")
    if wrong:
        raise StoreError(
            f"store {store}: its cnn features are not the fine-tuned network's embedding: "
            + "; ".join(wrong),
            hint=_extract_hint(fb),
        )


def _extract_hint(fb: FinetunedBackbone) -> str:
    return (
        "extract the store's cnn features with the fine-tuned backbone "
        f"(cnn config finetuned={fb.sha256[:12]}..., see benchmarks/finetune.py)"
    )


def head_row(
    ref: str | os.PathLike[str],
    store: str | os.PathLike[str],
    external_store: str | os.PathLike[str] | None = None,
) -> RowMaker:
    """A row maker for ``run_benchmark(extra_rows=...)`` scoring the fine-tuned head on the
    cnn embedding of ``store`` (and of ``external_store``, when the benchmark has one)."""
    fb = resolve(ref)
    for s in (store, external_store):
        if s is not None:
            check_store(fb, s)
    weight, bias = head_arrays(fb)
    dim = weight.shape[1]
    seconds = (fb.record.get("training") or {}).get("seconds")
    val = fb.record.get("val") or {}

    def make_row(
        X_train: np.ndarray,
        Y_train: np.ndarray,
        W_train: np.ndarray | None,
        X: np.ndarray,
        feature_names: Sequence[str],
        genres: Sequence[str],
    ) -> tuple[str, str, Callable[[np.ndarray], np.ndarray], float | None, str]:
        cols = _embedding_columns(feature_names, dim)
        rows = _genre_rows(fb.genres, genres, fb)
        W, b = weight[rows], bias[rows]

        def scores(Xm: np.ndarray) -> np.ndarray:
            z = np.asarray(Xm, dtype=np.float64)[:, cols] @ W.T + b
            return np.asarray(1.0 / (1.0 + np.exp(-z)))

        note = (
            f"{fb.backbone} fine-tuned end to end ({fb.sha256[:12]}; best epoch "
            f"{(fb.record.get('training') or {}).get('best_epoch')}, its own val macro AP "
            f"{val.get('macro_ap', float('nan')):.4f}); its own head on the store's embedding"
        )
        return ROW_NAME, "baseline", scores, seconds, note

    return make_row


def _embedding_columns(feature_names: Sequence[str], dim: int) -> np.ndarray:
    index = {n: j for j, n in enumerate(feature_names)}
    wanted = [f"cnn.{i:04d}" for i in range(dim)]
    missing = [n for n in wanted if n not in index]
    if missing:
        raise DataError(
            f"the benchmark's features lack the cnn embedding the fine-tuned head reads "
            f"({len(missing)} of {dim} columns, e.g. {missing[0]})"
        )
    return np.array([index[n] for n in wanted], dtype=np.int64)


def _genre_rows(head: Sequence[str], genres: Sequence[str], fb: FinetunedBackbone) -> np.ndarray:
    index = {g: i for i, g in enumerate(head)}
    missing = [g for g in genres if g not in index]
    if missing:
        raise DataError(
            f"the fine-tuned head ({fb.folder}) has no output for {', '.join(missing)}",
            hint="fine-tune on the same labels and --min-count as the benchmark",
        )
    return np.array([index[g] for g in genres], dtype=np.int64)


# -- the network itself, on poster files -----------------------------------------------------
def load_network(fb: FinetunedBackbone, device: str = "cpu") -> Any:
    """The fine-tuned network (trunk and head) in eval mode."""
    import torch
    from safetensors.torch import load

    from postergenre.finetune.network import FinetuneNet, build_trunk

    tensors = load(fb.read_verified())
    trunk = build_trunk(fb.backbone, None, 0)
    net = FinetuneNet(fb.backbone, trunk, len(fb.genres), dropout=0.0)
    net.load_state_dict(tensors)
    net.eval()
    return net.to(torch.device(device))


def head_scores(
    fb: FinetunedBackbone, paths: Sequence[Path], device: str = "cpu", batch_size: int = 32
) -> np.ndarray:
    """(n, G) the fine-tuned network's own probabilities for poster files, preprocessed as
    in training (canonical scale, fit, ImageNet normalisation; no augmentation)."""
    import torch

    from postergenre.features.cnn import IMAGENET_MEAN, IMAGENET_STD
    from postergenre.finetune.data import InputPipeline
    from postergenre.input_scale import InputScale

    pre = fb.preprocessing
    pipe = InputPipeline(
        InputScale.from_record(pre["input_scale"]), str(pre["fit"]), int(pre["input_size"])
    )
    net = load_network(fb, device)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0
    out = np.empty((len(paths), len(fb.genres)), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            images = pipe.batch(list(paths[start : start + batch_size]))
            x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() - mean) / std
            logits = net(x.to(torch.device(device))).float()
            out[start : start + len(images)] = torch.sigmoid(logits).cpu().numpy()
    return out
