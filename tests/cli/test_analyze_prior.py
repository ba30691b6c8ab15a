"""`analyze --prior FILE`: probabilities moved to a catalogue's genre mix, exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import encode, make_poster


@pytest.fixture(scope="module")
def model() -> str:
    from test_analysis import tiny_bundle

    return str(tiny_bundle())


def _invoke(args: list[str]) -> object:
    from typer.testing import CliRunner

    from postergenre.cli import app

    return CliRunner().invoke(app, ["analyze", *args, "--device", "cpu"])


def test_prior_moves_probabilities_by_the_label_shift_formula(model: str, tmp_path: Path) -> None:
    from postergenre.ensemble.bundle import load_bundle
    from postergenre.ensemble.label_shift import adapt_to_prior

    poster = tmp_path / "p.png"
    poster.write_bytes(encode(make_poster(21), "PNG"))
    bundle = load_bundle(model)
    genres = bundle.genres
    target = {g: 0.05 + 0.4 * j / len(genres) for j, g in enumerate(genres)}
    prior = tmp_path / "catalogue.json"
    prior.write_text(json.dumps(target))

    plain = _invoke([str(poster), "--model", model, "--json"])
    shifted = _invoke([str(poster), "--model", model, "--json", "--prior", str(prior)])
    assert plain.exit_code == 0 and shifted.exit_code == 0, shifted.stderr  # type: ignore[attr-defined]
    a = json.loads(plain.stdout.splitlines()[0])  # type: ignore[attr-defined]
    b = json.loads(shifted.stdout.splitlines()[0])  # type: ignore[attr-defined]
    p = np.array([a["probabilities"][g] for g in genres])
    q = np.array([b["probabilities"][g] for g in genres])
    t = np.array([target[g] for g in genres])
    expected = adapt_to_prior(p, bundle.model.reference_prior, t)
    np.testing.assert_allclose(q, expected, atol=1e-6)
    assert not np.allclose(p, q, atol=1e-3)
    assert b["prior"]["shares"] == pytest.approx(target)

    text = _invoke([str(poster), "--model", model, "--prior", str(prior)])
    assert "adapted to the genre mix" in text.stdout  # type: ignore[attr-defined]


def test_a_partial_prior_moves_only_the_genres_it_names(model: str, tmp_path: Path) -> None:
    from postergenre.ensemble.bundle import load_bundle
    from postergenre.ensemble.label_shift import adapt_to_prior

    poster = tmp_path / "p.png"
    poster.write_bytes(encode(make_poster(22), "PNG"))
    bundle = load_bundle(model)
    prior = tmp_path / "partial.json"
    prior.write_text(json.dumps({"Drama": 0.4, "Documentry": 0.3}))  # a typo, not a genre
    plain = _invoke([str(poster), "--model", model, "--json"])
    shifted = _invoke([str(poster), "--model", model, "--json", "--prior", str(prior)])
    assert shifted.exit_code == 0, shifted.stderr  # type: ignore[attr-defined]
    a = json.loads(plain.stdout.splitlines()[0])["probabilities"]  # type: ignore[attr-defined]
    b = json.loads(shifted.stdout.splitlines()[0])["probabilities"]  # type: ignore[attr-defined]
    j = bundle.genres.index("Drama")
    ref = float(bundle.model.reference_prior[j])
    expected = adapt_to_prior(np.array([a["Drama"]]), np.array([ref]), np.array([0.4]))[0]
    assert b["Drama"] == pytest.approx(expected, abs=1e-9) and abs(b["Drama"] - a["Drama"]) > 1e-3
    for g in bundle.genres:
        if g != "Drama":
            assert b[g] == pytest.approx(a[g], abs=1e-12)
    text = _invoke([str(poster), "--model", model, "--prior", str(prior)])
    note = text.stdout  # type: ignore[attr-defined]
    assert "adapted to the genre mix" in note and "Drama 40%" in note
    assert "other genres keep the model's reference shares" in note
    assert "ignored, not genres of this model: Documentry" in note


def test_a_prior_naming_no_genre_of_the_model_is_a_clear_error(model: str, tmp_path: Path) -> None:
    from postergenre.cli.analyze import run
    from postergenre.errors import PosterGenreError

    poster = tmp_path / "p.png"
    poster.write_bytes(encode(make_poster(22), "PNG"))
    prior = tmp_path / "other.json"
    prior.write_text(json.dumps({"Documentry": 0.4}))
    with pytest.raises(PosterGenreError, match="names none of the model's genres"):
        run([str(poster)], model=Path(model), device="cpu", prior=prior)
