"""The card: a valid PNG of the announced size, the poster drawn in it, boxes and bars visible."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import make_poster
from PIL import Image

from postergenre.analysis import Analysis, GenreExplanation
from postergenre.card import (
    FACE_BOX,
    OBJECT_BOX,
    THRESHOLD,
    CardStyle,
    card_size,
    poster_box,
    render_card,
    save_card,
)
from postergenre.cues import CueContext, group_contributions, group_totals
from postergenre.errors import ConfigError
from postergenre.features.base import Detection

NAMES = [
    "objects.person.count",
    "objects.person.area",
    "faces.count",
    "faces.fear",
    "color.brightness",
    "cnn.embedding",
    "gist.s0.o0.r0c0",
]


def _analysis(
    image: np.ndarray, detections: bool = True, gradcam: bool = False, n_cues: int = len(NAMES)
) -> Analysis:
    h, w = image.shape[:2]
    probs = {"Horror": 0.76, "Action": 0.22, "Documentary": 0.02, "Romance": 0.001}
    thresholds = {"Horror": 0.4, "Action": 0.3, "Documentary": 0.2, "Romance": 0.25}
    ctx = CueContext(values={"objects.person.count": 1.0, "color.brightness": 0.2})
    contrib = np.array([0.8, 0.1, -0.2, 0.5, 0.4, 0.3, -0.05])[:n_cues]
    cues = group_contributions(NAMES[:n_cues], contrib, ctx)
    e = GenreExplanation(
        "Horror", 0.76, 0.4, -1.2, -1.2 + float(contrib.sum()), tuple(cues), group_totals(cues)
    )
    a = Analysis(
        path="some/dir/poster.jpg",
        size=(w, h),
        probabilities=probs,
        thresholds=thresholds,
        predicted=["Horror"],
        explanations={"Horror": e},
        palette=[((20, 20, 30), 0.6), ((200, 30, 30), 0.3), ((240, 240, 240), 0.1)],
        image=image,
    )
    if detections:
        a.objects = [Detection("person", 0.9, (w * 0.5, h * 0.5, w * 0.9, h * 0.95))]
        a.faces = [Detection("face", 0.95, (w * 0.55, h * 0.55, w * 0.7, h * 0.65), {"fear": 0.6})]
    if gradcam:
        heat = np.zeros((h, w), np.float32)
        heat[: h // 3, : w // 3] = 1.0
        a.gradcam, a.gradcam_genre = heat, "Horror"
    return a


def test_card_is_a_png_of_the_announced_size_with_the_poster_in_it(tmp_path: Path) -> None:
    poster = make_poster(3)
    a = _analysis(poster)
    path = tmp_path / "cards" / "card.png"
    save_card(a, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    card = Image.open(io.BytesIO(data))
    assert card.format == "PNG" and card.mode == "RGB"
    assert card.size == card_size(a)
    x0, y0, x1, y1 = poster_box(a)
    # Scaled up, about 3x for a 160x236 poster, with room beside it for the bars.
    assert y1 - y0 == CardStyle().poster_height and card.width > x1 + 400
    got = np.asarray(card.crop((x0, y0, x1, y1))).astype(int)
    want = np.asarray(
        Image.fromarray(poster).resize((x1 - x0, y1 - y0), Image.Resampling.BICUBIC)
    ).astype(int)
    # The upper-left quarter has no boxes: it is the poster, pixel for pixel.
    qh, qw = (y1 - y0) // 2 - 30, (x1 - x0) // 2 - 10
    assert np.array_equal(got[30:qh, :qw], want[30:qh, :qw])
    # Box outlines are drawn in their colours where the detections are.
    scale = (y1 - y0) / poster.shape[0]
    ox = round(a.objects[0].box[0] * scale) + 1  # type: ignore[index]
    oy = round(a.objects[0].box[3] * scale) - 1  # type: ignore[index]
    assert tuple(got[oy, ox]) == OBJECT_BOX
    fx = round(a.faces[0].box[2] * scale) - 1  # type: ignore[index]
    fy = round((a.faces[0].box[1] + a.faces[0].box[3]) / 2 * scale)  # type: ignore[index]
    assert tuple(got[fy, fx]) == FACE_BOX


def test_card_shows_palette_swatches_and_probability_bars() -> None:
    a = _analysis(make_poster(4), detections=False)
    card = np.asarray(render_card(a)).astype(int)
    x0, y0, x1, y1 = poster_box(a)
    # The dominant colour's swatch sits under the poster, as wide as its share.
    below = card[y1 + 10 : y1 + 120, x0:x1]
    darkest = (np.abs(below - np.array([20, 20, 30])).sum(axis=2) == 0).any(axis=0)
    assert 0.5 < darkest.mean() < 0.7
    # Predicted genre bar colour appears on the right panel.
    right = card[:, x1 + 20 :]
    assert (np.abs(right - np.array([36, 99, 160])).sum(axis=2) == 0).sum() > 100


def test_card_size_grows_with_gradcam() -> None:
    poster = make_poster(5)
    plain = card_size(_analysis(poster))
    with_cam = _analysis(poster, gradcam=True)
    assert render_card(with_cam).size == card_size(with_cam)
    assert card_size(with_cam)[1] >= plain[1]
    assert render_card(with_cam, CardStyle(poster_height=300)).size[1] < plain[1]


def test_card_grows_with_cue_count() -> None:
    # A short poster, so the cue panel, not the poster, sets the card's height.
    style = CardStyle(poster_height=200, cues_per_genre=6)
    poster = make_poster(5)
    heights = []
    for n in (1, 3, 5, 7):
        a = _analysis(poster, detections=False, n_cues=n)
        shown = len(a.explanations["Horror"].top(style.cues_per_genre)[0])
        assert shown == len(a.explanations["Horror"].cues)  # every cue of these is drawn
        size = card_size(a, style)
        assert render_card(a, style).size == size
        heights.append(size[1])
    assert heights == sorted(set(heights)), heights  # strictly taller with each cue added
    # And with the cues a style shows, for the same analysis.
    a = _analysis(poster, detections=False)
    shown = [card_size(a, CardStyle(poster_height=200, cues_per_genre=k))[1] for k in (1, 3, 5)]
    assert shown == sorted(set(shown)), shown


def test_card_needs_the_pixels() -> None:
    a = _analysis(make_poster(6))
    a.image = None
    with pytest.raises(ValueError, match="keep_image"):
        render_card(a)


def _explained(a: Analysis, genre: str, p: float, threshold: float) -> None:
    """Add an explanation of ``genre`` (the Horror one's cues, another probability)."""
    horror = a.explanations["Horror"]
    logit = float(np.log(p / (1 - p)))
    a.explanations[genre] = GenreExplanation(
        genre, p, threshold, logit - sum(c.contribution for c in horror.cues), logit,
        horror.cues, horror.groups,
    )  # fmt: skip


def _drawn_text(a: Analysis, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every string the card draws, in drawing order."""
    from PIL import ImageDraw

    drawn: list[str] = []
    real = ImageDraw.ImageDraw.text

    def record(
        self: ImageDraw.ImageDraw, xy: object, text: str, *args: object, **kw: object
    ) -> None:
        drawn.append(str(text))
        real(self, xy, text, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", record)
    card = render_card(a)
    assert card.size == card_size(a)  # the layout counted every line it drew
    return drawn


def test_card_words_are_plain_and_effects_in_points(monkeypatch: pytest.MonkeyPatch) -> None:
    a = _analysis(make_poster(7))
    drawn = " | ".join(_drawn_text(a, monkeypatch))
    assert "log-odds" not in drawn and "CNN" not in drawn and "embedding" not in drawn
    e = a.explanations["Horror"]
    top = e.top(CardStyle().cues_per_genre)[0][0]
    effect = 100 * e.effect(top.contribution)
    assert f"{effect:+.0f} pts" in drawn or f"{effect:+.1f} pts" in drawn
    assert f"a typical poster: {e.base_probability:.0%}" in drawn


def test_card_explains_every_predicted_genre_and_counts_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = _analysis(make_poster(8), detections=False)
    a.probabilities = {"Horror": 0.76, "Action": 0.5, "Documentary": 0.45, "Romance": 0.4}
    a.predicted = ["Horror", "Action", "Documentary", "Romance"]  # 4 > max_genres_explained
    for genre in a.predicted[1:]:
        _explained(a, genre, a.probabilities[genre], 0.3)
    drawn = _drawn_text(a, monkeypatch)
    whys = [t for t in drawn if t.startswith("Why ")]
    assert [w.split(" (")[0] for w in whys] == [f"Why {g}" for g in a.predicted]
    assert not any("more explained" in t for t in drawn)
    # Explained genres beyond the predicted ones (--top-k): drawn up to the limit, then counted.
    a.predicted = ["Horror"]
    drawn = _drawn_text(a, monkeypatch)
    assert len([t for t in drawn if t.startswith("Why ")]) == CardStyle().max_genres_explained
    assert any(t.startswith("+1 more explained genre not shown") for t in drawn)


def test_card_marks_a_genre_the_model_never_predicts(monkeypatch: pytest.MonkeyPatch) -> None:
    a = _analysis(make_poster(9), detections=False)
    a.thresholds["Romance"] = 1.000000001
    drawn = _drawn_text(a, monkeypatch)
    assert "not predicted by this model" in drawn
    card = np.asarray(render_card(a)).astype(int)
    x0 = poster_box(a)[2]
    # No threshold tick in the Romance row (last genre row), one in every other row.
    s = CardStyle()
    top = s.margin + s.title_size + 10 + (s.small_size + 4) + 14
    ticks = [
        (np.abs(card[top + k * s.row_height : top + (k + 1) * s.row_height, x0:]
                - np.array(THRESHOLD)).sum(axis=2) == 0).any()
        for k in range(4)
    ]  # fmt: skip
    assert ticks == [True, True, True, False]


def test_card_file_format_follows_the_name(tmp_path: Path) -> None:
    a = _analysis(make_poster(10), detections=False)
    save_card(a, tmp_path / "card.jpg")
    with Image.open(tmp_path / "card.jpg") as im:
        assert im.format == "JPEG" and im.size == card_size(a)
    save_card(a, tmp_path / "card.PNG")
    assert (tmp_path / "card.PNG").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match=r"expected a \.png or \.jpg file name, got \.gif"):
        save_card(a, tmp_path / "card.gif")
    assert not (tmp_path / "card.gif").exists()
