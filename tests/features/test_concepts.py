"""concepts: ImageNet classes summed into named visual concepts a person can check."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_poster, require_weights

from postergenre.errors import ConfigError
from postergenre.features import DEFAULT_EXTRACTORS, get_extractor
from postergenre.features.concepts import (
    BY_KEY,
    CONCEPTS,
    Concept,
    ConceptsExtractor,
    _check_concepts,
    concept_scores,
    membership,
)


def one_hot(*classes: int, mass: tuple[float, ...] | None = None) -> np.ndarray:
    p = np.zeros((1, 1000))
    for c, m in zip(classes, mass or (1.0 / len(classes),) * len(classes), strict=True):
        p[0, c] += m
    return p


def score(p: np.ndarray, key: str) -> float:
    return float(concept_scores(p)[0, [c.key for c in CONCEPTS].index(key)])


def test_every_imagenet_class_is_in_at_most_one_concept() -> None:
    M = membership()
    assert M.shape == (1000, len(CONCEPTS))
    assert M.sum(1).max() == 1
    # The named concepts cover most of what posters show, not a handful of classes.
    assert M.sum() > 700


def test_an_overlapping_or_out_of_range_taxonomy_is_refused() -> None:
    with pytest.raises(ConfigError, match="both"):
        _check_concepts([Concept("a", "a", (1, 2)), Concept("b", "b", (2,))])
    with pytest.raises(ConfigError, match="ImageNet index"):
        _check_concepts([Concept("a", "a", (1000,))])


def test_a_rifle_is_a_weapon_and_a_dog_is_a_dog() -> None:
    assert score(one_hot(764), "weapons") == pytest.approx(1.0)  # rifle
    assert score(one_hot(764), "dogs") == 0.0
    assert score(one_hot(207), "dogs") == pytest.approx(1.0)  # golden retriever
    assert score(one_hot(917), "drawn_art") == pytest.approx(1.0)  # comic book


def test_what_the_picture_shows_is_measured_beside_the_print_look() -> None:
    # 80% "book jacket", 15% rifle, 5% elsewhere: the cover look is 0.8 and weapons are
    # 75% of what is left, so the rifle is not drowned by the print class.
    p = one_hot(921, 764, 0, mass=(0.8, 0.15, 0.05))
    assert score(p, "printed_cover") == pytest.approx(0.8)
    assert score(p, "weapons") == pytest.approx(0.75)
    assert score(p, "sea_creatures") == pytest.approx(0.25)  # tench


def test_scores_are_bounded_even_when_the_print_classes_take_everything() -> None:
    s = concept_scores(one_hot(916))
    assert np.all((s >= 0) & (s <= 1))
    assert s[0, [c.key for c in CONCEPTS].index("weapons")] == 0.0


def test_wrong_shape_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\(n, 1000\)"):
        concept_scores(np.zeros((2, 10)))


def test_concepts_run_by_default_and_name_their_features() -> None:
    assert "concepts" in DEFAULT_EXTRACTORS
    ext = get_extractor("concepts")
    assert ext.feature_names() == [f"concepts.{c.key}" for c in CONCEPTS]
    assert all(BY_KEY[c.key].phrase for c in CONCEPTS)


def test_random_weights_give_bounded_scores_that_follow_the_class_probabilities() -> None:
    ext = ConceptsExtractor(pretrained=False, input_size=64)
    ext.load("cpu")
    images = [make_poster(0), make_poster(1)]
    out = ext.extract(images)
    assert out.shape == (2, len(CONCEPTS))
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))
    np.testing.assert_allclose(out, concept_scores(ext.class_probabilities(images)), atol=1e-6)


@pytest.mark.weights
def test_real_network_sees_a_cat_as_a_cat() -> None:
    require_weights("mobilenet_v2")
    from skimage import data

    ext = ConceptsExtractor()
    ext.load("cpu")
    out = ext.extract([np.ascontiguousarray(data.chelsea())])[0]
    names = [c.key for c in CONCEPTS]
    assert out[names.index("cats")] > 0.5
    assert out[names.index("cats")] == out[3:].max()


def test_concept_sentences_hedge_and_follow_the_level() -> None:
    from postergenre.features.concepts import concept_sentence

    assert concept_sentence("weapons", 2) == "it seems to show guns or other weapons"
    assert concept_sentence("weapons", -2) == "nothing that looks like guns or other weapons"
    assert "drawing" in concept_sentence("drawn_art", 2)
    assert concept_sentence("drawn_art", -1).startswith("it does not look like")
    with pytest.raises(ConfigError, match="unknown concept"):
        concept_sentence("unicorns", 1)
