"""`postergenre predict` and `postergenre.predict_store`: every poster of a store as a table row.

One store is made here by the extraction runner from synthetic posters (cnn with random
weights, color, gist: no pretrained files), with a duplicate file and bad files, and a
small real model is trained on it through `train_from_store`, so predictions can be
compared with `analyze` on the very same poster files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import LIGHT_EXTRACTORS, encode, make_poster

from postergenre.errors import ConfigError, ModelError

GENRES = ["Horror", "Comedy", "Drama", "Animation"]
BAD = {"corrupt.jpg": "corrupt", "text.png": "not_image", "empty.jpg": "empty"}
N = 48
SHARD = 16


def _extractors() -> list[Any]:
    from postergenre.features import get_extractor

    return [get_extractor(name, **cfg) for name, cfg in LIGHT_EXTRACTORS]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Poster files (one duplicated under another name, three bad), their store, labels,
    and a model trained on that store."""
    from postergenre.ensemble.training import TrainConfig, train_from_store
    from postergenre.features.runner import RunOptions, run_extraction

    root = tmp_path_factory.mktemp("predict")
    posters = root / "posters"
    posters.mkdir()
    files = []
    for i in range(N):
        p = posters / f"p{i:03d}.png"
        p.write_bytes(encode(make_poster(500 + i, size=(236 - i % 7, 160)), "PNG"))
        files.append(p)
    dup = posters / "copy-of-p007.png"
    shutil.copyfile(files[7], dup)
    (posters / "corrupt.jpg").write_bytes(encode(make_poster(9), "JPEG")[:300])
    (posters / "text.png").write_bytes(b"not an image at all")
    (posters / "empty.jpg").write_bytes(b"")
    run_extraction(
        [str(p) for p in sorted(posters.iterdir())], root / "store", _extractors(),
        RunOptions(workers=0, device="cpu", shard_size=SHARD, batch_size=8),
    )  # fmt: skip
    color = _extractors()[1].load("cpu")
    from postergenre.images import load_poster
    from postergenre.input_scale import DEFAULT_SCALE

    X = np.stack([color.extract([DEFAULT_SCALE.apply(load_poster(p))])[0] for p in files])
    names = color.feature_names()
    bright = X[:, names.index("color.brightness")]
    sat = X[:, names.index("color.saturation.mean")]
    rng = np.random.default_rng(0)
    rows = ["imdb_id,file,split,genres"]
    truth = {}
    for i, p in enumerate(files):
        on = [bright[i] < np.median(bright), bright[i] >= np.median(bright), rng.random() < 0.4,
              sat[i] > np.median(sat)]  # fmt: skip
        tags = [g for g, yes in zip(GENRES, on, strict=True) if yes]
        truth[p.name] = tags
        rows.append(f"tt{i:07d},posters/{p.name},{'train' if i % 4 else 'val'},{'|'.join(tags)}")
    labels = root / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    config = TrainConfig(
        min_count=2,
        label_weights=False,
        stacker={"n_folds": 2, "xgb_rounds": 20, "mlp_hidden": 8, "mlp_epochs": 3, "n_jobs": 1},
    )
    model = train_from_store(root / "store", labels, root / "model", config).path
    return {
        "root": root, "store": root / "store", "model": Path(model), "files": files, "dup": dup,
        "labels": labels, "truth": truth, "posters": posters,
    }  # fmt: skip


@pytest.fixture(scope="module")
def frame(catalogue: dict[str, Any]) -> Any:
    from postergenre.predict import StorePredictor

    return StorePredictor.load(catalogue["model"]).predict(catalogue["store"])


def proba_columns(genres: list[str]) -> list[str]:
    return [f"proba.{g}" for g in genres]


# -- the same numbers as analyze -----------------------------------------------------------------


def test_probabilities_and_sets_are_those_of_analyze(catalogue: dict[str, Any], frame: Any) -> None:
    from postergenre.analysis import Analyzer

    analyzer = Analyzer.load(catalogue["model"], device="cpu")
    genres = analyzer.genres
    some = catalogue["files"][::5]
    results = analyzer.analyze_many(some)
    by_path = frame.set_index("path")
    for path, a in zip(some, results, strict=True):
        row = by_path.loc[str(path)]
        assert row["status"] == "ok"
        got = row[proba_columns(genres)].to_numpy(dtype=float)
        want = np.array([a.probabilities[g] for g in genres])  # type: ignore[union-attr]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        assert sorted(row["predicted"]) == sorted(a.predicted)  # type: ignore[union-attr]
        thr = row[[f"threshold.{g}" for g in genres]].to_numpy(dtype=float)
        np.testing.assert_array_equal(thr, analyzer.thresholds)


def test_predicted_set_is_the_models_decision_rule(catalogue: dict[str, Any], frame: Any) -> None:
    from postergenre.ensemble.bundle import load_bundle
    from postergenre.ensemble.metrics import decide

    bundle = load_bundle(catalogue["model"])
    ok = frame[frame["status"] == "ok"]
    S = ok[proba_columns(bundle.genres)].to_numpy(dtype=float)
    P = decide(S, bundle.thresholds, int(bundle.model.min_genres))
    got = [sorted(p) for p in ok["predicted"]]
    want = [sorted(g for g, on in zip(bundle.genres, row, strict=True) if on) for row in P]
    assert got == want and all(len(p) >= 1 for p in got)


# -- rows: one per path, duplicates and failures included ----------------------------------------


def test_one_row_per_path_duplicates_share_an_id_failures_have_status(
    catalogue: dict[str, Any], frame: Any
) -> None:
    posters = catalogue["posters"]
    assert sorted(frame["path"]) == sorted(str(p) for p in posters.iterdir())
    by_path = frame.set_index("path")
    original, dup = by_path.loc[str(catalogue["files"][7])], by_path.loc[str(catalogue["dup"])]
    assert original["poster_id"] == dup["poster_id"]
    cols = proba_columns(GENRES)
    np.testing.assert_array_equal(original[cols].to_numpy(float), dup[cols].to_numpy(float))
    for name, kind in BAD.items():
        row = by_path.loc[str(posters / name)]
        assert row["status"] == kind and row["error"]
        assert row["predicted"] is None and row[cols].isna().all()
    assert (frame["status"] == "ok").sum() == N + 1


def test_shards_are_streamed_one_table_each(catalogue: dict[str, Any]) -> None:
    from postergenre.predict import StorePredictor
    from postergenre.store import FeatureStore

    store = FeatureStore(catalogue["store"])
    n_shards = len(set(store.read_plan().values()))
    seen: list[int] = []

    class Observer:
        def started(self, rows: int) -> None:
            seen.append(-rows)

        def advanced(self, rows: int) -> None:
            seen.append(rows)

    tables = list(StorePredictor.load(catalogue["model"]).iter_tables(store, observer=Observer()))
    assert len(tables) == n_shards > 1
    assert max(t.num_rows for t in tables) <= SHARD + 1  # a shard's posters (+ the duplicate)
    assert -seen[0] == sum(seen[1:]) == N + 1 + len(BAD)


def test_unfinished_shard_rows_are_not_done(catalogue: dict[str, Any], tmp_path: Path) -> None:
    from postergenre.predict import StorePredictor
    from postergenre.store import FeatureStore

    copy = tmp_path / "store"
    shutil.copytree(catalogue["store"], copy)
    store = FeatureStore(copy)
    store.done_file("gist", 1).unlink()  # gist's shard 1: as if the run had stopped there
    frame = StorePredictor.load(catalogue["model"]).predict(copy)
    plan = store.read_plan()
    in_shard_1 = frame["poster_id"].map(plan) == 1
    assert in_shard_1.any()
    assert set(frame.loc[in_shard_1, "status"]) == {"not_done"}
    assert frame.loc[in_shard_1, "error"].str.contains("gist").all()
    assert frame.loc[in_shard_1, proba_columns(GENRES)].isna().all().all()
    assert (frame.loc[~in_shard_1, "status"] != "not_done").all()


# -- output files ---------------------------------------------------------------------------------


def invoke(args: list[str]) -> Any:
    from typer.testing import CliRunner

    from postergenre.cli import app

    return CliRunner().invoke(app, ["predict", *args])


@pytest.mark.parametrize("ext", ["parquet", "csv", "jsonl", "json"])
def test_each_format_reads_back_to_the_same_table(
    catalogue: dict[str, Any], frame: Any, tmp_path: Path, ext: str
) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    out = tmp_path / f"predictions.{ext}"
    r = invoke([str(catalogue["store"]), "--model", str(catalogue["model"]), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert f"{len(frame)} rows" in r.stderr and r.stdout == ""
    if ext == "parquet":
        table = pq.read_table(out)
        meta = json.loads(table.schema.metadata[b"postergenre"])
        assert sorted(meta["genres"]) == sorted(GENRES) and len(meta["thresholds"]) == len(GENRES)
        back = table.to_pandas()
        back["predicted"] = [None if v is None else list(v) for v in back["predicted"]]
    elif ext == "csv":
        back = pd.read_csv(out, keep_default_na=False, na_values=[""])
        back["predicted"] = [None if pd.isna(v) else v.split("|") for v in back["predicted"]]
    elif ext == "jsonl":
        back = pd.read_json(out, lines=True)
    else:
        back = pd.DataFrame(json.loads(out.read_text()))
    assert list(back.columns) == list(frame.columns)
    assert list(back["path"]) == list(frame["path"])
    assert list(back["status"]) == list(frame["status"])
    cols = proba_columns(GENRES)
    np.testing.assert_allclose(
        back[cols].to_numpy(float), frame[cols].to_numpy(float), rtol=1e-12, equal_nan=True
    )
    ok = frame["status"] == "ok"
    assert list(back.loc[ok, "predicted"]) == list(frame.loc[ok, "predicted"])


def test_format_option_stdout_and_unknown_extension(
    catalogue: dict[str, Any], tmp_path: Path
) -> None:
    store, model = str(catalogue["store"]), str(catalogue["model"])
    r = invoke([store, "--model", model, "--out", "-", "--format", "jsonl"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == N + 1 + len(BAD) and {"path", "predicted", "proba.Drama"} <= set(rows[0])
    r = invoke([store, "--model", model, "--out", str(tmp_path / "p.txt")])
    assert isinstance(r.exception, ConfigError) and "--format" in str(r.exception)
    r = invoke([store, "--model", model, "--out", str(tmp_path / "p.txt"), "--format", "csv"])
    assert r.exit_code == 0 and (tmp_path / "p.txt").read_text().startswith("path,poster_id,")


def test_labels_add_the_true_genres(catalogue: dict[str, Any], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "p.parquet"
    r = invoke([str(catalogue["store"]), "--model", str(catalogue["model"]), "--out", str(out),
                "--labels", str(catalogue["labels"])])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"{N + 1} rows have labels" in r.stderr  # the duplicate has the same bytes
    rows = pq.read_table(out).to_pylist()
    truth = catalogue["truth"]
    for row in rows:
        name = Path(row["path"]).name
        if name in truth:
            assert row["true"] == truth[name]
        elif name in BAD:
            assert row["true"] is None
    assert next(r for r in rows if r["path"] == str(catalogue["dup"]))["true"] == truth["p007.png"]


def test_python_api_returns_the_same_dataframe(catalogue: dict[str, Any], frame: Any) -> None:
    import pandas as pd

    import postergenre

    got = postergenre.predict_store(catalogue["store"], model=str(catalogue["model"]))
    assert isinstance(got, pd.DataFrame)
    pd.testing.assert_frame_equal(got, frame)


# -- refusals -------------------------------------------------------------------------------------


def _error_of(fn: Any) -> str:
    with pytest.raises(ModelError) as err:
        fn()
    return str(err.value)


def test_a_store_of_other_extractors_is_refused_as_evaluate_refuses_it(
    catalogue: dict[str, Any], tmp_path: Path
) -> None:
    from postergenre.ensemble.training import evaluate_from_store
    from postergenre.features.runner import RunOptions, run_extraction
    from postergenre.input_scale import InputScale
    from postergenre.predict import StorePredictor

    files = [str(p) for p in catalogue["files"][:3]]
    opts = RunOptions(workers=0, device="cpu")
    native = tmp_path / "native"
    run_extraction(files, native, _extractors(), opts, scale=InputScale(None, None))
    partial = tmp_path / "partial"
    run_extraction(files, partial, _extractors()[1:], opts)
    model, labels = catalogue["model"], catalogue["labels"]
    out = tmp_path / "p.csv"
    for store, words in ((native, "input scale"), (partial, "has no 'cnn' features")):
        mine = _error_of(lambda s=store: StorePredictor.load(model).write(s, out))
        theirs = _error_of(lambda s=store: evaluate_from_store(s, labels, model))
        assert mine == theirs and words in mine and "does not match the model" in mine
        assert not out.exists()  # refused before any output
    done = subprocess.run(
        [sys.executable, "-m", "postergenre", "predict", str(native), "--model", str(model),
         "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("postergenre: error: ") and "input scale" in done.stderr


def test_not_a_store_is_a_store_error(catalogue: dict[str, Any], tmp_path: Path) -> None:
    from postergenre.errors import StoreError

    r = invoke([str(tmp_path), "--model", str(catalogue["model"]), "--out", "x.csv"])
    assert isinstance(r.exception, StoreError)


def test_import_and_help_stay_light() -> None:
    code = (
        "import sys\nimport postergenre\nfrom postergenre.cli import app\n"
        "try:\n    app(args=['predict', '--help'], prog_name='postergenre')\n"
        "except SystemExit:\n    pass\n"
        "print('LOADED', [m for m in ('torch', 'pandas', 'pyarrow', 'xgboost', 'sklearn') "
        "if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--labels" in out.stdout and out.stdout.rstrip().endswith("LOADED []")
