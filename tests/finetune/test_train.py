"""Fine-tune training on tiny synthetic posters with random weights: the loss falls, a
resumed run ends exactly where an uninterrupted one does, label weights mask what they
should, and the options do what they say."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from postergenre.errors import ConfigError, WeightsError
from postergenre.finetune import artifact
from postergenre.finetune.config import Augment, Balance, FinetuneConfig, RunSettings
from postergenre.finetune.train import (
    FinetuneResult,
    Observer,
    batch_slices,
    epoch_order,
    finetune,
    lr_factor,
    weighted_bce,
)

CPU = RunSettings(device="cpu", threads=1)
GENRES = ("Dark", "Red", "Stripes")


@pytest.fixture(scope="module")
def run(config_for: Any) -> Any:
    def go(labels: Path, out: Path, **overrides: Any) -> FinetuneResult:
        return finetune(labels, out, config_for(labels, **overrides), CPU)

    return go


@pytest.fixture(scope="module")
def tiny_config(config_for: Any) -> Any:
    return config_for


class StopAt(Observer):
    """Interrupts the run like Ctrl-C: after epoch ``epoch`` is saved, or at batch
    ``batch`` of epoch ``epoch`` (a kill in the middle of an epoch)."""

    def __init__(self, epoch: int, batch: int | None = None) -> None:
        self.epoch, self.batch = epoch, batch
        self.current, self.batches = 0, 0

    def epoch_started(self, epoch: int, epochs: int, batches: int) -> None:
        self.current, self.batches = epoch, 0

    def batch_done(self, loss: float) -> None:
        self.batches += 1
        if self.batch is not None and self.current == self.epoch and self.batches == self.batch:
            raise KeyboardInterrupt

    def epoch_done(self, record: Any) -> None:
        if self.batch is None and record["epoch"] == self.epoch:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def uninterrupted(
    labelled: Path, tmp_path_factory: pytest.TempPathFactory, run: Any
) -> FinetuneResult:
    return run(labelled, tmp_path_factory.mktemp("whole") / "out", epochs=3)


def test_the_loss_falls(labelled: Path, tmp_path: Path, run: Any) -> None:
    # Augmentation and dropout off, so the epoch losses measure the fit alone.
    result = run(
        labelled, tmp_path / "out", epochs=6, lr=1e-3, head_lr=1e-2, augment=None,
        dropout=0.0, warmup=0.0,
    )  # fmt: skip
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.75 * losses[0], losses


@pytest.mark.parametrize("stop", [{"epoch": 1}, {"epoch": 2, "batch": 3}])
def test_a_resumed_run_ends_where_an_uninterrupted_one_does(
    labelled: Path,
    tmp_path: Path,
    uninterrupted: FinetuneResult,
    stop: dict[str, int],
    tiny_config: Any,
) -> None:
    out = tmp_path / "out"
    config = tiny_config(labelled, epochs=3)
    with pytest.raises(KeyboardInterrupt):
        finetune(labelled, out, config, CPU, StopAt(**stop))
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1 and not state["finished"]
    assert not (out / artifact.WEIGHTS_FILE).exists()
    resumed = finetune(labelled, out, config, CPU)
    assert resumed.resumed_after == 1
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    # The same network, bit for bit, and the same per-epoch record.
    assert resumed.sha256 == uninterrupted.sha256
    assert (out / artifact.WEIGHTS_FILE).read_bytes() == (
        uninterrupted.out / artifact.WEIGHTS_FILE
    ).read_bytes()
    for a, b in zip(resumed.history, uninterrupted.history, strict=True):
        assert a["loss"] == b["loss"] and a["val_macro_ap"] == b["val_macro_ap"]


def test_a_finished_run_run_again_trains_nothing(
    labelled: Path, uninterrupted: FinetuneResult, tiny_config: Any
) -> None:
    again = finetune(labelled, uninterrupted.out, tiny_config(labelled, epochs=3), CPU)
    assert again.resumed_after == 3 and again.sha256 == uninterrupted.sha256


def test_a_checkpoint_of_another_setup_is_refused(
    labelled: Path, uninterrupted: FinetuneResult, tmp_path: Path, tiny_config: Any
) -> None:
    with pytest.raises(ConfigError, match="lr=") as info:
        finetune(labelled, uninterrupted.out, tiny_config(labelled, epochs=3, lr=1e-2), CPU)
    assert "--restart" in str(info.value)


def test_the_seed_decides_the_result(
    labelled: Path, tmp_path: Path, uninterrupted: Any, run: Any
) -> None:
    other = run(labelled, tmp_path / "seed1", epochs=1, seed=1)
    assert other.sha256 != uninterrupted.sha256


def test_the_output_records_what_it_is(uninterrupted: FinetuneResult) -> None:
    rec = json.loads((uninterrupted.out / artifact.RECORD_FILE).read_text())
    data = (uninterrupted.out / artifact.WEIGHTS_FILE).read_bytes()
    assert rec["sha256"] == artifact.sha256_bytes(data)
    assert rec["genres"] == list(GENRES) and rec["backbone"] == "mobilenet_v2"
    assert rec["start_weights"] == {"weights": "random", "seed": 0}
    assert rec["preprocessing"]["input_scale"] == {"fit": [32, 48], "shrink": "area",
                                                    "enlarge": "cubic"}  # fmt: skip
    assert rec["data"]["train_posters"] == 48 and rec["data"]["val_posters"] == 16
    assert rec["data"]["train_by_collection"] == {"alpha": 24, "beta": 24}
    assert 1 <= rec["training"]["best_epoch"] <= 3
    best = rec["history"][rec["training"]["best_epoch"] - 1]["val_macro_ap"]
    assert rec["val"]["macro_ap"] == best == max(h["val_macro_ap"] for h in rec["history"])
    assert set(rec["val"]["per_genre_ap"]) == set(GENRES)
    # Nothing but safetensors and JSON: no pickle anywhere in the output.
    files = sorted(p.name for p in uninterrupted.out.rglob("*") if p.is_file())
    assert all(n.endswith((".safetensors", ".json")) for n in files), files
    from safetensors.numpy import load

    tensors = load(data)
    assert tensors[artifact.HEAD_WEIGHT].shape == (3, 1280)
    assert all(k.startswith("backbone.") or k.startswith("head.") for k in tensors)


# -- label weights -------------------------------------------------------------------------
def test_a_masked_cell_has_no_gradient() -> None:
    import torch

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, generator=gen, requires_grad=True)
    Y = (torch.rand(6, 3, generator=gen) < 0.5).float()
    W = torch.ones(6, 3)
    W[[1, 4], 2] = 0.0  # rows 1 and 4 say nothing about genre 2
    weighted_bce(logits, Y, W).backward()
    assert logits.grad is not None
    assert (logits.grad[[1, 4], 2] == 0).all()
    assert (logits.grad[[0, 2, 3, 5], 2] != 0).all() and (logits.grad[:, :2] != 0).all()


def test_flipping_masked_labels_changes_no_gradient_of_the_network() -> None:
    import torch

    from postergenre.finetune.network import FinetuneNet, build_trunk

    net = FinetuneNet("mobilenet_v2", build_trunk("mobilenet_v2", None, 0), 3, 0.0, freeze=0)
    net.train()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    Y = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.float32)
    W = torch.ones(4, 3)
    W[:2, 2] = 0.0

    def grads(labels: torch.Tensor) -> list[torch.Tensor]:
        net.zero_grad()
        weighted_bce(net(x), labels, W).backward()
        return [p.grad.clone() for _, p in net.trainable() if p.grad is not None]

    before = grads(Y)
    flipped = Y.clone()
    flipped[:2, 2] = 1 - flipped[:2, 2]
    after = grads(flipped)
    assert len(before) == len(after) > 100
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    unmasked = Y.clone()
    unmasked[2, 2] = 1 - unmasked[2, 2]  # a weighted cell does move them
    assert not all(torch.equal(a, b) for a, b in zip(before, grads(unmasked), strict=True))


def _rewrite_labels(src: Path, dst: Path, genre: str, rows: set[int]) -> Path:
    """A copy of ``src`` (same poster files) where ``genre`` is on exactly ``rows``."""
    with open(src, newline="") as fh:
        records = list(csv.DictReader(fh))
    for i, r in enumerate(records):
        # Every other genre stays as it is in every copy (a poster left with none gets
        # one fixed stand-in, the same in every copy).
        gs = set(filter(None, r["genres"].split("|"))) - {genre} or {"Dark"}
        if i in rows:
            gs.add(genre)
        r["genres"] = "|".join(sorted(gs))
        r["file"] = str((src.parent / r["file"]).resolve())
    with open(dst, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return dst


def test_a_genre_the_collections_did_not_sample_teaches_the_network_nothing(
    labelled: Path, tmp_path: Path, prior_for: Any, tiny_config: Any
) -> None:
    # Stripes on 8 of 48 training posters (4 per collection): 17% against a reference of
    # 90% is far below min_ratio x reference, so both collections leave it unlabelled.
    # Which posters carry it must then change nothing in the trained network.
    prior = prior_for({"Dark": 0.4, "Red": 0.4, "Stripes": 0.9})
    val_rows = set(range(48, 64, 3))
    a = _rewrite_labels(labelled, tmp_path / "a.csv", "Stripes", set(range(8)) | val_rows)
    b = _rewrite_labels(labelled, tmp_path / "b.csv", "Stripes", set(range(30, 38)) | val_rows)
    ra = finetune(a, tmp_path / "ra", tiny_config(labelled, epochs=2, prior=str(prior)), CPU)
    rb = finetune(b, tmp_path / "rb", tiny_config(labelled, epochs=2, prior=str(prior)), CPU)
    masked = {
        (r["collection"], r["genre"])
        for r in ra.record["label_weights"]["table"]
        if r["decision"] == "masked"
    }
    assert masked == {("alpha", "Stripes"), ("beta", "Stripes")}
    assert ra.sha256 == rb.sha256
    # Control: the same move of a weighted genre (Red) does change the network.
    c = _rewrite_labels(labelled, tmp_path / "c.csv", "Red", set(range(30, 46)) | val_rows)
    rc = finetune(c, tmp_path / "rc", tiny_config(labelled, epochs=1, prior=str(prior)), CPU)
    rd = finetune(a, tmp_path / "rd", tiny_config(labelled, epochs=1, prior=str(prior)), CPU)
    assert rc.sha256 != rd.sha256


# -- options -------------------------------------------------------------------------------
def test_frozen_stages_keep_their_weights_and_statistics(uninterrupted: FinetuneResult) -> None:
    from safetensors.numpy import load

    from postergenre.finetune.network import build_trunk

    # The default recipe freezes mobilenet_v2's first 7 stages (features.0 .. features.6).
    assert uninterrupted.record["training"]["config"]["freeze"] == 7
    start = {k: v.numpy() for k, v in build_trunk("mobilenet_v2", None, 0).state_dict().items()}
    tuned = load((uninterrupted.out / artifact.WEIGHTS_FILE).read_bytes())
    stage = {k: int(k.split(".")[1]) for k in start if k.startswith("features.")}
    frozen = [k for k, i in stage.items() if i < 7]
    trained = [k for k, i in stage.items() if i >= 7 and k.endswith((".weight", "running_mean"))]
    assert frozen and trained
    assert all(np.array_equal(tuned["backbone." + k], start[k]) for k in frozen)
    changed = [k for k in trained if not np.array_equal(tuned["backbone." + k], start[k])]
    assert len(changed) == len(trained), set(trained) - set(changed)
    # The ImageNet classifier is not on the path to the genre head: carried, untouched.
    assert np.array_equal(tuned["backbone.classifier.1.weight"], start["classifier.1.weight"])


def test_balancing_caps_common_genres_and_repeats_rare_ones(labelled: Path) -> None:
    Y = np.zeros((40, 2), dtype=np.float32)
    Y[:30, 0] = 1  # common
    Y[30:34, 1] = 1  # rare
    config = FinetuneConfig(balance=Balance(cap=10, max_repeat=2), seed=3)
    order = epoch_order(Y, config, epoch=1)
    assert (Y[order, 0] > 0).sum() == 10 and (Y[order, 1] > 0).sum() == 8
    assert not np.array_equal(order, epoch_order(Y, config, epoch=2))  # redrawn each epoch
    assert np.array_equal(order, epoch_order(Y, config, epoch=1))
    plain = epoch_order(Y, FinetuneConfig(seed=3), epoch=1)
    assert sorted(plain.tolist()) == list(range(40))


def test_batches_never_leave_a_single_poster() -> None:
    assert [s.stop - s.start for s in batch_slices(17, 8)] == [8, 9]
    assert [s.stop - s.start for s in batch_slices(18, 8)] == [8, 8, 2]
    assert [s.stop - s.start for s in batch_slices(1, 8)] == [1]


def test_the_learning_rate_warms_up_then_decays() -> None:
    f = [lr_factor(s, 100, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[9:], f[10:], strict=False)) and f[-1] < 0.01


def test_augmentation_is_drawn_per_poster_and_reproducible() -> None:
    from postergenre.finetune.data import augment_image

    image = np.random.default_rng(0).integers(0, 256, (48, 32, 3), dtype=np.uint8)
    a = augment_image(image, Augment(), np.random.default_rng([0, 1, 5]))
    b = augment_image(image, Augment(), np.random.default_rng([0, 1, 5]))
    c = augment_image(image, Augment(), np.random.default_rng([0, 1, 6]))
    assert np.array_equal(a, b) and a.dtype == np.uint8
    assert a.shape != c.shape or not np.array_equal(a, c)
    same = augment_image(
        image, Augment(hflip=False, crop=1.0, jitter=0.0), np.random.default_rng(0)
    )
    assert np.array_equal(same, image)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"backbone": "vgg16"}, "backbone"),
        ({"freeze": 19}, "freeze"),
        ({"backbone": "resnet18", "freeze": 5}, "freeze"),
        ({"batch_size": 1}, "batch_size"),
        ({"epochs": 0}, "epochs"),
        ({"fit": "stretch"}, "fit"),
    ],
)
def test_bad_options_say_what_was_expected(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig(**overrides)


def test_a_missing_imagenet_file_is_a_clear_error_offline(
    labelled: Path, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, tiny_config: Any
) -> None:
    monkeypatch.setenv("POSTERGENRE_OFFLINE", "1")
    config = tiny_config(labelled, backbone="resnet34", pretrained=True)
    with pytest.raises(WeightsError, match="resnet34"):
        finetune(labelled, tmp_path / "out", config, CPU)


def test_no_readable_poster_is_left_out_silently(tmp_path: Path, run: Any, make_set: Any) -> None:
    labels = make_set(tmp_path / "set", n_train=24, n_val=8)
    (tmp_path / "set" / "images" / "p003.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "set" / "images" / "p004.png").unlink()
    result = run(labels, tmp_path / "out", epochs=1)
    assert result.record["data"]["dropped"] == {"missing_file": 1, "undecodable": 1}
    assert result.record["data"]["train_posters"] == 22


def test_without_a_split_column_every_poster_trains_and_the_last_epoch_is_kept(
    labelled: Path, tmp_path: Path, tiny_config: Any
) -> None:
    rows = list(csv.DictReader(labelled.read_text().splitlines()))
    plain = tmp_path / "labels.csv"
    with open(plain, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "genres"])
        writer.writeheader()
        for r in rows:
            writer.writerow(
                {"file": str((labelled.parent / r["file"]).resolve()), "genres": r["genres"]}
            )
    config = tiny_config(labelled, epochs=2, patience=1, label_weights=False)
    result = finetune(plain, tmp_path / "out", config, CPU)
    assert result.record["data"]["train_posters"] == 64 and result.record["val"] is None
    assert result.record["training"]["best_epoch"] == 2  # no val: the last epoch


def test_cuda_asked_for_without_a_cuda_device_is_a_clear_error(
    labelled: Path, tmp_path: Path, tiny_config: Any
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(ConfigError, match="no CUDA device"):
        finetune(labelled, tmp_path / "out", tiny_config(labelled), RunSettings("cuda"))


@pytest.mark.gpu
def test_a_cuda_fine_tune_gives_a_network_the_cpu_runs_alike(
    labelled: Path, tmp_path: Path, tiny_config: Any
) -> None:
    from postergenre.finetune.benchmark_row import head_scores

    result = finetune(labelled, tmp_path / "out", tiny_config(labelled), RunSettings("cuda"))
    assert result.record["training"]["device"].startswith("cuda")
    fb = artifact.read(result.out)
    files = sorted((labelled.parent / "images").glob("*.png"))[:8]
    np.testing.assert_allclose(
        head_scores(fb, files, device="cuda"), head_scores(fb, files, device="cpu"), atol=1e-3
    )
    # Resuming a CUDA run from its checkpoint works too.
    again = finetune(labelled, result.out, tiny_config(labelled), RunSettings("cuda"))
    assert again.sha256 == result.sha256
