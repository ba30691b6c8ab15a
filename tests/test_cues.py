"""Cues: the partition of cue names keeps sums exact, and the words say what was seen."""

from __future__ import annotations

import math

import numpy as np
import pytest

from postergenre.cues import (
    Cue,
    CueContext,
    colour_name,
    cue_key,
    describe_cues,
    faces_summary,
    group_contributions,
    group_totals,
    lab_to_rgb,
    objects_summary,
    probability_effect,
    split_top,
)
from postergenre.features.base import Detection

GIST = [
    f"gist.s{s}.o{o}.r{r}c{c}"
    for s in range(4)
    for o in range(8)
    for r in range(4)
    for c in range(4)
]
NAMES = [
    "objects.knife.count",
    "objects.knife.area",
    "objects.person.count",
    "objects.person.area",
    "objects.total",
    "objects.largest_area",
    "faces.count",
    "faces.largest_area",
    "faces.fear",
    "faces.happy",
    "color.brightness",
    "color.dark_ratio",
    "color.saturation.mean",
    "color.saturation.std",
    "color.dominant1.L",
    "color.dominant1.share",
    "color.hsv_hist.h0_s2_v2",
    "color.grid.r0c0.L",
    "cnn.embedding",
    *GIST,
]


def test_partition_groups_related_names_and_keeps_every_name_once() -> None:
    rng = np.random.default_rng(0)
    contrib = rng.normal(size=len(NAMES))
    cues = group_contributions(NAMES, contrib, CueContext())
    members = [m for c in cues for m in c.members]
    assert sorted(members) == sorted(NAMES)
    keys = {c.key: c for c in cues}
    assert set(keys["objects.knife"].members) == {"objects.knife.count", "objects.knife.area"}
    assert keys["objects.knife"].contribution == pytest.approx(contrib[0] + contrib[1])
    assert set(keys["color.brightness"].members) == {"color.brightness", "color.dark_ratio"}
    # All cues together carry exactly the total contribution.
    assert math.fsum(c.contribution for c in cues) == pytest.approx(contrib.sum(), abs=1e-12)
    # Largest magnitude first.
    mags = [abs(c.contribution) for c in cues]
    assert mags == sorted(mags, reverse=True)


def test_gist_partition_texture_by_half_structure_by_orientation() -> None:
    assert cue_key("gist.s0.o3.r0c1") == ("gist", "gist.texture.upper")
    assert cue_key("gist.s1.o0.r3c1") == ("gist", "gist.texture.lower")
    assert cue_key("gist.s3.o0.r2c2") == ("gist", "gist.structure.vertical")
    assert cue_key("gist.s2.o4.r2c2") == ("gist", "gist.structure.horizontal")
    assert cue_key("gist.s2.o2.r0c0") == ("gist", "gist.structure.diagonal")
    cues = group_contributions(GIST, np.ones(len(GIST)), CueContext())
    assert {c.key for c in cues} == {
        "gist.texture.upper", "gist.texture.lower",
        "gist.structure.vertical", "gist.structure.horizontal", "gist.structure.diagonal",
    }  # fmt: skip


def test_split_top_lumps_the_rest_without_losing_any_log_odds() -> None:
    contrib = np.array([0.5, -2.0, 0.1, 1.0, -0.3] + [0.01] * (len(NAMES) - 5))
    cues = group_contributions(NAMES, contrib, CueContext())
    shown, other, n_other = split_top(cues, 2)
    assert [round(c.contribution, 6) for c in shown][0] == pytest.approx(-2.0 + 0.5)  # knife
    assert len(shown) == 2 and n_other == len(cues) - 2
    assert math.fsum([c.contribution for c in shown] + [other]) == pytest.approx(contrib.sum())
    totals = group_totals(cues)
    assert list(totals) == ["objects", "faces", "color", "gist", "cnn"]
    assert math.fsum(totals.values()) == pytest.approx(contrib.sum())


def test_contribution_count_must_match_names() -> None:
    with pytest.raises(ValueError, match="expected 3 contributions"):
        group_contributions(["a", "b", "c"], np.zeros(2), CueContext())


def _ctx(**kw: object) -> CueContext:
    values = {
        "objects.knife.count": 1.0,
        "objects.knife.area": 0.04,
        "objects.person.count": 2.0,
        "objects.person.area": 0.5,
        "objects.total": 3.0,
        "objects.largest_area": 0.3,
        "faces.count": 2.0,
        "faces.fear": 0.55,
        "color.brightness": 0.18,
        "color.dark_ratio": 0.6,
        "color.saturation.mean": 0.7,
    }
    reference = {
        "color.brightness": {"median": 0.45, "p10": 0.25, "p90": 0.65},
        "color.saturation.mean": {"median": 0.35, "p10": 0.15, "p90": 0.55},
        "faces.fear": {"median": 0.05, "p10": 0.0, "p90": 0.2},
    }
    faces = [
        Detection("face", 0.9, (10, 10, 20, 20), {"fear": 0.2, "happy": 0.7}),
        Detection("face", 0.95, (0, 0, 40, 50), {"fear": 0.62, "happy": 0.1, "neutral": 0.28}),
    ]
    objects = [
        Detection("person", 0.9, (0, 0, 50, 100)),
        Detection("knife", 0.6, (5, 5, 15, 25)),
        Detection("person", 0.8, (50, 0, 100, 100)),
    ]
    base: dict[str, object] = dict(
        values=values, reference=reference, faces=faces, objects=objects, size=(100, 150)
    )
    base.update(kw)
    return CueContext(**base)  # type: ignore[arg-type]


def _text(name_list: list[str], key: str, ctx: CueContext) -> str:
    cues = group_contributions(name_list, np.ones(len(name_list)), ctx)
    return next(c.text for c in cues if c.key == key)


def test_words_say_what_was_seen_on_this_poster() -> None:
    ctx = _ctx()
    assert _text(NAMES, "objects.knife", ctx) == "a knife is visible (4% of the poster)"
    assert (
        _text(NAMES, "objects.person", ctx) == "2 people are visible (together 50% of the poster)"
    )
    assert _text(NAMES, "color.brightness", ctx) == (
        "very dark (60% of the poster is near-black; darker than nine posters in ten)"
    )
    assert _text(NAMES, "color.saturation", ctx) == (
        "very vivid colours (more vivid than nine posters in ten)"
    )
    assert faces_summary(ctx) == "2 faces; the largest looks afraid and covers 13% of the poster"
    assert objects_summary(ctx) == "detected: person x2, knife x1"
    assert _text(NAMES, "faces.fear", ctx) == (
        "the faces look afraid (more than on a typical poster)"
    )
    assert _text(NAMES, "cnn.style", ctx) == (
        "the poster's overall look (learned from many posters)"
    )


def test_words_for_absent_things() -> None:
    ctx = _ctx(values={"objects.knife.count": 0.0, "objects.knife.area": 0.0}, faces=[], objects=[])
    assert _text(NAMES, "objects.knife", ctx) == "no knife detected"
    assert faces_summary(ctx) == "no faces found"
    assert _text(NAMES, "faces.fear", ctx) == "no face to look afraid"
    assert objects_summary(ctx) == "no objects detected"


def test_a_face_without_a_person_box_is_not_called_no_person() -> None:
    # A close-up: the face detector finds a face, the object detector no person.
    face = Detection("face", 0.99, (10, 10, 90, 130), {"fear": 0.7, "neutral": 0.3})
    values = {"objects.person.count": 0.0, "objects.person.area": 0.0, "objects.total": 0.0,
              "objects.largest_area": 0.0, "faces.count": 1.0, "faces.fear": 0.7}  # fmt: skip
    ctx = CueContext(values=values, faces=[face], size=(100, 150))
    texts = describe_cues(NAMES, ctx)
    assert texts["objects.person"] == "a face is visible, but no full figure"
    assert texts["objects.overall"] == "no objects detected apart from faces"
    assert texts["faces.layout"] == "a large face looking afraid (64% of the poster)"
    assert texts["faces.fear"] == "the face looks afraid"
    for text in texts.values():
        assert "no person" not in text and "no faces" not in text
    # And people without a face are not "no faces" either.
    crowd = CueContext(values={"objects.person.count": 3.0, "faces.count": 0.0}, faces=[])
    assert faces_summary(crowd) == "no face found, though people are visible"


#: Words a person reading a poster's cues should not meet (model internals).
JARGON = ("log-odds", "energy", "lab", "grid", "cnn", "embedding", "imagenet", "gist",
          "feature", "typical 0", "x the")  # fmt: skip


def test_every_cue_reads_without_model_jargon() -> None:
    names = [*NAMES, "color.contrast", "color.colorfulness", "color.warm_ratio",
             "color.lab.L.mean", "color.lab.a.mean", "color.lab.b.mean", "color.lab.L.std",
             *(f"color.grid.r{r}c{c}.{ch}" for r in range(3) for c in range(3) for ch in "Lab"),
             "cnn.holistic", "genres.combination"]  # fmt: skip
    values = {n: 1.0 for n in names}
    values.update({"color.brightness": 0.18, "color.dark_ratio": 0.6, "color.warm_ratio": 0.4,
                   "color.lab.L.mean": 30.0, "color.lab.a.mean": 20.0, "color.lab.b.mean": 15.0,
                   "color.hsv_hist.h0_s2_v2": 0.3, "faces.fear": 0.55})  # fmt: skip
    reference = {n: {"median": 0.5, "p10": 0.2, "p90": 0.8} for n in names}
    ctx = _ctx(values=values, reference=reference,
               imagenet=[("web site", 0.4), ("comic book", 0.2)],
               palette=[((10, 10, 10), 0.5), ((150, 20, 20), 0.3)])  # fmt: skip
    texts = describe_cues(names, ctx)
    assert len(texts) >= 18  # every kind of cue was worded
    for key, text in texts.items():
        low = text.lower()
        assert not [w for w in JARGON if w in low], (key, text)
        assert "web site" not in low and "comic book" not in low, (key, text)
        assert "very very" not in low, (key, text)


def test_colour_layout_and_cast_name_colours_a_person_sees() -> None:
    # Top third black, middle dark red, bottom orange (Lab of those colours).
    rows = {0: (5.0, 0.0, 0.0), 1: (22.0, 40.0, 25.0), 2: (65.0, 35.0, 70.0)}
    values = {f"color.grid.r{r}c{c}.{ch}": rows[r]["Lab".index(ch)]
              for r in range(3) for c in range(3) for ch in "Lab"}  # fmt: skip
    values.update({"color.lab.L.mean": 22.0, "color.lab.a.mean": 40.0, "color.lab.b.mean": 25.0})
    names = [n for n in values if n.startswith("color.grid")]
    ctx = CueContext(values=values)
    assert _text(names, "color.layout", ctx) == (
        "black at the top, dark red in the middle, orange at the bottom"
    )
    stats = ["color.lab.L.mean", "color.lab.a.mean", "color.lab.b.mean"]
    assert _text(stats, "color.stats", ctx) == "the colours average out to dark red"
    assert colour_name(lab_to_rgb(50.0, 0.0, 0.0)) == "grey"


def test_probability_effect_is_the_change_without_the_cue() -> None:
    def sigmoid(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    # A cue worth +0.46 log-odds on a poster at logit 0.78 (69%): without it, 58%.
    assert probability_effect(0.78, 0.46) == pytest.approx(sigmoid(0.78) - sigmoid(0.32))
    assert 0.10 < probability_effect(0.78, 0.46) < 0.11
    assert probability_effect(0.78, -0.46) < 0 < probability_effect(-3.0, 0.1)
    assert probability_effect(1.0, 0.0) == 0.0


def test_group_totals_keep_a_group_they_do_not_know() -> None:
    cues = [Cue("color.brightness", "color", "dark", 0.5, ("color.brightness",)),
            Cue("posterness.x", "posterness", "odd", 0.25, ("posterness.x",))]  # fmt: skip
    totals = group_totals(cues)
    assert totals == {"color": 0.5, "posterness": 0.25}
    assert cue_key("posterness.x") == ("other", "other.posterness")  # until it gets words


def test_gist_words_compare_with_typical_poster() -> None:
    names = [n for n in GIST if n.startswith("gist.s0.") and ".r0" in n]
    values = {n: 2.0 for n in names}
    reference = {n: {"median": 1.0, "p10": 0.5, "p90": 1.5} for n in names}
    text = _text(names, "gist.texture.upper", CueContext(values=values, reference=reference))
    assert text == "lots of fine detail in the top half (more than a typical poster)"
    values = {n: 0.5 for n in names}
    text = _text(names, "gist.texture.upper", CueContext(values=values, reference=reference))
    assert text == "little fine detail in the top half, smooth (less than a typical poster)"
    structure = [n for n in GIST if n.startswith("gist.s3.o0.")]
    ctx = CueContext(values={n: 3.0 for n in structure}, reference=reference | {
        n: {"median": 1.0} for n in structure})  # fmt: skip
    assert _text(structure, "gist.structure.vertical", ctx) == (
        "strong vertical lines and edges (more than a typical poster)"
    )


@pytest.mark.parametrize(
    ("rgb", "name"),
    [((0, 0, 0), "black"), ((255, 255, 255), "white"), ((128, 128, 128), "grey"),
     ((220, 30, 30), "red"), ((20, 20, 120), "dark blue"), ((240, 140, 20), "orange"),
     ((110, 70, 20), "brown"), ((30, 160, 60), "green"), ((100, 150, 120), "greyish green")],
)  # fmt: skip
def test_colour_names(rgb: tuple[int, int, int], name: str) -> None:
    assert colour_name(rgb) == name


def test_each_named_concept_is_its_own_checkable_cue_in_plain_words() -> None:
    names = ["concepts.weapons", "concepts.gowns", "concepts.drawn_art", "cnn.embedding"]
    assert cue_key("concepts.weapons") == ("concepts", "concepts.weapons")
    ref = {n: {"median": 0.01, "p10": 0.001, "p90": 0.05} for n in names[:3]}
    ctx = CueContext(
        values={"concepts.weapons": 0.4, "concepts.gowns": 0.0001, "concepts.drawn_art": 0.02},
        reference=ref,
    )
    texts = describe_cues(names, ctx)
    assert texts["concepts.weapons"] == "it seems to show guns or other weapons"
    assert texts["concepts.gowns"] == "nothing that looks like a gown or period dress"
    assert "drawing" in texts["concepts.drawn_art"]
    cues = group_contributions(names, np.array([0.5, -0.2, 0.1, 0.3]), ctx)
    assert {c.group for c in cues} == {"concepts", "cnn"}
    assert sum(c.contribution for c in cues) == pytest.approx(0.7)


def test_the_genre_combination_cue_is_its_own_group_in_words() -> None:
    assert cue_key("genres.combination") == ("genres", "genres.combination")
    text = describe_cues(["genres.combination"], _ctx())["genres.combination"]
    assert "genre combinations films have" in text and "genres.combination" not in text
    cues = group_contributions(
        ["genres.combination", "cnn.embedding"], np.array([0.5, -1.0]), _ctx()
    )
    assert group_totals(cues) == {"cnn": -1.0, "genres": 0.5}
