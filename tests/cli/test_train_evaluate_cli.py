"""`postergenre train`, `evaluate` and `benchmark` end to end on a small synthetic store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FAST = ["--folds", "2", "--xgb-rounds", "8", "--mlp-epochs", "3", "--jobs", "1", "--min-count", "5"]


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from postergenre.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from postergenre.cli import main
    from postergenre.ensemble.synthetic import make_labelled_store

    root = tmp_path_factory.mktemp("cli")
    syn = make_labelled_store(root, n=160, seed=5)
    # One labelled poster whose file is gone, one whose genre is unknown: both reported.
    with open(syn.labels, "a") as fh:
        fh.write("tt9999998,posters/gone.jpg,train,Drama,synthetic\n")
        fh.write("tt9999999,posters/p00000.jpg,train,Western,synthetic\n")
    try:
        main(
            [
                "train",
                str(syn.store),
                "--labels",
                str(syn.labels),
                "--out",
                str(root / "model"),
                *FAST,
            ]
        )
    except SystemExit as exc:
        assert not exc.code
    return syn, root / "model"


def test_train_writes_a_bundle_with_a_model_card(trained: Any) -> None:
    syn, model = trained
    card = json.loads((model / "card.json").read_text())
    assert card["genres"] == sorted(syn.genres)
    assert card["data"]["n_train"] == syn.splits.count("train")
    assert card["data"]["n_val"] == syn.splits.count("val")
    dropped = card["data"]["join"]["dropped"]
    assert dropped["missing_file"] == 1 and dropped["no_known_genre"] == 1
    assert card["thresholds"]["source"] == "validation split"
    assert (
        card["metrics"]["overall"]["model"]["macro_ap"]
        > card["metrics"]["overall"]["constant: prior"]["macro_ap"]
    )
    assert {"xgboost", "torch", "numpy"} <= set(card["libraries"])
    assert card["seeds"] == {"random_state": 0} and card["training_seconds"] > 0
    md = (model / "MODEL_CARD.md").read_text()
    assert "## Validation metrics" in md and "poster file missing" in md
    # The XGBoost base is kept in XGBoost's own JSON: plain json reads it, xgboost too.
    import xgboost as xgb

    booster = model / "base0-booster.json"
    assert not list(model.glob("*.ubj"))
    assert json.loads(booster.read_text())["learner"]["gradient_booster"]["name"] == "gbtree"
    assert xgb.Booster(model_file=str(booster)).num_boosted_rounds() == 8


def test_train_and_the_stacker_share_one_default_threshold_objective(trained: Any) -> None:
    import inspect

    from postergenre.cli.stack_options import DEFAULT_OBJECTIVE
    from postergenre.ensemble.metrics import DEFAULT_THRESHOLD_OBJECTIVE
    from postergenre.ensemble.stacker import GenreStacker

    _, model = trained
    params = json.loads((model / "bundle.json").read_text())["model"]["params"]
    stacker_default = inspect.signature(GenreStacker).parameters["threshold_objective"].default
    assert params["threshold_objective"] == DEFAULT_OBJECTIVE.value == "micro_all"
    assert stacker_default == DEFAULT_THRESHOLD_OBJECTIVE == DEFAULT_OBJECTIVE.value


def test_evaluate_prints_metrics_beside_the_constant_predictors(
    trained: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    syn, model = trained
    code, out, err = cli(
        ["evaluate", str(syn.store), "--labels", str(syn.labels), "--model", str(model),
         "--split", "val", "--json", "--report", str(tmp_path / "rep")],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    m = doc["model_metrics"]
    assert m["n_rows"] == syn.splits.count("val")
    for key in ("micro_f1", "macro_f1", "weighted_f1", "samples_f1", "macro_ap",
                "hamming_loss", "top1_hit", "precision_at_3"):  # fmt: skip
        assert 0.0 <= m["overall"][key] <= 1.0
    assert {g["genre"] for g in m["per_genre"]} == set(syn.genres)
    assert set(doc["constants"]) == {"prior", "top-2"}
    assert m["overall"]["macro_ap"] > doc["constants"]["prior"]["macro_ap"]
    # Bootstrap intervals of the model's figures, by default.
    assert doc["interval_spec"] == {"resamples": 1000, "level": 0.95}
    for key in ("macro_ap", "micro_f1", "top1_hit"):
        iv = doc["intervals"][key]
        assert iv["low"] < m["overall"][key] < iv["high"] and iv["se"] > 0
    # The thresholds were tuned on these very rows: evaluation must not reuse them.
    assert any("cross-fitted" in n for n in doc["notes"])
    from PIL import Image

    with Image.open(tmp_path / "rep" / "report.png") as img:
        assert img.width > 1000 and img.height > 400
    assert json.loads((tmp_path / "rep" / "metrics.json").read_text())["split"] == "val"


def test_evaluate_on_training_rows_uses_the_bundle_thresholds(
    trained: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from postergenre.ensemble.bundle import load_bundle
    from postergenre.ensemble.data import load_labelled
    from postergenre.ensemble.metrics import decide

    syn, model = trained
    args = ["evaluate", str(syn.store), "--labels", str(syn.labels), "--model", str(model)]
    code, out, _ = cli([*args, "--split", "train"], capsys)
    assert code == 0
    assert "constant: prior" in out and "constant: top-2" in out and "macro AP" in out
    assert "model, 95% low" in out and "1000 resamples" in out
    code, out, err = cli([*args, "--split", "train", "--json", "--bootstrap", "0"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["intervals"] is None
    code, _, err = cli([*args, "--bootstrap", "1"], capsys)
    assert code == 2 and "at least 2 resamples" in err
    # The thresholds were tuned on val rows, not these: no cross-fitting, the bundle's own.
    assert not any("cross-fitted" in n for n in doc["notes"])
    bundle = load_bundle(model)
    data = load_labelled(
        syn.store, syn.labels, splits=["train"], genres=bundle.genres,
        extractors=bundle.extractor_names,
    )  # fmt: skip
    S = bundle.model.predict_proba(data.X)
    per_genre = {g["genre"]: g["predicted"] for g in doc["model_metrics"]["per_genre"]}
    assert doc["model_metrics"]["n_rows"] == len(S)

    def counts(thresholds: Any) -> dict[str, int]:
        P = decide(S, np.asarray(thresholds), int(bundle.model.min_genres))
        return dict(zip(bundle.genres, map(int, P.sum(0)), strict=True))

    assert per_genre == counts(bundle.thresholds)
    # Discriminating: the out-of-fold thresholds (what a mix-up would use) decide otherwise.
    card = json.loads((model / "card.json").read_text())
    oof = [card["thresholds"]["out_of_fold_values"][g] for g in bundle.genres]
    assert counts(oof) != per_genre


def test_evaluate_refuses_a_store_made_with_other_extractors(
    trained: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from postergenre.ensemble.synthetic import make_labelled_store

    _, model = trained
    other = make_labelled_store(tmp_path, n=20, seed=5, version="2")
    code, _, err = cli(
        ["evaluate", str(other.store), "--labels", str(other.labels), "--model", str(model)], capsys
    )
    assert code == 1
    assert "postergenre: error:" in err and "version '2' in the store, '1' in the model" in err


def test_train_without_val_rows_uses_out_of_fold_thresholds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from postergenre.ensemble.synthetic import make_labelled_store

    syn = make_labelled_store(tmp_path, n=80, seed=2, val_fraction=0.0)
    code, _, err = cli(
        ["train", str(syn.store), "--labels", str(syn.labels), "--out", str(tmp_path / "m"), *FAST],
        capsys,
    )
    assert code == 0, err
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["thresholds"]["source"].startswith("out-of-fold")
    assert "metrics" not in card


def test_refit_ships_a_fit_on_train_and_val_and_keeps_the_held_out_metrics(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import numpy as np

    from postergenre.ensemble.bundle import load_bundle
    from postergenre.ensemble.data import load_labelled
    from postergenre.ensemble.synthetic import make_labelled_store

    syn = make_labelled_store(tmp_path, n=160, seed=7)
    base = ["train", str(syn.store), "--labels", str(syn.labels), *FAST]
    code, _, err = cli([*base, "--out", str(tmp_path / "plain")], capsys)
    assert code == 0, err
    code, out, err = cli(
        [*base, "--out", str(tmp_path / "refit"), "--refit", "--holdout-out", str(tmp_path / "h")],
        capsys,
    )
    assert code == 0, err
    assert "held-out fit, before the refit" in out
    plain = json.loads((tmp_path / "plain" / "card.json").read_text())
    held = json.loads((tmp_path / "h" / "card.json").read_text())
    refit = json.loads((tmp_path / "refit" / "card.json").read_text())
    n_train, n_val = syn.splits.count("train"), syn.splits.count("val")
    # The held-out fit is the plain training run, seed for seed.
    assert held["metrics"]["overall"] == plain["metrics"]["overall"]
    assert held["data"]["n_train"] == n_train
    # The shipped bundle saw the val rows too, says so, and keeps the held-out metrics.
    assert refit["data"]["n_train"] == n_train + n_val == refit["refit"]["rows"]
    assert refit["metrics"]["overall"] == plain["metrics"]["overall"]
    assert refit["metrics"]["note"].startswith("Measured on the held-out fit")
    assert "refit" in refit["thresholds"]["source"]
    assert (
        "- refit: The bundle is the same recipe refitted"
        in (tmp_path / "refit" / "MODEL_CARD.md").read_text()
    )
    assert sum(refit["data"]["train_genre_counts"].values()) > sum(
        held["data"]["train_genre_counts"].values()
    )
    # Its predictions on the val rows differ from the held-out fit's and fit those rows
    # better (they were among its training rows).
    data = load_labelled(syn.store, syn.labels, splits=["val"], genres=plain["genres"])
    Xv, Yv, _ = data.subset("val")

    def log_loss(folder: Path) -> float:
        p = np.clip(load_bundle(folder).model.predict_proba(Xv), 1e-6, 1 - 1e-6)
        return float(-np.mean(Yv * np.log(p) + (1 - Yv) * np.log(1 - p)))

    assert log_loss(tmp_path / "refit") < log_loss(tmp_path / "h")
    assert log_loss(tmp_path / "h") == pytest.approx(log_loss(tmp_path / "plain"))
    # evaluate on those rows says they are not held-out; on the plain model it does not.
    ev = ["evaluate", str(syn.store), "--labels", str(syn.labels), "--split", "val", "--json"]
    code, out, err = cli([*ev, "--model", str(tmp_path / "refit")], capsys)
    assert code == 0, err
    assert any("not held-out" in n for n in json.loads(out)["notes"])
    code, out, err = cli([*ev, "--model", str(tmp_path / "plain")], capsys)
    assert code == 0, err
    assert not any("not held-out" in n for n in json.loads(out)["notes"])


def test_train_selection_is_recorded_and_a_bad_one_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from postergenre.ensemble.synthetic import make_labelled_store

    syn = make_labelled_store(tmp_path, n=120, seed=3)
    base = ["train", str(syn.store), "--labels", str(syn.labels), *FAST]
    code, _, err = cli(
        [*base, "--out", str(tmp_path / "m"), "--selection", "synthetic=Comedy,Drama"], capsys
    )
    assert code == 0, err
    assert (
        "selection-aware fit (the meta-learner fits it): synthetic: kept only films whose "
        "first-listed genre is Comedy or Drama" in " ".join(err.split())
    )  # (lines wrap)
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["label_weights"]["selection"] == {"synthetic": ["Comedy", "Drama"]}
    assert card["label_weights"]["selection_in"] == card["model"]["params"]["selection_in"]
    assert any("meta-learner fits its posters" in x for x in card["label_weights"]["summary"])
    # The bundle's MODEL_CARD.md shows the weight table and the selection to people.
    md = (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert "## Label weights by collection" in md and "| synthetic |" in md
    assert "first-listed genre is Comedy or Drama" in md
    # Without label weights the selection is still on the card, and no table is claimed.
    code, _, err = cli(
        [*base, "--out", str(tmp_path / "nw"), "--selection", "synthetic=Comedy,Drama",
         "--no-label-weights"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    card = json.loads((tmp_path / "nw" / "card.json").read_text())
    assert card["label_weights"]["selection"] == {"synthetic": ["Comedy", "Drama"]}
    assert card["label_weights"]["summary"][0] == "no label weights (--no-label-weights)"
    assert "with every label counted once" in card["label_weights"]["summary"][1]
    md = (tmp_path / "nw" / "MODEL_CARD.md").read_text()
    assert "first-listed genre is Comedy or Drama" in md and "| synthetic |" not in md
    for bad, says in (
        ("elsewhere=Comedy", "no training poster is from that collection"),
        ("synthetic=Musical", "unknown genre(s) Musical"),
        ("synthetic", "expected COLLECTION=GENRE"),
    ):
        code, _, err = cli([*base, "--out", str(tmp_path / "x"), "--selection", bad], capsys)
        assert code == 1 and says in " ".join(err.split()), err
        assert "Traceback" not in err


def test_refit_without_val_rows_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from postergenre.ensemble.synthetic import make_labelled_store

    syn = make_labelled_store(tmp_path, n=60, seed=2, val_fraction=0.0)
    code, _, err = cli(
        ["train", str(syn.store), "--labels", str(syn.labels), "--out", str(tmp_path / "m")]
        + [*FAST, "--refit"],
        capsys,
    )
    assert code != 0 and "--refit needs validation rows" in err
    assert not (tmp_path / "m").exists()


def test_evaluate_compares_two_models_on_the_same_posters(
    trained: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    syn, model = trained
    base = ["evaluate", str(syn.store), "--labels", str(syn.labels), "--split", "val"]
    # Against itself: every difference is exactly 0 and nothing is called different.
    code, out, err = cli([*base, "--model", str(model), "--compare", str(model)], capsys)
    assert code == 0, err
    assert "no difference is clear on these posters" in out
    code, out, err = cli(
        [*base, "--model", str(model), "--compare", str(model), "--json", "--bootstrap", "50"],
        capsys,
    )
    assert code == 0, err
    comp = json.loads(out)["comparison"]
    assert comp["resamples"] == 50
    assert all(d["difference"] == d["low"] == d["high"] == 0 for d in comp["difference"].values())
    # Against a stack of XGBoost alone: the other model's own figures are reported, and
    # each difference is this model's figure minus that one, inside its interval.
    code, _, err = cli(
        ["train", str(syn.store), "--labels", str(syn.labels), "--out", str(tmp_path / "xgb"),
         *FAST, "--bases", "xgb"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    code, out, err = cli(
        [*base, "--model", str(model), "--compare", str(tmp_path / "xgb"), "--json"], capsys
    )
    assert code == 0, err
    doc = json.loads(out)
    comp = doc["comparison"]
    ap = comp["difference"]["macro_ap"]
    assert ap["difference"] == pytest.approx(
        doc["model_metrics"]["overall"]["macro_ap"] - comp["overall"]["macro_ap"]
    )
    assert ap["low"] <= ap["difference"] <= ap["high"] and ap["se"] > 0
    assert comp["model"].endswith("xgb")


def test_benchmark_prints_one_table(trained: Any, capsys: pytest.CaptureFixture[str]) -> None:
    syn, _ = trained
    code, out, err = cli(
        ["benchmark", str(syn.store), "--labels", str(syn.labels), "--json",
         "--baselines", "mlknn,naive_bayes,rakel,logistic", *FAST],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    names = [r["name"] for r in doc["rows"]]
    assert names[:2] == ["prior", "top-2"]
    for expected in ("ML-kNN", "Naive Bayes", "RAKEL", "logistic head", "level-0 XGBoost",
                     "level-0 MLP", "stack"):  # fmt: skip
        assert any(n.startswith(expected) for n in names), expected
    assert doc["n_eval"] == syn.splits.count("val")
    # Every other row against the stack: the difference of the table's own figures, with
    # a paired interval around it; the stack is not compared with itself.
    stack = next(r for r in doc["rows"] if r["name"] == "stack")
    assert stack["vs_stack"] is None
    compared = [r for r in doc["rows"] if r["vs_stack"]]
    assert {"prior", "ML-kNN"} <= {r["name"].split(" (")[0] for r in compared}
    for r in compared:
        ap = r["vs_stack"]["val"]["macro_ap"]
        want = stack["overall"]["macro_ap"] - r["overall"]["macro_ap"]
        assert ap["difference"] == pytest.approx(want, abs=1e-12)
        assert ap["low"] <= ap["difference"] <= ap["high"] and ap["se"] > 0
    code, out, err = cli(
        ["benchmark", str(syn.store), "--labels", str(syn.labels), "--baselines", "mlknn",
         "--bootstrap", "0", *FAST],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "the stack minus each row" not in out


def test_unknown_baseline_is_a_usage_error(
    trained: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    syn, _ = trained
    code, _, err = cli(
        ["benchmark", str(syn.store), "--labels", str(syn.labels), "--baselines", "svm"], capsys
    )
    assert code == 1 and "unknown ['svm']" in err


def test_a_bundle_saved_before_in_ubjson_keeps_loading_and_is_saved_as_it_was(
    trained: Any, tmp_path: Path
) -> None:
    import hashlib
    import shutil

    import numpy as np
    import xgboost as xgb

    from postergenre.ensemble.bundle import load_bundle

    _, model = trained
    old = tmp_path / "old"
    shutil.copytree(model, old)
    # The bundle as an earlier postergenre wrote it: the same booster in UBJSON.
    ubj = bytes(xgb.Booster(model_file=str(old / "base0-booster.json")).save_raw("ubj"))
    (old / "base0-booster.json").unlink()
    (old / "base0-booster.ubj").write_bytes(ubj)
    manifest = json.loads((old / "bundle.json").read_text())
    files = manifest["files"]
    del files["base0-booster.json"]
    files["base0-booster.ubj"] = hashlib.sha256(ubj).hexdigest()
    manifest["model"]["bases"][0]["state"] = {"booster": "booster.ubj"}
    manifest["model"]["bases"][0]["files"] = {"booster.ubj": "base0-booster.ubj"}
    (old / "bundle.json").write_text(json.dumps(manifest))

    new, older = load_bundle(model), load_bundle(old)
    X = np.random.default_rng(0).normal(size=(5, len(new.feature_names))).astype(np.float32)
    np.testing.assert_array_equal(new.model.predict_proba(X), older.model.predict_proba(X))
    assert list(new.model.to_state()[2]) == ["base0-booster.json"]
    assert older.model.to_state()[2] == {"base0-booster.ubj": ubj}


def _two_collections(syn: Any, every: int) -> tuple[Path, Any]:
    """The synthetic labels with every ``every``-th poster in collection alpha, the rest in
    beta, written beside the original (its file paths are relative to it)."""
    import numpy as np
    import pandas as pd

    labels = pd.read_csv(syn.labels)
    labels["source"] = np.where(np.arange(len(labels)) % every == 0, "alpha", "beta")
    named = Path(syn.labels).parent / f"labels_sources_{every}.csv"
    labels.to_csv(named, index=False)
    return named, labels


def test_evaluate_reports_each_genre_within_each_collection(
    trained: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from postergenre.ensemble.metrics import average_precision
    from postergenre.predict import predict_store

    syn, model = trained
    named, labels = _two_collections(syn, every=3)
    args = ["evaluate", str(syn.store), "--labels", str(named), "--model", str(model),
            "--split", "val", "--bootstrap", "0"]  # fmt: skip
    code, out, err = cli([*args, "--json"], capsys)
    assert code == 0, err
    by = json.loads(out)["by_collection"]
    assert set(by) == {"alpha", "beta"}
    # Each genre's AP within a collection is that of the model's probabilities there.
    pred = predict_store(syn.store, model, named)
    pred["file"] = [Path(p).name for p in pred["path"]]
    val = labels[labels["split"] == "val"].copy()
    val["file"] = [Path(f).name for f in val["file"]]
    rows = val.merge(pred, on="file")
    for name, block in rows.groupby("source"):
        for genre in syn.genres:
            y = np.array([genre in t for t in block["true"]], dtype=float)
            got = by[name]["per_genre"][genre]
            assert got["support"] == int(y.sum())
            if y.sum():
                want = average_precision(y, block[f"proba.{genre}"].to_numpy())
                assert got["ap"] == pytest.approx(want, abs=1e-9)
    # The text form shows the same as a genre x collection table.
    code, out, err = cli(args, capsys)
    assert code == 0, err
    table = out.split("AP per genre within each collection")[1].splitlines()
    assert table[1].split() == ["genre", "alpha", "beta"]
    first = syn.genres[0]
    line = next(x for x in table if x.startswith(first))
    cell = by["alpha"]["per_genre"][first]
    assert f"{cell['ap']:.4f} ({cell['support']})" in line


def test_train_projects_collection_directions_out_when_asked(
    trained: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:

    from postergenre.ensemble.bundle import load_bundle

    syn, _ = trained
    named, _ = _two_collections(syn, every=2)
    out = tmp_path / "m"
    args = ["train", str(syn.store), "--labels", str(named), *FAST]
    code, _, err = cli([*args, "--out", str(out), "--collection-directions", "2"], capsys)
    assert code == 0, err
    assert "collection directions: 2 projected out of the embedding" in err
    model = load_bundle(out).model
    assert model._params["collection_directions"] == 2
    assert model.projection_ is not None and model.projection_.basis.shape[0] == 2
    cols = [n for n in model.feature_names_in_[model.projection_.columns]]
    assert cols and all(n.startswith("cnn.") for n in cols)
    card = json.loads((out / "card.json").read_text())
    assert card["collection_projection"]["directions"] == 2
    assert "## Collection directions" in (out / "MODEL_CARD.md").read_text()
    # Without a collection column there is nothing to tell apart: a one-line error.
    code, _, err = cli(
        [*args, "--out", str(tmp_path / "n"), "--collection-directions", "2",
         "--group-column", ""],
        capsys,
    )  # fmt: skip
    assert code == 1 and "the labels name no collection per poster" in err


def test_train_conditions_on_genre_combinations_when_asked(
    trained: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from postergenre.ensemble.bundle import load_bundle
    from postergenre.ensemble.data import load_labelled

    syn, _ = trained
    out = tmp_path / "m"
    args = ["train", str(syn.store), "--labels", str(syn.labels), *FAST]
    code, _, err = cli([*args, "--out", str(out), "--genre-sets", "imdb"], capsys)
    assert code == 0, err
    assert "genre combinations: probabilities conditioned on the" in err
    assert "found in 5 or more films (IMDb genres of 36,918 films" in err
    model = load_bundle(out).model
    sets = model.genre_sets_
    assert sets is not None and list(sets.genres) == model.genres_
    assert sets.support.sum(1).max() == 3  # IMDb films: at most three genres
    card = json.loads((out / "card.json").read_text())
    assert card["genre_sets"]["sets"] == len(sets.support)
    assert card["genre_sets"]["source"] == "IMDb genres of 36,918 films"
    assert "## Genre combinations" in (out / "MODEL_CARD.md").read_text()
    # Every poster's probabilities put no mass on a combination outside the table:
    # four genres at once is impossible, so the expected number of genres is at most 3.
    data = load_labelled(syn.store, syn.labels, genres=model.genres_)
    assert (model.predict_proba(data.X).sum(1) <= 3 + 1e-9).all()
    # A table given as a file of films (CSV with a genres column), and bad values.
    films = tmp_path / "films.csv"
    films.write_text(
        "genres\n" + "\n".join(["Action|Drama", "Comedy", "Drama", "Horror", "Romance"] * 5)
    )
    code, _, err = cli([*args, "--out", str(tmp_path / "f"), "--genre-sets", str(films)], capsys)
    assert code == 0, err
    assert len(load_bundle(tmp_path / "f").model.genre_sets_.support) == 5
    code, _, err = cli([*args, "--out", str(tmp_path / "g"), "--genre-sets", "tmdb"], capsys)
    assert code == 2 and "expected imdb, none or a table file" in err
    films.write_text("genres\nAction|Drama\n" * 6)
    code, _, err = cli([*args, "--out", str(tmp_path / "h"), "--genre-sets", str(films)], capsys)
    assert code == 1 and "no combination of 5+ films holds" in err
