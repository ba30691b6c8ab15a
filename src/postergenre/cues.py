"""Turn an explanation's per-feature contributions into a few plain-language cues.

The ensemble explains a genre's log-odds exactly: ``logit = base + sum(contributions)``,
one contribution per cue name (a feature such as ``objects.knife.count`` or a pseudo-cue
such as ``cnn.embedding``). Hundreds of numbers say little to a person, so this module

1. partitions the cue names into *meaningful cues*: every ``objects.knife.*`` becomes one
   "knife" cue, every GIST energy of the upper half at near-vertical orientations one
   "vertical structure in the upper half" cue, and so on. It is a partition (each name
   lands in exactly one cue) so the sums still add up to the logit;
2. words each cue as a short sentence a person can check by looking at *this* poster,
   compared with the training posters where that helps ("mostly dark (62% of the poster
   is near-black; darker than nine posters in ten)", "a knife is visible"). No model
   jargon: the exact numbers stay in the contributions (and in ``--json``);
3. keeps the top cues and lumps the rest into "other cues", again keeping the sum.

:func:`probability_effect` turns a cue's log-odds into what a person reads: how many
percentage points the genre's probability would lose (or gain) without that cue.

Adding a feature group (a new prefix of feature names) takes one branch in
:func:`cue_key` (which cue each name joins) and one in :func:`describe` (its words);
names with a prefix neither knows are grouped per prefix as "other" and still add up.

Nothing here imports numpy-heavy or torch code beyond numpy itself.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from postergenre.features.base import Detection

#: Cue groups in display order, with the words a person reads.
GROUP_TITLES: dict[str, str] = {
    "objects": "objects",
    "faces": "faces",
    "color": "colour",
    "gist": "detail and lines",
    "concepts": "what it seems to show",
    "cnn": "overall look",
    "genres": "genre combinations",
    "other": "other",
}

#: Plain words for the FER2013 expressions (faces extractor order).
EXPRESSION_WORDS: dict[str, str] = {
    "angry": "angry",
    "disgust": "disgusted",
    "fear": "afraid",
    "happy": "happy",
    "sad": "sad",
    "surprise": "surprised",
    "neutral": "neutral",
}


@dataclass(frozen=True)
class Cue:
    """One meaningful cue for one genre: several cue names lumped, their contributions summed.

    ``contribution`` is in log-odds of the genre (positive raised it); see
    :func:`probability_effect` for the same in probability.
    """

    key: str
    group: str
    text: str
    contribution: float
    members: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "group": self.group,
            "text": self.text,
            "contribution": float(self.contribution),
            "n_features": len(self.members),
        }


@dataclass(frozen=True)
class CueContext:
    """What was seen on one poster, for wording cues.

    ``values``: feature name -> this poster's value. ``reference``: feature name ->
    {"median", "p10", "p90"} on the training posters. ``objects``/``faces``: detections in
    the poster's pixels (``faces`` None when faces were not looked for). ``size``: (width,
    height). ``imagenet``: the CNN's top ImageNet classes as (label, probability), and
    ``palette`` the dominant colours as ((r, g, b), share), when computed.
    """

    values: Mapping[str, float] = field(default_factory=dict)
    reference: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    objects: Sequence[Detection] = ()
    faces: Sequence[Detection] | None = None
    size: tuple[int, int] = (0, 0)
    imagenet: Sequence[tuple[str, float]] | None = None
    palette: Sequence[tuple[tuple[int, int, int], float]] | None = None

    def value(self, name: str) -> float | None:
        v = self.values.get(name)
        return None if v is None or not math.isfinite(float(v)) else float(v)

    def typical(self, name: str) -> float | None:
        ref = self.reference.get(name)
        if not ref or "median" not in ref:
            return None
        v = float(ref["median"])
        return v if math.isfinite(v) else None

    def level(self, name: str) -> int:
        """-1 below the training p10..p90 band's middle part, +1 above, 0 typical or unknown.

        Below the median and under p10 -> -2, above p90 -> +2 (used for "very").
        """
        v, ref = self.value(name), self.reference.get(name)
        if v is None or not ref:
            return 0
        med, lo, hi = (float(ref.get(k, math.nan)) for k in ("median", "p10", "p90"))
        if math.isfinite(hi) and v > hi:
            return 2
        if math.isfinite(lo) and v < lo:
            return -2
        if math.isfinite(med) and math.isfinite(hi) and v > med + 0.5 * (hi - med):
            return 1
        if math.isfinite(med) and math.isfinite(lo) and v < med - 0.5 * (med - lo):
            return -1
        return 0


# -- partition: cue name -> (group, key) ---------------------------------------------------

_GIST = re.compile(r"^gist\.s(\d+)\.o(\d+)\.r(\d+)c(\d+)$")
_OBJECT = re.compile(r"^objects\.(.+)\.(count|area)$")


def cue_key(name: str, n_orient: int = 8, n_rows: int = 4, n_scales: int = 4) -> tuple[str, str]:
    """The (group, key) of the meaningful cue a cue name belongs to.

    ``n_orient``/``n_rows``/``n_scales``: the GIST bank's shape (read from the names).
    GIST energies are split by scale: the finer half of the scales is *texture* (busy or
    smooth), per half of the poster; the coarser half is *structure*, per orientation.
    """
    prefix = name.split(".", 1)[0]
    if prefix == "objects":
        m = _OBJECT.match(name)
        return "objects", f"objects.{m.group(1)}" if m else "objects.overall"
    if prefix == "faces":
        rest = name.split(".", 1)[1] if "." in name else ""
        expr = rest.split(".")[-1]
        if expr in EXPRESSION_WORDS:
            return "faces", f"faces.{expr}"
        return "faces", "faces.layout"
    if prefix in ("color", "colour"):
        return "color", f"color.{_color_aspect(name)}"
    if prefix == "gist":
        m = _GIST.match(name)
        if not m:
            return "gist", "gist.other"
        s, o, r, _ = (int(x) for x in m.groups())
        if s < max(n_scales // 2, 1):
            return "gist", f"gist.texture.{'upper' if r < n_rows / 2 else 'lower'}"
        return "gist", f"gist.structure.{_orientation_class(o, n_orient)}"
    if prefix == "cnn":
        # A network reading every feature (not only the embedding) is its own cue.
        return "cnn", "cnn.holistic" if name == "cnn.holistic" else "cnn.style"
    if prefix == "concepts":
        # Each named visual concept (weapons, gowns, drawn art...) is a cue of its own.
        return "concepts", name
    if prefix == "genres":
        # Not a look of the poster: what the other genres' scores imply (genre_sets.py).
        return "genres", name
    # A new feature group gets its branch above (and its words in ``describe``).
    return "other", f"other.{prefix}"


def _color_aspect(name: str) -> str:
    """Which aspect of colour a ``color.*`` feature measures."""
    head = name.split(".")[1] if name.count(".") >= 1 else ""
    head = re.sub(r"\d+$", "", head)  # dominant1 -> dominant
    table = {
        "brightness": "brightness",
        "dark_ratio": "brightness",
        "lightness": "brightness",
        "contrast": "contrast",
        "saturation": "saturation",
        "colorfulness": "colorfulness",
        "colourfulness": "colorfulness",
        "warm_ratio": "warmth",
        "hsv_hist": "hue",
        "hue": "hue",
        "dominant": "palette",
        "palette": "palette",
        "grid": "layout",
        "lab": "stats",
    }
    return table.get(head, "other")


def _orientation_class(o: int, n_orient: int) -> str:
    """Orientation index -> "vertical", "horizontal" or "diagonal" structure.

    GIST orientation ``o`` is the direction of the Gabor filter's frequency vector at
    ``o * 180 / n_orient`` degrees from the x axis: 0 degrees responds to *vertical*
    stripes and edges, 90 degrees to horizontal ones (see ``features/gist.py``).
    """
    angle = (o * 180.0 / max(n_orient, 1)) % 180.0
    # Bands of 45 degrees centred on 0, 90 and 45/135: symmetric about both axes.
    if angle <= 22.5 or angle >= 157.5:
        return "vertical"
    if 67.5 <= angle <= 112.5:
        return "horizontal"
    return "diagonal"


# -- grouping -----------------------------------------------------------------------------


def group_contributions(
    cue_names: Sequence[str],
    contributions: np.ndarray,
    ctx: CueContext,
    texts: Mapping[str, str] | None = None,
) -> list[Cue]:
    """(C,) contributions of one poster for one genre -> meaningful cues, largest |c| first.

    The cues partition ``cue_names``: their contributions sum to ``contributions.sum()``.
    ``texts`` (from :func:`describe_cues`) saves re-wording the same poster per genre.
    """
    contributions = np.asarray(contributions, dtype=np.float64)
    if contributions.shape != (len(cue_names),):
        raise ValueError(
            f"expected {len(cue_names)} contributions, got shape {contributions.shape}"
        )
    if texts is None:
        texts = describe_cues(cue_names, ctx)
    parts = partition(tuple(cue_names))
    totals = np.bincount(_group_ids(tuple(cue_names)), weights=contributions, minlength=len(parts))
    cues = [
        Cue(key, group, texts[key], float(total), names)
        for (group, key, _, names), total in zip(parts, totals.tolist(), strict=True)
    ]
    cues.sort(key=lambda c: (-abs(c.contribution), c.key))
    return cues


def describe_cues(cue_names: Sequence[str], ctx: CueContext) -> dict[str, str]:
    """Plain words for every meaningful cue of one poster (the same for every genre)."""
    return {key: describe(key, names, ctx) for _, key, _, names in partition(tuple(cue_names))}


@functools.lru_cache(maxsize=8)
def partition(
    cue_names: tuple[str, ...],
) -> tuple[tuple[str, str, np.ndarray, tuple[str, ...]], ...]:
    """(group, key, indices, names) of each meaningful cue; cached, as every poster of a
    model shares its cue names."""
    shape = _gist_shape(cue_names)
    members: dict[tuple[str, str], list[int]] = {}
    for i, name in enumerate(cue_names):
        members.setdefault(cue_key(name, *shape), []).append(i)
    return tuple(
        (group, key, np.asarray(idx, dtype=np.int64), tuple(cue_names[i] for i in idx))
        for (group, key), idx in members.items()
    )


@functools.lru_cache(maxsize=8)
def _group_ids(cue_names: tuple[str, ...]) -> np.ndarray:
    """(C,) index of the meaningful cue each cue name belongs to (order of :func:`partition`)."""
    ids = np.empty(len(cue_names), dtype=np.int64)
    for k, (_, _, idx, _) in enumerate(partition(cue_names)):
        ids[idx] = k
    return ids


def _gist_shape(cue_names: Sequence[str]) -> tuple[int, int, int]:
    """(orientations, grid rows, scales) of the GIST names present (defaults 8, 4, 4)."""
    scales: set[int] = set()
    orients: set[int] = set()
    rows: set[int] = set()
    for name in cue_names:
        m = _GIST.match(name)
        if m:
            scales.add(int(m.group(1)))
            orients.add(int(m.group(2)))
            rows.add(int(m.group(3)))
    return (
        max(orients) + 1 if orients else 8,
        max(rows) + 1 if rows else 4,
        max(scales) + 1 if scales else 4,
    )


def group_totals(cues: Sequence[Cue]) -> dict[str, float]:
    """Contribution per group (objects, faces, color, gist, cnn, other), in display order;
    a group :data:`GROUP_TITLES` does not list comes after those (so nothing is lost)."""
    order = list(GROUP_TITLES)
    order += sorted({c.group for c in cues} - set(order))
    totals: dict[str, float] = {}
    for group in order:
        parts = [c.contribution for c in cues if c.group == group]
        if parts:
            totals[group] = math.fsum(parts)
    return totals


def probability_effect(logit: float, contribution: float) -> float:
    """What one cue did to the genre's probability: ``sigmoid(logit) -
    sigmoid(logit - contribution)``, the probability with the cue minus the probability had
    its log-odds been left out (in [-1, 1]; times 100 for percentage points).

    Unlike log-odds these do not add up across cues (the sigmoid bends), but each says
    honestly how far that cue alone moved this poster's probability.
    """
    return _sigmoid(logit) - _sigmoid(logit - contribution)


def points(effect: float) -> str:
    """A probability change (:func:`probability_effect`) as signed percentage points:
    "+12 pts", "-0.4 pts" (one decimal under 10 points)."""
    v = 100.0 * effect
    return f"{v:+.0f} pts" if abs(v) >= 9.95 else f"{v:+.1f} pts"


#: How a genre whose threshold no probability reaches (above 1) is marked, in the text,
#: the JSON's meaning and the card.
NOT_PREDICTED = "not predicted by this model"


def _sigmoid(x: float) -> float:
    x = max(-60.0, min(60.0, float(x)))
    return 1.0 / (1.0 + math.exp(-x))


def split_top(cues: Sequence[Cue], k: int) -> tuple[list[Cue], float, int]:
    """The ``k`` largest cues (by |contribution|), the summed rest, and how many that is."""
    ordered = sorted(cues, key=lambda c: (-abs(c.contribution), c.key))
    shown = ordered[: max(k, 0)]
    rest = ordered[max(k, 0) :]
    return shown, math.fsum(c.contribution for c in rest), len(rest)


# -- words ----------------------------------------------------------------------------------


def describe(key: str, names: Sequence[str], ctx: CueContext) -> str:
    """Plain words for one meaningful cue on this poster: what a person can check by looking.

    One branch per feature group (the first part of ``key``, as :func:`cue_key` made it).
    """
    group, _, rest = key.partition(".")
    if group == "objects":
        return _describe_objects(rest, ctx)
    if group == "faces":
        return _describe_faces(rest, names, ctx)
    if group == "color":
        return _describe_color(rest, names, ctx)
    if group == "gist":
        return _describe_gist(rest, names, ctx)
    if group == "concepts":
        return _describe_concept(rest, names, ctx)
    if group == "cnn":
        if key == "cnn.holistic":
            return "everything together (a second model weighing all these cues at once)"
        return "the poster's overall look (learned from many posters)"
    if group == "genres":
        return "the genre combinations films have, given this poster's other genre scores"
    return _describe_generic(names, ctx)


def _fmt(v: float) -> str:
    if v != 0 and abs(v) < 0.01:
        return f"{v:.1e}"
    return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"


def _typical_suffix(name: str | None, ctx: CueContext, fmt: Any = None) -> str:
    t = ctx.typical(name) if name else None
    if t is None:
        return ""
    return f", typical {(fmt or _fmt)(t)}"


def _describe_concept(key: str, names: Sequence[str], ctx: CueContext) -> str:
    """A named visual concept, hedged: the CNN's guess of what the poster shows."""
    from postergenre.features.concepts import BY_KEY, concept_sentence

    if key not in BY_KEY:
        return _describe_generic(names, ctx)
    return concept_sentence(key, ctx.level(names[0]))


def _describe_generic(names: Sequence[str], ctx: CueContext) -> str:
    """A group this module has no words for: its feature names, as they are."""
    if len(names) == 1:
        v = ctx.value(names[0])
        if v is None:
            return names[0]
        return f"{names[0]} ({_fmt(v)}{_typical_suffix(names[0], ctx)})"
    prefix = _common_prefix(names)
    return f"{prefix}* ({len(names)} features)" if prefix else f"{len(names)} other features"


def _common_prefix(names: Sequence[str]) -> str:
    parts = [n.split(".") for n in names]
    out: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        out.append(level[0])
    return ".".join(out) + "." if out else ""


def _plural(word: str, n: int) -> str:
    if n == 1:
        return word
    irregular = {"person": "people", "knife": "knives", "mouse": "mice", "sheep": "sheep",
                 "skis": "skis", "scissors": "scissors", "skateboard": "skateboards"}  # fmt: skip
    head, _, last = word.rpartition(" ")
    if last in irregular:
        plural = irregular[last]
    elif last.endswith(("s", "sh", "ch", "x")):
        plural = f"{last}es"
    else:
        plural = f"{last}s"
    return f"{head} {plural}" if head else plural


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _compare(level: int, more: str, less: str) -> str:
    """ "darker than nine posters in ten" from a :meth:`CueContext.level` (empty if typical)."""
    if level == 0:
        return ""
    word = more if level > 0 else less
    return f"{word} than {'nine posters in ten' if abs(level) == 2 else 'most posters'}"


def _share_words(share: float) -> str:
    return "small" if share < 0.01 else f"{share:.0%} of the poster"


# objects


def _count(ctx: CueContext, name: str) -> int | None:
    v = ctx.value(name)
    return None if v is None else int(round(v))


def objects_summary(ctx: CueContext, limit: int = 6) -> str:
    """ "detected: knife x1, person x2" from this poster's detections (or its counts)."""
    counts: dict[str, int] = {}
    if ctx.objects:
        for d in ctx.objects:
            counts[d.label] = counts.get(d.label, 0) + 1
    else:
        for name, v in ctx.values.items():
            m = _OBJECT.match(name)
            if m and m.group(2) == "count" and v and v > 0:
                counts[m.group(1).replace("_", " ")] = int(round(v))
    if not counts:
        return "no objects detected"
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{label} x{n}" for label, n in items[:limit])
    if len(items) > limit:
        text += f", +{len(items) - limit} more kinds"
    return f"detected: {text}"


def _describe_objects(rest: str, ctx: CueContext) -> str:
    faces = _face_count(ctx) or 0
    if rest == "overall":
        total = _count(ctx, "objects.total")
        largest = ctx.value("objects.largest_area")
        if total is None:
            return "the objects found"
        if total == 0:
            # Faces come from another detector: say so, or "nothing" contradicts them.
            return "no objects detected apart from faces" if faces else "no objects detected"
        text = f"{total} {_plural('object', total)} detected"
        if largest is not None and largest > 0:
            text += f"; the largest covers {_share_words(largest)}"
        return text
    label = rest.replace("_", " ")
    count = _count(ctx, f"objects.{rest}.count")
    area = ctx.value(f"objects.{rest}.area")
    if count is None or count <= 0:
        if label == "person" and faces:
            # A close-up face is no full figure to the object detector.
            return (
                "a face is visible, but no full figure"
                if faces == 1
                else "faces are visible, but no full figures"
            )
        return f"no {label} detected"
    if count == 1:
        text = f"{_article(label)} {label} is visible"
    else:
        text = f"{count} {_plural(label, count)} are visible"
    if area is not None and area > 0:
        together = "" if count == 1 or area < 0.01 else "together "
        text += f" ({together}{_share_words(area)})"
    return text


# faces


def _face_count(ctx: CueContext) -> int | None:
    if ctx.faces is not None:
        return len(ctx.faces)
    v = ctx.value("faces.count")
    return None if v is None else int(round(v))


def _largest_face(ctx: CueContext) -> Detection | None:
    if not ctx.faces:
        return None
    return max(ctx.faces, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))


def top_expression(face: Detection) -> tuple[str, float] | None:
    """The most probable expression of a face detection, as (name, probability)."""
    probs = {k: float(v) for k, v in face.extra.items() if k in EXPRESSION_WORDS}
    if not probs:
        return None
    return max(probs.items(), key=lambda kv: kv[1])


def faces_summary(ctx: CueContext) -> str:
    """ "a large face looking afraid (80% of the poster)", "3 faces; the largest looks
    happy and is small"."""
    n = _face_count(ctx)
    if n is None:
        return "the faces"
    if n == 0:
        people = _count(ctx, "objects.person.count") or 0
        return "no face found, though people are visible" if people else "no faces found"
    face = _largest_face(ctx)
    share: float | None
    look: str | None = None
    if face is not None:
        w, h = ctx.size
        share = (face.box[2] - face.box[0]) * (face.box[3] - face.box[1]) / max(w * h, 1)
        top = top_expression(face)
        look = EXPRESSION_WORDS[top[0]] if top is not None else None
    else:
        share = ctx.value("faces.largest_area")
    size = "" if share is None else "large " if share >= 0.25 else "small " if share < 0.02 else ""
    if n == 1:
        text = f"{_article(size or 'face')} {size}face"
        if look:
            text += f" looking {look}"
        if share is not None and share >= 0.02:
            text += f" ({share:.0%} of the poster)"
        return text
    text = f"{n} faces"
    clauses = [f"looks {look}"] if look else []
    if share is not None and share > 0:
        clauses.append("is small" if share < 0.02 else f"covers {share:.0%} of the poster")
    if clauses:
        text += "; the largest " + " and ".join(clauses)
    return text


def _describe_faces(rest: str, names: Sequence[str], ctx: CueContext) -> str:
    if rest == "layout":
        return faces_summary(ctx)
    expr = rest
    word = EXPRESSION_WORDS.get(expr, expr)
    n = _face_count(ctx)
    if n == 0:
        return f"no face to look {word}"
    name = names[0] if names else None
    v = ctx.value(name) if name else None
    if v is None:
        return f"faces looking {word}"
    # faces.<expr> is the area-weighted mean over the faces: "on average" when several.
    one = n == 1
    who = "the face" if one else "the faces"
    if v < 0.1:
        text = f"{who} {'does' if one else 'do'} not look {word}"
    else:
        how = "" if v >= 0.3 else "a little "
        text = f"{who} {'looks' if one else 'look'} {how}{word}"
    typical = ctx.typical(name) if name else None
    if typical is not None:
        if v > max(1.5 * typical, typical + 0.05):
            text += " (more than on a typical poster)"
        elif v < typical / 1.5 and typical - v > 0.05:
            text += " (less than on a typical poster)"
    return text


# colour


_LEVEL_WORDS: dict[str, tuple[str, str, str, str, str, str]] = {
    # aspect: (no value, low, typical, high, more-than, less-than)
    "brightness": ("brightness", "mostly dark", "medium brightness", "mostly bright",
                   "brighter", "darker"),
    "contrast": ("contrast", "soft, low contrast", "ordinary contrast",
                 "strong contrast between light and dark", "more contrast", "less contrast"),
    "saturation": ("colour strength", "muted, greyish colours", "moderately strong colours",
                   "vivid colours", "more vivid", "more muted"),
    "colorfulness": ("colourfulness", "few, plain colours", "an ordinary mix of colours",
                     "very colourful", "more colourful", "less colourful"),
    "warmth": ("warm colours", "little warm colour", "some warm colour", "lots of warm colour",
               "warmer", "cooler"),
}  # fmt: skip
_MAIN_FEATURE: dict[str, tuple[str, ...]] = {
    "brightness": ("color.brightness", "color.dark_ratio"),
    "contrast": ("color.contrast",),
    "saturation": ("color.saturation.mean", "color.saturation"),
    "colorfulness": ("color.colorfulness",),
    "warmth": ("color.warm_ratio",),
}
#: Hue bins of ``color.hsv_hist`` (8 bins of 45 degrees centred on red).
HUE_BIN_NAMES: tuple[str, ...] = (
    "red", "orange/yellow", "yellow-green", "green", "cyan", "blue", "purple", "pink",
)  # fmt: skip
_HSV_BIN = re.compile(r"^color\.hsv_hist\.h(\d+)_s(\d+)_v(\d+)$")
_GRID_CELL = re.compile(r"^color\.grid\.r(\d+)c(\d+)\.(L|a|b)$")


def _describe_color(aspect: str, names: Sequence[str], ctx: CueContext) -> str:
    if aspect in _LEVEL_WORDS:
        return _describe_level(aspect, names, ctx)
    if aspect == "palette":
        words = _palette_words(ctx)
        return f"main colours: {words}" if words else "the main colours"
    if aspect == "hue":
        return _hue_words(names, ctx) or "the mix of colours"
    if aspect == "layout":
        return _layout_words(names, ctx) or "which colours sit where on the poster"
    if aspect == "stats":
        return _cast_words(ctx) or "the overall colour cast"
    return _describe_generic(names, ctx)


def _describe_level(aspect: str, names: Sequence[str], ctx: CueContext) -> str:
    label, low, mid, high, more, less = _LEVEL_WORDS[aspect]
    main = next((n for n in _MAIN_FEATURE[aspect] if n in names), names[0])
    v = ctx.value(main)
    if v is None:
        return label
    level = ctx.level(main)
    words = low if level < 0 else high if level > 0 else mid
    if abs(level) == 2 and words != mid and not words.startswith("very "):
        words = f"very {words.removeprefix('mostly ')}"
    details: list[str] = []
    if aspect == "brightness":
        dark = ctx.value("color.dark_ratio") if "color.dark_ratio" in names else None
        if dark is not None and dark >= 0.05:
            details.append(f"{dark:.0%} of the poster is near-black")
    elif aspect == "warmth":
        details.append(f"reds, oranges and yellows cover {v:.0%} of the poster")
    comparison = _compare(level, more, less)
    if comparison:
        details.append(comparison)
    return f"{words} ({'; '.join(details)})" if details else words


def _palette_words(ctx: CueContext) -> str:
    """ "dark blue 40%, orange 22%" from the poster's dominant colours, when known."""
    if not ctx.palette:
        return ""
    parts = [f"{colour_name(rgb)} {share:.0%}" for rgb, share in ctx.palette if share >= 0.05]
    return ", ".join(parts[:3])


def _hue_words(names: Sequence[str], ctx: CueContext) -> str:
    """ "coloured areas are mostly red (30% of the poster) and blue (12%)" from the HSV
    histogram."""
    by_hue: dict[int, float] = {}
    for n in names:
        m = _HSV_BIN.match(n)
        v = ctx.value(n)
        # Only coloured pixels: saturation and value bins above the lowest.
        if m and v is not None and int(m.group(2)) > 0 and int(m.group(3)) > 0:
            h = int(m.group(1))
            by_hue[h] = by_hue.get(h, 0.0) + v
    if not by_hue:
        return ""
    total = sum(by_hue.values())
    if total < 0.05:
        return "hardly any colour: mostly greys, black and white"
    top = sorted(by_hue.items(), key=lambda kv: -kv[1])
    parts = [
        (HUE_BIN_NAMES[h] if h < len(HUE_BIN_NAMES) else f"hue {h}", share)
        for h, share in top[:2]
        if share >= 0.03
    ]
    if not parts:
        return "only small touches of colour"
    first = f"{parts[0][0]} ({parts[0][1]:.0%} of the poster)"
    rest = f" and {parts[1][0]} ({parts[1][1]:.0%})" if len(parts) > 1 else ""
    return f"coloured areas are mostly {first}{rest}"


def _layout_words(names: Sequence[str], ctx: CueContext) -> str:
    """ "black at the top, dark red in the middle, orange at the bottom" from the colour
    of each third of the poster (its cells' dominant colours, by majority)."""
    cells: dict[tuple[int, int], dict[str, float]] = {}
    for n in names:
        m = _GRID_CELL.match(n)
        v = ctx.value(n)
        if m and v is not None:
            cells.setdefault((int(m.group(1)), int(m.group(2))), {})[m.group(3)] = v
    rows: dict[int, list[str]] = {}
    for (r, _c), lab in sorted(cells.items()):
        if len(lab) == 3:
            rows.setdefault(r, []).append(colour_name(lab_to_rgb(lab["L"], lab["a"], lab["b"])))
    if len(rows) < 2:
        return ""
    picked = []
    for r in sorted(rows):
        names_r = rows[r]
        best = max(names_r, key=lambda x: (names_r.count(x), x == names_r[len(names_r) // 2]))
        picked.append(best)
    if len(set(picked)) == 1:
        return f"{picked[0]} from top to bottom"
    places: tuple[str, ...] = ("at the top", "in the middle", "at the bottom")
    if len(picked) != 3:
        middle = tuple(f"in band {i + 1} from the top" for i in range(1, len(picked) - 1))
        places = ("at the top", *middle, "at the bottom")
    return ", ".join(f"{name} {place}" for name, place in zip(picked, places, strict=True))


def _cast_words(ctx: CueContext) -> str:
    """ "the colours average out to dark brown, with a wide range from light to dark"."""
    lab = [ctx.value(f"color.lab.{ch}.mean") for ch in ("L", "a", "b")]
    if any(v is None for v in lab):
        return ""
    L, a, b = (float(v) for v in lab)  # type: ignore[arg-type]
    text = f"the colours average out to {colour_name(lab_to_rgb(L, a, b))}"
    spread = ctx.level("color.lab.L.std")
    if spread > 0:
        text += ", with a wide range from light to dark"
    elif spread < 0:
        text += ", with little range from light to dark"
    return text


# detail and lines (GIST)


def _describe_gist(rest: str, names: Sequence[str], ctx: CueContext) -> str:
    got = _mean_value(names, ctx)
    kind, _, where = rest.partition(".")
    words: tuple[str, ...]
    if kind == "texture":
        half = {"upper": "top", "lower": "bottom"}.get(where, where)
        place = f" in the {half} half"
        what = "fine detail"
        words = ("little fine detail", "an ordinary amount of fine detail", "lots of fine detail")
    elif kind == "structure":
        place = ""
        what = f"{where} lines and edges"
        words = tuple(f"{w} {where} lines and edges" for w in ("few", "some", "strong"))
    else:
        return "fine detail and edges"
    typ = got[1] if got is not None else None
    if got is None or typ is None or typ <= 0:
        return f"{what}{place}"
    ratio = got[0] / typ
    if ratio >= 1.2:
        return f"{words[2]}{place} (more than a typical poster)"
    if ratio <= 0.83:
        smooth = ", smooth" if kind == "texture" else ""
        return f"{words[0]}{place}{smooth} (less than a typical poster)"
    return f"{words[1]}{place}"


def _mean_value(names: Sequence[str], ctx: CueContext) -> tuple[float, float | None] | None:
    """Mean value over ``names`` on this poster and the mean of their typical values."""
    got = [v for v in (ctx.value(n) for n in names) if v is not None]
    if not got:
        return None
    typ = [t for t in (ctx.typical(n) for n in names) if t is not None]
    return float(np.mean(got)), (float(np.mean(typ)) if typ else None)


# colour names


def lab_to_rgb(L: float, a: float, b: float) -> tuple[float, float, float]:
    """CIELab (D65; L 0..100) -> sRGB 0..255, clipped: for naming colours, not for printing."""
    fy = (L + 16.0) / 116.0
    fx = fy + a / 500.0
    fz = fy - b / 200.0

    def finv(t: float) -> float:
        return t**3 if t > 6.0 / 29.0 else 3 * (6.0 / 29.0) ** 2 * (t - 4.0 / 29.0)

    x, y, z = 0.95047 * finv(fx), finv(fy), 1.08883 * finv(fz)
    lin = (
        3.2404542 * x - 1.5371385 * y - 0.4985314 * z,
        -0.9692660 * x + 1.8760108 * y + 0.0415560 * z,
        0.0556434 * x - 0.2040259 * y + 1.0572252 * z,
    )

    def gamma(c: float) -> float:
        c = min(max(c, 0.0), 1.0)
        return 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055

    r, g, bl = (gamma(c) * 255.0 for c in lin)
    return r, g, bl


def colour_name(rgb: Sequence[float]) -> str:
    """A short English name for an sRGB colour (0..255), e.g. "dark blue", "orange"."""
    import colorsys

    r, g, b = (max(0.0, min(255.0, float(c))) / 255.0 for c in rgb[:3])
    h, lightness, s = colorsys.rgb_to_hls(r, g, b)
    if lightness < 0.1:
        return "black"
    if lightness > 0.93:
        return "white"
    if s < 0.15 or (lightness < 0.22 and s < 0.35):
        if lightness < 0.3:
            return "dark grey"
        return "light grey" if lightness > 0.7 else "grey"
    deg = h * 360.0
    bands = (
        (15, "red"), (40, "orange"), (68, "yellow"), (160, "green"), (195, "teal"),
        (255, "blue"), (290, "purple"), (335, "pink"), (361, "red"),
    )  # fmt: skip
    hue = next(name for limit, name in bands if deg < limit)
    if hue in ("orange", "yellow") and lightness < 0.35:
        return "brown"
    if lightness < 0.3:
        return f"dark {hue}"
    if lightness > 0.75:
        return f"light {hue}"
    return f"greyish {hue}" if s < 0.3 else hue
