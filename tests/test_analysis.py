"""Analyzer and the Python API, on real bundles trained through the ensemble's own API.

The small bundle is trained here on features of synthetic posters (cnn with random
weights, color, gist: no pretrained files needed) with labels that follow the posters'
brightness and saturation, so a test can check that the explanation names the cue that
really drives a genre. The full bundle (objects and faces too) needs the real weights.
"""

from __future__ import annotations

import functools
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    LIGHT_EXTRACTORS,
    REPO,
    TINY_GENRES,
    encode,
    make_poster,
    require_weights,
    train_bundle,
)

import postergenre
from postergenre.analysis import Analysis, Analyzer, Failure, clear_cache, default_analyzer
from postergenre.errors import ConfigError, ModelError, PosterError

GENRES = TINY_GENRES
FULL = (("cnn", {}), ("objects", {}), ("faces", {}), ("color", {}), ("gist", {}))


@functools.cache
def tiny_bundle() -> Path:
    """One small bundle per test process (training takes a few seconds)."""
    return train_bundle(Path(tempfile.mkdtemp(prefix="pg-bundle-")) / "model")


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer.load(tiny_bundle(), device="cpu")


def _check_additive(a: Analysis, analyzer: Analyzer, k: int) -> None:
    """Shown cues + other + base == the model's own logit, to 1e-4."""
    X, _ = analyzer.features([a.image] if a.image is not None else [])
    truth = analyzer.bundle.model.decision_function(X)[0]
    for genre, e in a.explanations.items():
        shown, other, _ = e.top(k)
        total = e.base + math.fsum(c.contribution for c in shown) + other
        assert total == pytest.approx(e.logit, abs=1e-4)
        assert e.logit == pytest.approx(truth[analyzer.genres.index(genre)], abs=1e-4)
        assert 1 / (1 + math.exp(-e.logit)) == pytest.approx(a.probabilities[genre], abs=1e-9)


def test_probabilities_cover_every_genre_sorted_and_predicted_set(analyzer: Analyzer) -> None:
    a = analyzer.analyze(make_poster(200))
    assert list(a.probabilities) == sorted(a.probabilities, key=lambda g: -a.probabilities[g])
    assert set(a.probabilities) == set(GENRES)
    assert a.predicted and a.predicted[0] == a.top_genre
    for g in a.predicted:
        assert a.probabilities[g] >= a.thresholds[g] or g == a.top_genre
    X, _ = analyzer.features([make_poster(200)])
    proba = analyzer.bundle.model.predict_proba(X)[0]
    for g, p in a.probabilities.items():
        assert p == pytest.approx(proba[GENRES.index(g)], abs=1e-9)
    assert a.explanations == {}  # explain=False explains nothing


def test_fixed_threshold_changes_predicted_set_not_probabilities(
    analyzer: Analyzer,
) -> None:
    poster = make_poster(201)
    low = analyzer.analyze(poster, threshold=0.0)
    high = analyzer.analyze(poster, threshold=1.0)
    assert low.probabilities == high.probabilities
    assert low.predicted == list(low.probabilities)  # every genre passes 0
    assert high.predicted == [high.top_genre]  # none passes 1: the top genre is still named


@pytest.mark.parametrize("k", [1, 3, 100])
def test_explanation_adds_up_to_the_logit(analyzer: Analyzer, k: int) -> None:
    a = analyzer.analyze(make_poster(202), explain=True, top_k=4)
    assert set(a.explanations) == set(GENRES)
    _check_additive(a, analyzer, k)
    e = a.explanations[a.top_genre]
    assert set(e.groups) <= {"color", "gist", "cnn"}
    assert math.fsum(e.groups.values()) + e.base == pytest.approx(e.logit, abs=1e-4)


def test_explanation_names_the_cue_that_drives_the_genre(analyzer: Analyzer) -> None:
    dark = np.full((236, 160, 3), 12, np.uint8)
    dark[100:140, 40:120] = (40, 10, 10)
    a = analyzer.analyze(dark, explain=True, top_k=2)
    assert a.top_genre == "Horror"  # the labels said: dark posters are Horror
    top_cues = [c.key for c in a.explanations["Horror"].top(3)[0]]
    assert "color.brightness" in top_cues or "color.stats" in top_cues or "color.hue" in top_cues
    text = " | ".join(c.text for c in a.explanations["Horror"].cues)
    assert "very dark (" in text or "mostly dark (" in text


def test_at_least_one_rule_and_genres_the_model_never_predicts(tmp_path: Path) -> None:
    analyzer = Analyzer.load(tiny_bundle(), device="cpu")
    poster = make_poster(205)
    a = analyzer.analyze(poster, threshold=1.0)
    assert a.predicted == a.predicted_below_threshold == [a.top_genre]
    b = analyzer.analyze(poster, threshold=1.0, at_least_one=False, explain=True, details=True)
    assert b.predicted == [] and b.explanations == {} and b.predicted_below_threshold == []
    assert b.gradcam_genre == b.top_genre  # the map still has a genre to follow
    # A threshold above 1 (a genre no training poster had): never predicted, not even as
    # the one genre every poster gets; the next most probable is that one.
    first, second = list(a.probabilities)[:2]
    analyzer.thresholds[:] = 1.0
    analyzer.thresholds[analyzer.genres.index(first)] = 1.000000001
    c = analyzer.analyze(poster, explain=True, top_k=2)
    assert c.predicted == [second] and c.not_predicted_by_model == [first]
    d = c.to_dict()
    assert d["not_predicted_by_model"] == [first] and d["predicted"] == [second]
    assert d["explanations"][first]["threshold"] > 1


def test_a_poster_is_read_at_the_model_scale_and_its_file_size_is_kept(
    analyzer: Analyzer,
) -> None:
    big = analyzer.analyze(make_poster(206, size=(472, 320)))
    assert big.size == (160, 236) and big.source_size == (320, 472)
    assert big.size_text == "320x472 px, read at 160x236"
    assert big.to_dict()["source_size"] == [320, 472]
    fitted = analyzer.analyze(make_poster(206, size=(236, 160)))
    assert fitted.size == fitted.source_size == (160, 236) and fitted.size_text == "160x236 px"


def test_max_pixels_refuses_larger_posters_unread(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    path.write_bytes(encode(make_poster(206), "PNG"))  # 160x236
    small = Analyzer.load(tiny_bundle(), device="cpu", max_pixels=160 * 236 - 1)
    with pytest.raises(PosterError, match="megapixel limit") as info:
        small.analyze(path)
    assert info.value.kind == "too_large" and "max_pixels" in info.value.hint
    assert Analyzer.load(tiny_bundle(), device="cpu", max_pixels=160 * 236).analyze(path)
    with pytest.raises(ConfigError, match="max_pixels"):
        Analyzer.load(tiny_bundle(), device="cpu", max_pixels=0)


def test_effects_in_points_match_the_probability_without_the_cue(analyzer: Analyzer) -> None:
    a = analyzer.analyze(make_poster(207), explain=True, top_k=2)
    for e in a.explanations.values():
        d = e.to_dict(3)
        assert d["base_probability"] == pytest.approx(1 / (1 + math.exp(-e.base)))
        for cue in d["cues"]:
            without = 1 / (1 + math.exp(-(e.logit - cue["contribution"])))
            assert cue["effect"] == pytest.approx(e.probability - without, abs=1e-9)
            assert (cue["effect"] > 0) == (cue["contribution"] > 0)


def test_explain_predicted_genres_by_default(analyzer: Analyzer) -> None:
    a = analyzer.analyze(make_poster(203), explain=True)
    assert list(a.explanations) == a.predicted
    assert a.palette is not None and abs(sum(s for _, s in a.palette) - 1) < 1e-6
    d = a.to_dict()
    assert set(d["probabilities"]) == set(GENRES)
    assert set(d["explanations"]) == set(a.predicted)
    first = d["explanations"][a.predicted[0]]
    assert {"base", "logit", "cues", "other", "groups"} <= set(first)
    total = first["base"] + sum(c["contribution"] for c in first["cues"])
    assert total + first["other"]["contribution"] == pytest.approx(first["logit"], abs=1e-4)


def _check_direction_is_the_gradient(analyzer: Analyzer, poster: np.ndarray, genre: str) -> None:
    """The direction is the gradient of the genre's log-odds over the embedding: the sum of
    each differentiable base's gradient, meta-weighted, checked by a finite difference of
    the model itself: a small step along it raises the log-odds by step * |direction|^2."""
    X, _ = analyzer.features([poster])
    direction, _ = analyzer.embedding_direction(X[0], genre)
    assert direction is not None
    cols = [i for i, n in enumerate(analyzer.feature_names) if n.startswith("cnn.")]
    j = analyzer.genres.index(genre)
    model = analyzer.bundle.model
    X0 = X.astype(np.float64)
    parts: dict[str, np.ndarray] = {}
    for b, (base, kc) in enumerate(zip(model.bases_, model.base_columns_, strict=True)):
        grad = base.gradient(X0[:, kc])
        if grad is not None:
            full = np.zeros(X.shape[1])
            full[kc] = model.meta_weights[j, b, :] @ grad[0]
            parts[base.name] = parts.get(base.name, 0) + full[cols]
    total = sum(parts.values())
    assert np.allclose(direction, total, rtol=1e-5, atol=1e-6 * float(np.abs(total).max()))
    if "knn" in model.base_names_:
        assert np.any(parts["knn"] != 0)  # the kNN base's say is in the direction
    step = 1e-3 / float(np.linalg.norm(total))
    X2 = X0.copy()
    X2[0, cols] += step * total
    delta = model.decision_function(X2)[0, j] - model.decision_function(X0)[0, j]
    assert delta == pytest.approx(step * float(total @ total), rel=0.05)


def test_gradcam_follows_the_mlp_gradient(analyzer: Analyzer) -> None:
    poster = make_poster(204)
    a = analyzer.analyze(poster, explain=True, details=True)
    assert a.gradcam is not None and a.gradcam.shape == poster.shape[:2]
    assert a.gradcam_genre == a.predicted[0]
    assert 0.0 <= float(a.gradcam.min()) and float(a.gradcam.max()) <= 1.0
    _check_direction_is_the_gradient(analyzer, poster, a.gradcam_genre)


def test_gradient_sums_every_mlp_base_and_bag(tmp_path: Path) -> None:
    from postergenre.ensemble.bases import BASES
    from postergenre.ensemble.stacker import GenreStacker

    if "mlp_all" not in BASES or "mlp_bags" not in GenreStacker().get_params():
        pytest.skip("this ensemble has no mlp_all base or bagged MLPs")
    bundle = train_bundle(
        tmp_path / "model", n=48, bases=("xgb", "mlp", "mlp_all"), mlp_bags=2
    )  # fmt: skip
    analyzer = Analyzer.load(bundle, device="cpu")
    poster = make_poster(205)
    a = analyzer.analyze(poster, explain=True, top_k=2)
    _check_additive(a, analyzer, 3)
    for genre in a.explanations:
        _check_direction_is_the_gradient(analyzer, poster, genre)


def test_analyze_many_batches_and_reports_bad_files(analyzer: Analyzer, tmp_path: Path) -> None:
    good = []
    for i in range(3):
        p = tmp_path / f"p{i}.jpg"
        p.write_bytes(encode(make_poster(210 + i)))
        good.append(p)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(encode(make_poster(1))[:300])  # truncated JPEG
    results = analyzer.analyze_many([good[0], bad, good[1], good[2]], explain=True, batch_size=2)
    assert len(results) == 4
    # The generator form yields the same, lazily (one batch at a time).
    stream = analyzer.iter_analyze(iter([good[0], bad]), batch_size=1)
    first = next(stream)
    assert isinstance(first, Analysis) and isinstance(next(stream), Failure)
    assert isinstance(results[1], Failure) and results[1].kind == "corrupt"
    assert results[1].to_dict()["error"] and results[1].to_dict()["path"] == str(bad)
    ok = [r for r in results if isinstance(r, Analysis)]
    assert [r.path for r in ok] == [str(p) for p in good]
    # Batched results equal one-at-a-time results.
    single = analyzer.analyze(good[1], explain=True)
    assert ok[1].probabilities == pytest.approx(single.probabilities, abs=1e-6)
    with pytest.raises(PosterError):
        analyzer.analyze(bad)


def test_inputs_path_array_and_pil(analyzer: Analyzer, tmp_path: Path) -> None:
    from PIL import Image

    poster = make_poster(220)
    path = tmp_path / "p.png"
    path.write_bytes(encode(poster, "PNG"))
    by_path = analyzer.analyze(path)
    by_array = analyzer.analyze(poster)
    by_pil = analyzer.analyze(Image.fromarray(poster))
    assert by_path.path == str(path) and by_array.path is None
    assert by_path.probabilities == pytest.approx(by_array.probabilities)
    assert by_pil.probabilities == pytest.approx(by_array.probabilities)
    with pytest.raises(ConfigError, match="expected a file path"):
        analyzer.analyze(42)
    with pytest.raises(ConfigError, match="uint8"):
        analyzer.analyze(poster.astype(np.float32))


def test_public_api_loads_once_and_reuses() -> None:
    clear_cache()
    model = tiny_bundle()
    a = postergenre.analyze(make_poster(230), explain=True, model=str(model))
    first = default_analyzer(str(model))
    b = postergenre.analyze(make_poster(231), model=str(model))
    assert default_analyzer(str(model)) is first  # same extractors and bundle objects
    assert isinstance(a, Analysis) and a.explanations and not b.explanations
    loaded = postergenre.load_model(str(model), device="cpu")
    assert isinstance(loaded, Analyzer) and loaded.genres == GENRES
    clear_cache()


def test_missing_or_mismatched_model_is_a_model_error(tmp_path: Path) -> None:
    import json

    with pytest.raises(ModelError):
        Analyzer.load(tmp_path / "nothing")
    # A bundle recording another extractor config cannot be run by this install.
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(tiny_bundle(), copy)
    manifest = json.loads((copy / "bundle.json").read_text())
    manifest["extractors"][0]["version"] = "999"
    (copy / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="version"):
        Analyzer.load(copy)


# -- real weights ------------------------------------------------------------------------------


@functools.cache
def full_bundle() -> Path:
    return train_bundle(Path(tempfile.mkdtemp(prefix="pg-bundle-full-")) / "model", FULL, n=40)


@pytest.mark.weights
def test_full_bundle_explains_with_objects_and_faces() -> None:
    require_weights("mobilenet_v2", "yolo11n-seg", "retinaface_mnet025", "emotion_minixception")
    analyzer = Analyzer.load(full_bundle(), device="cpu")
    poster = make_poster(240)
    a = analyzer.analyze(poster, explain=True, top_k=4, details=True)
    _check_additive(a, analyzer, 5)
    assert a.faces is not None and a.objects is not None and a.imagenet is not None
    # Faces come from one detector pass, turned into the extractor's own feature row.
    from postergenre.features import get_extractor

    direct = get_extractor("faces").load("cpu").extract([poster])[0]
    faces_cols = [i for i, n in enumerate(analyzer.feature_names) if n.startswith("faces.")]
    X, _ = analyzer.features([poster], with_faces=True)
    assert np.allclose(X[0, faces_cols], direct, atol=1e-5)
    groups = {c.group for e in a.explanations.values() for c in e.cues}
    assert {"objects", "faces", "color", "gist", "cnn"} <= groups


DEFAULT = REPO / "src" / "postergenre" / "models" / "default"


@pytest.mark.weights
@pytest.mark.shared
def test_default_bundle_explanations_add_up_on_real_posters() -> None:
    from conftest import require_shared

    if not (DEFAULT / "bundle.json").is_file():
        pytest.skip(f"the shipped model is not at {DEFAULT} yet")
    require_weights("mobilenet_v2", "yolo11n-seg", "retinaface_mnet025", "emotion_minixception")
    images = sorted((require_shared() / "images").glob("*.jpg"))[::5000][:3]
    analyzer = Analyzer.load(None, device="cpu")
    for path in images:
        a = analyzer.analyze(path, explain=True, top_k=3)
        _check_additive(a, analyzer, 5)
        assert len(a.probabilities) == len(analyzer.genres)


def test_parallel_extractors_match_sequential_and_restore_torch_threads() -> None:
    import torch

    poster = make_poster(250)
    before = torch.get_num_threads()
    parallel = Analyzer.load(tiny_bundle(), device="cpu", workers=2)
    sequential = Analyzer.load(tiny_bundle(), device="cpu", workers=1)
    a = parallel.analyze(poster, explain=True)
    b = sequential.analyze(poster, explain=True)
    assert torch.get_num_threads() == before
    assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)
    assert np.allclose(a.features, b.features, atol=1e-5)  # type: ignore[arg-type]
    parallel.close()
    with pytest.raises(ConfigError, match="workers"):
        Analyzer.load(tiny_bundle(), device="cpu", workers=0)


# -- one decision rule: analyze, predict and evaluate name the same genres ----------------------


@pytest.fixture(scope="module")
def labelled_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path]]:
    """Poster files, a feature store of them made by the extraction runner, and labels:
    train and val posters labelled by brightness and saturation, 20 test posters, each in
    its own split (so evaluate can be asked about one poster at a time)."""
    from postergenre.features import get_extractor
    from postergenre.features.runner import RunOptions, run_extraction

    root = tmp_path_factory.mktemp("decide")
    files = []
    for i in range(100):
        p = root / "posters" / f"p{i:03d}.png"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(encode(make_poster(300 + i), "PNG"))
        files.append(p)
    exts = [get_extractor(name, **cfg) for name, cfg in LIGHT_EXTRACTORS]
    run_extraction(
        [str(p) for p in files], root / "store", exts, RunOptions(workers=0, device="cpu")
    )
    X = np.stack([exts[1].load("cpu").extract([make_poster(300 + i)])[0] for i in range(100)])
    names = exts[1].feature_names()
    bright = X[:, names.index("color.brightness")]
    sat = X[:, names.index("color.saturation.mean")]
    rng = np.random.default_rng(0)
    # Genres of about 25% each, so that tuned thresholds leave some posters with fewer
    # genres than min_genres (with 50% genres, naming every genre is what F1 prefers).
    lo, hi = np.quantile(bright, [0.25, 0.75])
    rows = ["imdb_id,file,split,genres"]
    for i, p in enumerate(files):
        split = "train" if i < 56 else "val" if i < 80 else f"t{i - 80:02d}"
        on = [bright[i] < lo, bright[i] > hi, rng.random() < 0.25, sat[i] > np.quantile(sat, 0.75)]
        tags = [g for g, yes in zip(GENRES, on, strict=True) if yes] or ["Drama"]
        rows.append(f"tt{i:07d},posters/{p.name},{split},{'|'.join(tags)}")
    labels = root / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return root / "store", labels, files[80:]


@pytest.mark.parametrize("min_genres", [1, 2])
def test_analyze_predict_and_evaluate_decide_the_same_genre_sets(
    labelled_store: tuple[Path, Path, list[Path]], tmp_path: Path, min_genres: int
) -> None:
    from postergenre.ensemble.training import TrainConfig, evaluate_from_store, train_from_store
    from postergenre.features.store import FeatureStore

    store, labels, test_files = labelled_store
    config = TrainConfig(
        min_count=2,
        label_weights=False,
        stacker={"n_folds": 2, "xgb_rounds": 30, "xgb_learning_rate": 0.3, "xgb_colsample": 1.0,
                 "xgb_min_child_weight": 1.0, "mlp_hidden": 16, "mlp_epochs": 5, "n_jobs": 1,
                 "min_genres": min_genres},
    )  # fmt: skip
    model = train_from_store(store, labels, tmp_path / "model", config).path
    analyzer = Analyzer.load(model, device="cpu")
    genres = analyzer.genres
    assert int(analyzer.bundle.model.min_genres) == min_genres

    analyzed = [set(a.predicted) for a in analyzer.analyze_many(test_files)]  # type: ignore[union-attr]
    data = FeatureStore(store).load(analyzer.bundle.extractor_names)
    rows = [data.ids.index(i) for i in FeatureStore(store).lookup(test_files)]  # type: ignore[arg-type]
    P = analyzer.bundle.model.predict(data.X[rows])
    predicted = [{g for g, on in zip(genres, p, strict=True) if on} for p in P]
    evaluated = []
    for k in range(len(test_files)):
        result = evaluate_from_store(store, labels, model, split=f"t{k:02d}")
        evaluated.append({r["genre"] for r in result.metrics.per_genre if r["predicted"]})
    assert analyzed == predicted == evaluated
    assert all(len(s) >= min_genres for s in analyzed)
    if min_genres > 1:  # the rule is exercised: some posters pass fewer thresholds
        S = analyzer.bundle.model.predict_proba(data.X[rows])
        assert ((S >= analyzer.thresholds).sum(1) < min_genres).any()
