"""Cues: the partition of cue names keeps sums exact, and the words say what was seen."""

from __future__ import annotations

import math

import numpy as np
import pytest

from postergenre.cues import (
    CueContext,
    colour_name,
    cue_key,
    faces_summary,
    group_contributions,
    group_totals,
    objects_summary,
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
    assert _text(NAMES, "objects.knife", ctx) == "detected: knife x1 (4% of the poster)"
    assert _text(NAMES, "color.brightness", ctx).startswith(
        "very dark palette (brightness 0.18, typical 0.45; 60% dark pixels"
    )
    assert _text(NAMES, "color.saturation", ctx).startswith("very vivid colours (saturation 0.70")
    assert "looks afraid (fear 0.62)" in faces_summary(ctx)
    assert faces_summary(ctx).startswith("2 faces; the largest")
    assert objects_summary(ctx) == "detected: person x2, knife x1"
    assert (
        _text(NAMES, "faces.fear", ctx)
        == "the faces look afraid (fear 0.55 on average, typical 0.05)"
    )
    assert _text(NAMES, "cnn.style", ctx).startswith("overall visual style (CNN embedding)")


def test_words_for_absent_things() -> None:
    ctx = _ctx(values={"objects.knife.count": 0.0, "objects.knife.area": 0.0}, faces=[], objects=[])
    assert _text(NAMES, "objects.knife", ctx) == "no knife detected"
    assert faces_summary(ctx) == "no faces found"
    assert _text(NAMES, "faces.fear", ctx) == "no face to look afraid"
    assert objects_summary(ctx) == "no objects detected"


def test_gist_words_compare_with_typical_energy() -> None:
    names = [n for n in GIST if n.startswith("gist.s0.") and ".r0" in n]
    values = {n: 2.0 for n in names}
    reference = {n: {"median": 1.0, "p10": 0.5, "p90": 1.5} for n in names}
    text = _text(names, "gist.texture.upper", CueContext(values=values, reference=reference))
    assert text == "busy texture in the upper half (2.0x the typical energy)"
    values = {n: 0.5 for n in names}
    text = _text(names, "gist.texture.upper", CueContext(values=values, reference=reference))
    assert text.startswith("smooth texture in the upper half")


@pytest.mark.parametrize(
    ("rgb", "name"),
    [((0, 0, 0), "black"), ((255, 255, 255), "white"), ((128, 128, 128), "grey"),
     ((220, 30, 30), "red"), ((20, 20, 120), "dark blue"), ((240, 140, 20), "orange"),
     ((110, 70, 20), "brown"), ((30, 160, 60), "green"), ((100, 150, 120), "greyish green")],
)  # fmt: skip
def test_colour_names(rgb: tuple[int, int, int], name: str) -> None:
    assert colour_name(rgb) == name
