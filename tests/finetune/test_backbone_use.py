"""A fine-tuned backbone in use: the ``cnn`` extractor embeds posters with it (and refuses a
file whose sha256 is not the one its config names), stores made with different backbones
never mix, and the benchmark row scores the network's own head from a store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from postergenre.errors import ConfigError, DataError, StoreError, WeightsError
from postergenre.features.cnn import CNNConfig, CNNExtractor
from postergenre.finetune import artifact
from postergenre.finetune.benchmark_row import ROW_NAME, head_row, head_scores
from postergenre.input_scale import InputScale

SCALE = InputScale(32, 48)


def poster_files(labelled: Path) -> list[Path]:
    return sorted((labelled.parent / "images").glob("*.png"))


def canonical(paths: list[Path]) -> list[np.ndarray]:
    from postergenre.images import load_poster

    return [SCALE.apply(load_poster(p)) for p in paths]


def test_the_extractor_embeds_with_the_installed_backbone(
    tuned: Path, labelled: Path, home: Path
) -> None:
    fb = artifact.install(artifact.read(tuned))
    assert fb.folder.parent == home / "weights" / artifact.CACHE_FOLDER
    config = fb.cnn_config(style=False)
    assert config.finetuned == fb.sha256 and config.input_size == 32
    ext = CNNExtractor(config)
    ext.load("cpu")
    images = canonical(poster_files(labelled)[:6])
    E = ext.extract(images)
    # The network's own head on that embedding is the network's own output.
    weight, bias = _head(fb)
    from_embedding = 1.0 / (1.0 + np.exp(-(E.astype(np.float64) @ weight.T + bias)))
    direct = head_scores(fb, poster_files(labelled)[:6])
    np.testing.assert_allclose(from_embedding, direct, atol=2e-4)
    # ... and not the untuned network's.
    untuned = CNNConfig(pretrained=False, input_size=32, style=False, also=())
    plain = CNNExtractor(untuned).extract(images)
    assert not np.allclose(plain, E, atol=1e-3)


def _head(fb: artifact.FinetunedBackbone) -> tuple[np.ndarray, np.ndarray]:
    from postergenre.finetune.benchmark_row import head_arrays

    return head_arrays(fb)


def test_the_extractor_refuses_a_file_whose_sha256_differs(tuned: Path, home: Path) -> None:
    fb = artifact.install(artifact.read(tuned))
    data = bytearray(fb.weights_path.read_bytes())
    data[-1] ^= 0x01  # one bit of the last weight
    fb.weights_path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256") as info:
        CNNExtractor(fb.cnn_config()).load("cpu")
    assert fb.sha256 in str(info.value) and "never used" in str(info.value)


def test_a_backbone_not_installed_is_a_clear_error(tuned: Path, home: Path) -> None:
    sha = artifact.read(tuned).sha256
    with pytest.raises(WeightsError, match="no fine-tuned backbone") as info:
        CNNExtractor(CNNConfig(input_size=32, finetuned=sha)).load("cpu")
    assert "postergenre finetune" in info.value.hint


def test_the_extractor_refuses_a_config_the_backbone_was_not_trained_for(
    tuned: Path, home: Path
) -> None:
    fb = artifact.install(artifact.read(tuned))
    with pytest.raises(ConfigError, match="input_size 224"):
        CNNExtractor(CNNConfig(finetuned=fb.sha256)).load("cpu")
    with pytest.raises(ConfigError, match="resnet18"):
        CNNExtractor(fb.cnn_config(backbone="resnet18")).load("cpu")
    with pytest.raises(ConfigError, match="64-hex sha256"):
        CNNConfig(finetuned=str(tuned))


def test_stores_and_models_of_different_backbones_never_mix(tuned: Path) -> None:
    from postergenre.store import manifest_differences

    fb = artifact.read(tuned)
    frozen = CNNExtractor(input_size=32).describe()
    finetuned = CNNExtractor(fb.cnn_config()).describe()
    # Without the option the config is what stores and bundles recorded before it existed.
    assert "finetuned" not in frozen["config"]
    assert finetuned["config"]["finetuned"] == fb.sha256
    diffs = manifest_differences(frozen, finetuned)
    assert any("finetuned" in d for d in diffs), diffs
    other = {**finetuned, "config": {**finetuned["config"], "finetuned": "0" * 64}}
    assert any("finetuned" in d for d in manifest_differences(other, finetuned))


def test_safetensors_bytes_are_the_same_for_the_same_tensors() -> None:
    from safetensors.numpy import load

    rng = np.random.default_rng(0)
    arrays = {
        "b.weight": rng.normal(size=(3, 4)).astype(np.float32),
        "a.count": np.array(7, dtype=np.int64),  # 0-d, as BatchNorm's num_batches_tracked
        "c.t": np.asfortranarray(rng.normal(size=(2, 5))),
    }
    blob = artifact.safetensors_bytes(arrays, {"k": "v"})
    again = artifact.safetensors_bytes(dict(reversed(list(arrays.items()))), {"k": "v"})
    assert blob == again
    back = load(blob)
    for k, v in arrays.items():
        assert back[k].shape == v.shape and back[k].dtype == v.dtype
        assert np.array_equal(back[k], v)


def test_resolve_takes_a_folder_a_file_a_name_or_a_sha256(tuned: Path, home: Path) -> None:
    fb = artifact.install(artifact.read(tuned), name="posters-v1")
    for ref in (tuned, tuned / artifact.WEIGHTS_FILE, "posters-v1", fb.sha256):
        assert artifact.resolve(ref).sha256 == fb.sha256
    with pytest.raises(ConfigError, match="no such folder"):
        artifact.resolve("nothing-of-that-name")
    # Installing twice is harmless; a name taken by another backbone is refused.
    assert artifact.install(artifact.read(tuned), name="posters-v1").folder == fb.folder


# A 32-pixel input leaves the deepest style tap 1x1 (std undefined); real inputs do not.
@pytest.mark.filterwarnings("ignore:std:UserWarning")
def test_the_benchmark_row_is_the_networks_own_head(
    tuned: Path, labelled: Path, home: Path, tmp_path: Path
) -> None:
    from postergenre.features.runner import RunOptions, run_extraction
    from postergenre.store import FeatureStore

    fb = artifact.install(artifact.read(tuned))
    files = poster_files(labelled)[:8]
    store = tmp_path / "store"
    ext = CNNExtractor(fb.cnn_config(style=True))  # style statistics on: the head ignores them
    run_extraction([str(p) for p in files], store, [ext], RunOptions("cpu", workers=0), scale=SCALE)
    data = FeatureStore(store).load(["cnn"])
    make_row = head_row(tuned, store)
    genres = ["Stripes", "Dark"]  # the benchmark's own genre order is honoured
    name, kind, scores_fn, _, note = make_row(None, None, None, data.X, data.feature_names, genres)
    assert name == ROW_NAME and "mobilenet_v2" in note
    S = scores_fn(data.X)
    direct = head_scores(fb, [Path(p) for p in data.paths])
    order = [fb.genres.index(g) for g in genres]
    np.testing.assert_allclose(S, direct[:, order], atol=2e-4)
    with pytest.raises(DataError, match="no output for Horror"):
        make_row(None, None, None, data.X, data.feature_names, ["Horror"])


def test_the_benchmark_row_refuses_a_store_of_the_imagenet_backbone(
    tuned: Path, labelled: Path, tmp_path: Path
) -> None:
    from postergenre.features.runner import RunOptions, run_extraction

    store = tmp_path / "store"
    frozen = CNNExtractor(pretrained=False, input_size=32, style=False, also=())
    paths = [str(p) for p in poster_files(labelled)[:2]]
    run_extraction(paths, store, [frozen], RunOptions("cpu", workers=0), scale=SCALE)
    with pytest.raises(StoreError, match="not the fine-tuned network's embedding"):
        head_row(tuned, store)


# resnet18 shares resnet34's code path (BasicBlock); resnet50 has Bottlenecks.
@pytest.mark.parametrize("backbone", ["resnet34", "resnet50"])
def test_resnets_fine_tune_and_embed_with_random_weights(
    backbone: str, labelled: Path, tmp_path: Path, home: Path, config_for: Any
) -> None:
    from postergenre.features.cnn import BACKBONES
    from postergenre.finetune.config import RunSettings
    from postergenre.finetune.train import finetune

    config = config_for(labelled, backbone=backbone, epochs=1, max_train=16, max_val=8)
    result = finetune(labelled, tmp_path / "out", config, RunSettings("cpu", 1), install=True)
    assert result.record["embedding_dim"] == BACKBONES[backbone]
    fb = artifact.locate(result.sha256)
    ext = CNNExtractor(fb.cnn_config(style=False))
    images = canonical(poster_files(labelled)[:3])
    E = ext.extract(images)
    weight, bias = _head(fb)
    from_embedding = 1.0 / (1.0 + np.exp(-(E.astype(np.float64) @ weight.T + bias)))
    np.testing.assert_allclose(
        from_embedding, head_scores(fb, poster_files(labelled)[:3]), atol=2e-4
    )


def test_help_of_the_package_imports_no_torch() -> None:
    import subprocess

    code = "import postergenre.finetune.artifact, postergenre.finetune.config, sys; " + (
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_benchmark_command_adds_the_fine_tuned_row(
    tuned: Path, labelled: Path, home: Path, tmp_path: Path
) -> None:
    import json

    from typer.testing import CliRunner

    from postergenre.cli import app
    from postergenre.features import get_extractor
    from postergenre.features.inputs import discover
    from postergenre.features.runner import RunOptions, run_extraction

    fb = artifact.install(artifact.read(tuned))
    store = tmp_path / "store"
    cnn = CNNExtractor(fb.cnn_config(style=False))
    exts = [cnn, get_extractor("color")]
    paths = discover([str(labelled)]).paths
    run_extraction(paths, store, exts, RunOptions("cpu", workers=0), scale=SCALE)
    argv = [
        "benchmark", str(store), "--labels", str(labelled), "--min-count", "3",
        "--baselines", "", "--no-label-weights", "--folds", "2", "--xgb-rounds", "5",
        "--mlp-epochs", "1", "--jobs", "1", "--json",
    ]  # fmt: skip
    done = CliRunner().invoke(app, [*argv, "--finetuned", str(tuned)])
    assert done.exit_code == 0, done.output
    rows = {r["name"]: r for r in json.loads(done.stdout)["rows"]}
    assert ROW_NAME in rows and "stack" in rows
    assert 0.0 < rows[ROW_NAME]["overall"]["macro_ap"] <= 1.0
    plain = CliRunner().invoke(app, argv)
    assert plain.exit_code == 0, plain.output
    assert ROW_NAME not in {r["name"] for r in json.loads(plain.stdout)["rows"]}


def test_extract_cnn_backbone_records_the_fine_tuned_sha256_in_the_store(
    tuned: Path, labelled: Path, home: Path, tmp_path: Path
) -> None:
    import json

    from typer.testing import CliRunner

    from postergenre.cli import app

    fb = artifact.install(artifact.read(tuned))
    store = tmp_path / "store"
    argv = ["extract", *map(str, poster_files(labelled)[:4]), "--out", str(store), "-e", "cnn",
            "--input-scale", "32x48", "--device", "cpu", "--workers", "0"]  # fmt: skip
    done = CliRunner().invoke(app, [*argv, "--cnn-backbone", fb.folder.name])
    assert done.exit_code == 0, done.output
    manifest = json.loads((store / "cnn" / "manifest.json").read_text())
    assert manifest["config"]["finetuned"] == fb.sha256
    # The same store is not silently filled with the ImageNet backbone's features.
    again = CliRunner().invoke(app, argv)
    assert again.exit_code != 0
    assert "finetuned" in str(again.exception or again.output)
    # --cnn-backbone without the cnn extractor is a clear error.
    other = CliRunner().invoke(app, [*argv[:-8], "-e", "color", "--cnn-backbone", "x"])
    assert "needs the cnn extractor" in str(other.exception or other.output)
