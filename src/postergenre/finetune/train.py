"""The fine-tune: an ImageNet backbone and a new multi-label head trained end to end on
labelled posters (train split; val split for early stopping and the best epoch).

- Loss: binary cross-entropy per (poster, genre) times the collection label weights of
  :mod:`postergenre.ensemble.label_shift` (a masked cell weighs 0: no loss, no gradient),
  averaged over the batch's cells, as the stack's MLP base trains.
- Every poster is brought to the canonical input scale, then (training only) augmented,
  then fitted to the square network input like the ``cnn`` extractor does.
- Deterministic with a seed: the data order, the balancing resample, the augmentation and
  dropout of epoch ``e`` depend on (seed, e) only, and the learning rate on the step, so
  a run killed after epoch ``e`` and run again continues exactly where it stopped
  (:mod:`.checkpoint`).
- Output: ``backbone.safetensors`` and ``finetune.json`` (see :mod:`.artifact`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from postergenre.errors import ConfigError
from postergenre.finetune import artifact
from postergenre.finetune.checkpoint import (
    Checkpoint,
    atomic_write,
    load_model,
    load_optimizer,
    model_tensors,
    optimizer_tensors,
)
from postergenre.finetune.config import FinetuneConfig, RunSettings
from postergenre.finetune.data import InputPipeline, PosterSet, Split, read_poster_set

if TYPE_CHECKING:
    import torch

    from postergenre.ensemble.label_shift import LabelWeights
    from postergenre.finetune.network import FinetuneNet

T = TypeVar("T")


class Observing(Protocol):
    """What a fine-tune reports as it goes (the CLI draws a progress bar from it)."""

    def message(self, text: str) -> None: ...
    def epoch_started(self, epoch: int, epochs: int, batches: int) -> None: ...
    def batch_done(self, loss: float) -> None: ...
    def validating(self, epoch: int, posters: int) -> None: ...
    def epoch_done(self, record: Mapping[str, Any]) -> None: ...


class Observer:
    """An :class:`Observing` that ignores everything (subclass it to hear some)."""

    def message(self, text: str) -> None:
        pass

    def epoch_started(self, epoch: int, epochs: int, batches: int) -> None:
        pass

    def batch_done(self, loss: float) -> None:
        pass

    def validating(self, epoch: int, posters: int) -> None:
        pass

    def epoch_done(self, record: Mapping[str, Any]) -> None:
        pass


@dataclass
class FinetuneResult:
    out: Path
    record: dict[str, Any]
    #: The epoch the run started after (0: from the beginning).
    resumed_after: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return str(self.record["sha256"])


# -- pieces that tests use directly --------------------------------------------------------
def weighted_bce(logits: torch.Tensor, Y: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Mean over the (row, genre) cells of BCE-with-logits times ``W``: a cell of weight 0
    adds nothing to the loss and nothing to any gradient."""
    import torch

    cells = torch.nn.functional.binary_cross_entropy_with_logits(logits, Y, reduction="none")
    return (cells * W).mean()


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` of ``total`` steps, then cosine to 0."""
    warm = max(1, round(warmup * total)) if warmup > 0 else 0
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def epoch_order(Y: np.ndarray, config: FinetuneConfig, epoch: int) -> np.ndarray:
    """Row indices of epoch ``epoch`` (1-based), in training order: all rows, or the
    study's balanced resample, shuffled; a function of (seed, epoch) only."""
    from postergenre.ensemble.stacker import balanced_indices

    seed = _mix(config.seed, epoch, 1)
    rows = np.arange(len(Y))
    if config.balance is not None:
        rows = balanced_indices(Y, config.balance.cap, config.balance.max_repeat, seed)
    return np.random.default_rng(seed).permutation(rows)


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Batches of an epoch of ``n`` rows; a last batch of one row joins the one before
    (BatchNorm cannot train on a single poster)."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < 2:
        starts.pop()
    return [slice(s, starts[i + 1] if i + 1 < len(starts) else n) for i, s in enumerate(starts)]


def macro_ap(Y: np.ndarray, S: np.ndarray, W: np.ndarray | None) -> tuple[float, list[float]]:
    """Macro average precision over genres with a positive (label-weighted when ``W``)."""
    from postergenre.ensemble.metrics import average_precision

    per = [
        average_precision(Y[:, g], S[:, g], None if W is None else W[:, g])
        for g in range(Y.shape[1])
    ]
    valid = [a for a in per if math.isfinite(a)]
    return (float(np.mean(valid)) if valid else math.nan), per


def _mix(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and platforms)."""
    h = hashlib.sha256(",".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


# -- the run -----------------------------------------------------------------------------------
def finetune(
    labels: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: FinetuneConfig | None = None,
    settings: RunSettings | None = None,
    observer: Observing | None = None,
    install: bool = False,
    install_name: str | None = None,
) -> FinetuneResult:
    """Fine-tune on the labelled posters of ``labels`` into the folder ``out``.

    Run again with the same arguments after a kill, it continues after the last finished
    epoch; a finished run returns its result. ``install``: also copy the result into the
    weights cache, where the ``cnn`` extractor finds it by sha256.
    """
    import torch

    from postergenre.features.base import resolve_device

    config = config or FinetuneConfig()
    settings = settings or RunSettings()
    obs = observer or Observer()
    t0 = time.perf_counter()
    out = Path(out)
    device = resolve_device(settings.device)
    old_threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        obs.message(f"reading {labels} (hashing and decoding every poster once)...")
        data = read_poster_set(labels, config, threads=settings.loader_threads)
        _describe_data(data, config, obs)
        weights = _label_weights(data, config, obs)
        start_state, start = _start_weights(config)
        fingerprint = _fingerprint(config, start, data)
        ckpt = Checkpoint(out / "checkpoint")
        if settings.restart:
            ckpt.clear()
        state = ckpt.read()
        if state is not None and state.get("fingerprint") != fingerprint:
            raise ConfigError(
                f"{out} holds a fine-tune with another setup: "
                + "; ".join(_differences(state.get("fingerprint") or {}, fingerprint)),
                hint="run with --restart to start over, or give another --out",
            )
        run = _Run(config, settings, data, weights, device, obs, ckpt, start_state)
        resumed_after = run.restore(state)
        if run.finished:
            obs.message(
                f"{out} holds a finished fine-tune ({resumed_after} epochs): nothing to train"
            )
        elif resumed_after:
            obs.message(f"resuming after epoch {resumed_after} (checkpoint in {ckpt.folder})")
        history = run.train(fingerprint)
        record = _write_output(out, run, config, data, weights, start, history, t0)
        if install:
            fb = artifact.install(artifact.read(out), install_name)
            obs.message(f"installed in the weights cache: {fb.folder}")
        return FinetuneResult(out, record, resumed_after, time.perf_counter() - t0, history)
    finally:
        torch.set_num_threads(old_threads)


def _describe_data(data: PosterSet, config: FinetuneConfig, obs: Observing) -> None:
    n_val = 0 if data.val is None else len(data.val)
    dropped = ", ".join(f"{k}: {v}" for k, v in sorted(data.dropped.items()))
    obs.message(
        f"{len(data.train)} training posters, {n_val} validation posters, "
        f"{len(data.genres)} genres (>= {config.min_count} training posters each)"
        + (f"; left out: {dropped}" if dropped else "")
    )
    if data.val is None:
        obs.message("no validation posters: no early stopping; the last epoch is the result")


def _label_weights(data: PosterSet, config: FinetuneConfig, obs: Observing) -> LabelWeights | None:
    if not config.label_weights:
        obs.message("label weights off: every (poster, genre) weighs 1")
        return None
    from postergenre.ensemble.label_shift import default_prior, read_prior
    from postergenre.ensemble.training import make_label_weights

    prior = read_prior(config.prior) if config.prior else default_prior()
    weights = make_label_weights(
        data.train.Y, data.train.groups, data.genres, prior, config.weight_rule
    )
    for line in weights.lines():
        obs.message(line)
    return weights


def _start_weights(config: FinetuneConfig) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(state dict or None, record of where the starting weights came from)."""
    if not config.pretrained:
        return None, {"weights": "random", "seed": config.seed}
    import torch

    from postergenre import weights

    path = weights.resolve(config.backbone)
    spec = weights.spec(config.backbone)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state, {
        "weights": config.backbone,
        "file": spec.filename,
        "sha256": weights.sha256_of(path),
    }


def _fingerprint(
    config: FinetuneConfig, start: Mapping[str, Any], data: PosterSet
) -> dict[str, Any]:
    def ids_digest(split: Split | None) -> str:
        ids = [] if split is None else split.ids
        return hashlib.sha256("\n".join(ids).encode()).hexdigest()

    return json.loads(
        json.dumps(
            {
                "config": config.to_dict(),
                "start": dict(start),
                "genres": data.genres,
                "train_ids": ids_digest(data.train),
                "val_ids": ids_digest(data.val),
            }
        )
    )


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if key == "config" and isinstance(a, dict) and isinstance(b, dict):
            diffs += [
                f"{k}={a.get(k)!r} there, {b.get(k)!r} now"
                for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k)
            ]
        elif a != b:
            diffs.append(f"{key} differs")
    return diffs or ["unknown difference"]


class _Run:
    """The network, optimiser and data of one fine-tune, epoch by epoch."""

    def __init__(
        self,
        config: FinetuneConfig,
        settings: RunSettings,
        data: PosterSet,
        weights: LabelWeights | None,
        device: str,
        obs: Observing,
        ckpt: Checkpoint,
        start_state: dict[str, Any] | None,
    ) -> None:
        import torch

        from postergenre.ensemble.bases import prior_logit
        from postergenre.finetune.network import FinetuneNet, build_trunk

        self.config, self.settings, self.data, self.obs, self.ckpt = (
            config,
            settings,
            data,
            obs,
            ckpt,
        )
        self.device = torch.device(device)
        self.W_train = (
            weights.W.astype(np.float32)
            if weights is not None
            else np.ones(data.train.Y.shape, dtype=np.float32)
        )
        self.W_val = (
            None
            if weights is None or data.val is None
            else weights.weights_for(data.val.Y, data.val.groups)
        )
        trunk = build_trunk(config.backbone, start_state, config.seed)
        net = FinetuneNet(
            config.backbone, trunk, len(data.genres), config.dropout, config.freeze or 0
        )
        gen = torch.Generator().manual_seed(_mix(config.seed, 0, 2))
        with torch.no_grad():
            net.head.weight.normal_(0.0, 0.01, generator=gen)
            # Start from the (weighted) genre rates, so rare genres do not begin at 50%.
            bias = prior_logit(data.train.Y, self.W_train)
            net.head.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
        self.net: FinetuneNet = net.to(self.device).to(memory_format=torch.channels_last)
        named = list(self.net.trainable())
        self.params = dict(named)
        self.param_names = {id(p): n for n, p in named}
        groups = [
            {"params": [p for n, p in named if not n.startswith("head.")], "base_lr": config.lr},
            {"params": [p for n, p in named if n.startswith("head.")], "base_lr": config.head_lr},
        ]
        groups = [g for g in groups if g["params"]]
        self.opt = torch.optim.AdamW(groups, lr=config.head_lr, weight_decay=config.weight_decay)
        self.train_pipe = InputPipeline(
            config.input_scale, config.fit, config.input_size, config.augment
        )
        self.eval_pipe = InputPipeline(config.input_scale, config.fit, config.input_size, None)
        self.orders = [epoch_order(data.train.Y, config, e) for e in range(1, config.epochs + 1)]
        self.total_steps = sum(len(batch_slices(len(o), config.batch_size)) for o in self.orders)
        self.epoch = 0
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.best_epoch = 0
        self.best_metric = -math.inf
        self.best_file: str | None = None
        self.best_sha: str | None = None
        #: Val metrics of the best epoch (macro AP, unweighted, per genre).
        self.best_val: dict[str, Any] | None = None
        self.finished = False
        self.stopped_early = False

    # -- resume ------------------------------------------------------------------------------
    def restore(self, state: Mapping[str, Any] | None) -> int:
        if state is None:
            return 0
        tensors = self.ckpt.load_tensors(str(state["last_file"]), str(state["last_sha256"]))
        load_model(self.net, tensors)
        load_optimizer(self.opt, self.params, tensors)
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.best_epoch = int(state["best_epoch"])
        metric = state["best_metric"]
        self.best_metric = -math.inf if metric is None else float(metric)
        self.best_file = state.get("best_file")
        self.best_sha = state.get("best_sha256")
        self.best_val = state.get("best_val")
        self.finished = bool(state["finished"])
        self.stopped_early = bool(state.get("stopped_early"))
        return self.epoch

    # -- epochs ------------------------------------------------------------------------------
    def train(self, fingerprint: Mapping[str, Any]) -> list[dict[str, Any]]:
        c = self.config
        while not self.finished:
            e = self.epoch + 1
            # CPU seconds (all threads) beside wall seconds: on a shared machine the wall
            # time says more about the neighbours than about the work.
            t0, c0 = time.perf_counter(), time.process_time()
            loss = self._train_epoch(e)
            t_train, c_train = time.perf_counter() - t0, time.process_time() - c0
            val_ap, val_ap_plain, t_val, c_val = math.nan, math.nan, 0.0, 0.0
            per: list[float] = []
            if self.data.val is not None:
                t1, c1 = time.perf_counter(), time.process_time()
                self.obs.validating(e, len(self.data.val))
                S = self.scores(self.data.val.paths)
                val_ap, per = macro_ap(self.data.val.Y, S, self.W_val)
                val_ap_plain, _ = macro_ap(self.data.val.Y, S, None)
                t_val, c_val = time.perf_counter() - t1, time.process_time() - c1
            record = {
                "epoch": e,
                "loss": loss,
                "val_macro_ap": val_ap,
                "val_macro_ap_unweighted": val_ap_plain,
                "train_posters": len(self.orders[e - 1]),
                "train_seconds": round(t_train, 2),
                "val_seconds": round(t_val, 2),
                "train_cpu_seconds": round(c_train, 2),
                "val_cpu_seconds": round(c_val, 2),
                "lr_end": [g["lr"] for g in self.opt.param_groups],
            }
            improved = self.data.val is None or (
                math.isfinite(val_ap) and val_ap > self.best_metric
            )
            if improved:
                self.best_epoch = e
                self.best_metric = val_ap if math.isfinite(val_ap) else -math.inf
                self.best_file = f"best-{e:03d}.safetensors"
                self.best_sha = self.ckpt.write_tensors(self.best_file, model_tensors(self.net))
                self.best_val = _finite({"macro_ap": val_ap, "macro_ap_unweighted": val_ap_plain})
                self.best_val["per_genre_ap"] = {
                    g: (a if math.isfinite(a) else None)
                    for g, a in zip(self.data.genres, per, strict=False)
                }
            self.epoch = e
            self.history.append(_finite(record))
            waited = e - self.best_epoch
            self.stopped_early = bool(
                c.patience and self.data.val is not None and waited >= c.patience
            )
            self.finished = e >= c.epochs or self.stopped_early
            last_file = f"epoch-{e:03d}.safetensors"
            tensors = {**model_tensors(self.net), **optimizer_tensors(self.opt, self.param_names)}
            last_sha = self.ckpt.write_tensors(last_file, tensors)
            self.ckpt.write_state(
                {
                    "fingerprint": dict(fingerprint),
                    "epoch": e,
                    "step": self.step,
                    "last_file": last_file,
                    "last_sha256": last_sha,
                    "best_epoch": self.best_epoch,
                    "best_metric": (self.best_metric if math.isfinite(self.best_metric) else None),
                    "best_file": self.best_file,
                    "best_sha256": self.best_sha,
                    "best_val": self.best_val,
                    "history": self.history,
                    "finished": self.finished,
                    "stopped_early": self.stopped_early,
                }
            )
            self.obs.epoch_done(self.history[-1])
            if self.stopped_early:
                self.obs.message(
                    f"stopping early: val macro AP has not improved for {waited} epochs "
                    f"(best: epoch {self.best_epoch})"
                )
        return self.history

    def _train_epoch(self, e: int) -> float:
        import torch

        c = self.config
        order = self.orders[e - 1]
        slices = batch_slices(len(order), c.batch_size)
        self.obs.epoch_started(e, c.epochs, len(slices))
        # Dropout draws from the global generator: seeded per epoch, so a resumed epoch
        # draws what an uninterrupted one would.
        torch.manual_seed(_mix(c.seed, e, 3))
        self.net.train()
        train = self.data.train
        Y = torch.from_numpy(train.Y)
        W = torch.from_numpy(self.W_train)
        total, count = 0.0, 0

        def load(k: int) -> np.ndarray:
            rows = order[slices[k]]
            seeds = [(c.seed, e, int(slices[k].start) + j) for j in range(len(rows))]
            return self.train_pipe.batch([train.paths[i] for i in rows], seeds)

        for k, images in enumerate(
            _prefetch(load, range(len(slices)), self.settings.loader_threads)
        ):
            rows = torch.from_numpy(order[slices[k]])
            for group in self.opt.param_groups:
                group["lr"] = group["base_lr"] * lr_factor(self.step, self.total_steps, c.warmup)
            x = self._tensor(images)
            logits = self.net(x)
            loss = weighted_bce(logits.float(), Y[rows].to(self.device), W[rows].to(self.device))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.step += 1
            value = float(loss.detach())
            total += value * len(rows)
            count += len(rows)
            self.obs.batch_done(value)
        return total / max(count, 1)

    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        import torch

        from postergenre.features.cnn import IMAGENET_MEAN, IMAGENET_STD

        x = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float()
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1) * 255.0
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)

    def scores(self, paths: Sequence[Path]) -> np.ndarray:
        """(n, G) probabilities of the network's own head, in eval mode."""
        import torch

        self.net.eval()
        bs = self.config.batch_size * 2
        starts = list(range(0, len(paths), bs))
        out = np.empty((len(paths), len(self.data.genres)), dtype=np.float64)

        def load(k: int) -> np.ndarray:
            return self.eval_pipe.batch(paths[starts[k] : starts[k] + bs])

        with torch.inference_mode():
            for k, images in enumerate(
                _prefetch(load, range(len(starts)), self.settings.loader_threads)
            ):
                logits = self.net(self._tensor(images)).float()
                out[starts[k] : starts[k] + len(images)] = torch.sigmoid(logits).cpu().numpy()
        return out

    def best_tensors(self) -> dict[str, torch.Tensor]:
        if self.best_file is None:
            return model_tensors(self.net)
        return self.ckpt.load_tensors(self.best_file, str(self.best_sha))


def _prefetch(fn: Callable[[int], T], items: range, threads: int) -> Iterator[T]:
    """``fn(item)`` for each item, in order, computed up to ``threads + 1`` items ahead."""
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[Future[T]] = deque()
        it = iter(items)
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) > threads:
                break
        while pending:
            done = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(fn, nxt))
            yield done.result()


def _finite(record: Mapping[str, Any]) -> dict[str, Any]:
    """NaN -> None, so the JSON stays standard."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()
    }


def _write_output(
    out: Path,
    run: _Run,
    config: FinetuneConfig,
    data: PosterSet,
    weights: LabelWeights | None,
    start: Mapping[str, Any],
    history: list[dict[str, Any]],
    t0: float,
) -> dict[str, Any]:
    """``backbone.safetensors`` (the best epoch's network) and ``finetune.json``."""
    import torch

    from postergenre import __version__
    from postergenre.ensemble.report import library_versions
    from postergenre.features.cnn import BACKBONES, IMAGENET_MEAN, IMAGENET_STD

    tensors = {
        k[len("model.") :]: v for k, v in run.best_tensors().items() if k.startswith("model.")
    }
    # Keys: backbone.* (the trunk, as its ImageNet file) and head.*; nothing else.
    tensors = {
        k: v.detach().cpu().contiguous()
        for k, v in sorted(tensors.items())
        if k.startswith(artifact.BACKBONE_PREFIX) or k in (artifact.HEAD_WEIGHT, artifact.HEAD_BIAS)
    }
    blob = artifact.safetensors_bytes(
        {k: v.numpy() for k, v in tensors.items()},
        {"format": artifact.FORMAT, "backbone": config.backbone},
    )
    sha = artifact.sha256_bytes(blob)
    best = next((h for h in history if h["epoch"] == run.best_epoch), history[-1])
    val: dict[str, Any] | None = None
    if data.val is not None and run.best_val is not None:
        val = {
            "split": config.val_split,
            "posters": len(data.val),
            "epoch": run.best_epoch,
            "label_weighted": run.W_val is not None,
            **run.best_val,
        }
    record: dict[str, Any] = {
        "format": artifact.FORMAT,
        "format_version": artifact.FORMAT_VERSION,
        "file": artifact.WEIGHTS_FILE,
        "sha256": sha,
        "backbone": config.backbone,
        "embedding_dim": BACKBONES[config.backbone],
        "genres": data.genres,
        "preprocessing": {
            "input_scale": config.input_scale.to_record(),
            "fit": config.fit,
            "input_size": config.input_size,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "note": "RGB in [0, 255] -> canonical scale -> fit to the network input "
            "(cnn extractor's fit_to_input) -> (x / 255 - mean) / std",
        },
        "start_weights": dict(start),
        "training": {
            "config": config.to_dict(),
            "epochs_run": run.epoch,
            "best_epoch": run.best_epoch,
            "stopped_early": run.stopped_early,
            "steps": run.step,
            "device": str(run.device),
            "seconds": round(time.perf_counter() - t0, 1),
            "seconds_note": "this invocation only (a resumed run counts from its restart)",
            "train_seconds_per_epoch": [h["train_seconds"] for h in history],
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "data": {**data.counts(), "genre_counts_full_train": data.genre_counts},
        "label_weights": None if weights is None else weights.to_dict(),
        "val": val,
        "best_epoch_record": best,
        "history": history,
        "postergenre_version": __version__,
        "libraries": library_versions(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / artifact.WEIGHTS_FILE, blob)
    text = json.dumps(_json_ready(record), indent=1)
    atomic_write(out / artifact.RECORD_FILE, text.encode("utf-8"))
    return record


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return _json_ready(obj.item())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _json_ready(dataclasses.asdict(obj))
    return obj
