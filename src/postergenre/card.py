"""A one-picture summary of an analysis: the PNG ``postergenre analyze --card`` writes.

Layout (left to right): the poster scaled up, with object boxes (amber) and face boxes
(cyan, labelled with their strongest expression), the dominant colours under it and an
optional Grad-CAM thumbnail; then the genre bars (threshold marked, predicted genres in
bold colour, genres the model never predicts marked so) and, per explained genre (every
predicted one), its strongest cues in plain words with how many percentage points each
moved the probability (a green bar raised it, a red one lowered it).

Written as PNG, or JPEG for a ``.jpg``/``.jpeg`` name. Only Pillow is used, with its
built-in scalable font (no font files, no downloads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from postergenre.cues import NOT_PREDICTED, points, top_expression
from postergenre.errors import ConfigError

if TYPE_CHECKING:
    from PIL import Image, ImageDraw, ImageFont

    from postergenre.analysis import Analysis, GenreExplanation
    from postergenre.features.base import Detection

BACKGROUND = (250, 250, 247)
INK = (30, 30, 30)
MUTED = (120, 120, 120)
GRID = (225, 225, 220)
BAR = (176, 190, 205)
BAR_PREDICTED = (36, 99, 160)
THRESHOLD = (200, 40, 40)
RAISE = (46, 140, 70)
LOWER = (196, 64, 52)
OBJECT_BOX = (255, 176, 0)
FACE_BOX = (0, 200, 230)


@dataclass(frozen=True)
class CardStyle:
    """Sizes in pixels. ``poster_height``: the poster is scaled (up or down) to it."""

    poster_height: int = 720
    panel_width: int = 600
    margin: int = 24
    title_size: int = 22
    text_size: int = 15
    small_size: int = 13
    row_height: int = 22
    cues_per_genre: int = 4
    #: Explained genres drawn beyond the predicted ones (every predicted one is drawn).
    max_genres_explained: int = 3
    max_boxes: int = 12


def render_card(analysis: Analysis, style: CardStyle | None = None) -> Image.Image:
    """Draw the card of an analysis made with ``explain=True`` (needs ``analysis.image``)."""
    from PIL import Image, ImageDraw

    s = style or CardStyle()
    if analysis.image is None:
        raise ValueError("render_card needs the poster pixels: analyse with keep_image=True")
    fonts = _Fonts(s)
    lay = _layout(analysis, s, fonts)
    card = Image.new("RGB", lay.size, BACKGROUND)
    card.paste(_poster_panel(analysis, s, fonts), (s.margin, s.margin))
    draw = ImageDraw.Draw(card)
    y = s.margin + lay.poster[1]
    if lay.palette_h:
        _draw_palette(draw, analysis, s.margin, y, lay.poster[0], s, fonts)
    panel_x = s.margin * 2 + lay.poster[0]
    _draw_panel(draw, analysis, panel_x, s.margin, s, fonts)
    if lay.cam_at is not None:
        assert analysis.gradcam is not None
        x, cy = lay.cam_at
        cy += 12
        text = f"where the overall look spoke for {analysis.gradcam_genre}"
        draw.text((x, cy), text, fill=MUTED, font=fonts.small)
        thumb = _gradcam_overlay(analysis.image, analysis.gradcam, lay.cam_h)
        card.paste(thumb, (x, cy + s.small_size + 4))
    return card


@dataclass(frozen=True)
class _Layout:
    size: tuple[int, int]
    poster: tuple[int, int]
    palette_h: int
    cam_h: int
    cam_at: tuple[int, int] | None  # top-left of the Grad-CAM block (its caption first)


def _layout(a: Analysis, s: CardStyle, fonts: _Fonts) -> _Layout:
    """Where everything goes. The Grad-CAM thumbnail takes the free space under the cues
    when there is room beside the poster, else it goes under the palette."""
    pw, ph = _scaled_size(a.size, s.poster_height)
    palette_h = (12 + s.small_size + 4 + _SWATCH_H + 4 + s.small_size) if a.palette else 0
    left_h = ph + palette_h
    panel_h = _panel_height(a, s, fonts)
    cam_h = 0
    cam_at = None
    if a.gradcam is not None:
        caption = 12 + s.small_size + 4
        room = left_h - panel_h - caption - 8
        if room >= 160:  # enough free space under the cues for a readable thumbnail
            cam_h = min(room, 300)
            cam_at = (s.margin * 2 + pw, s.margin + panel_h)
            panel_h += caption + cam_h
        else:
            cam_h = min(260, s.poster_height // 2)
            cam_at = (s.margin, s.margin + left_h)
            left_h += caption + cam_h
    width = s.margin * 3 + pw + s.panel_width
    height = s.margin * 2 + max(left_h, panel_h)
    return _Layout((width, height), (pw, ph), palette_h, cam_h, cam_at)


#: Card file formats by file extension; a name without one gets PNG.
FORMATS: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", "": "PNG"}


def save_card(
    analysis: Analysis, path: str | os.PathLike[str], style: CardStyle | None = None
) -> None:
    """Render and write the card, as JPEG for a .jpg/.jpeg name, else as PNG (parent
    folders are created). Raises ConfigError for another extension."""
    from pathlib import Path

    out = Path(path)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"card {out}: expected a .png or .jpg file name, got {out.suffix}",
            hint="name the card .png or .jpg",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    card = render_card(analysis, style)
    if fmt == "JPEG":
        card.save(out, format="JPEG", quality=92)
    else:
        card.save(out, format="PNG", optimize=False)


def poster_box(analysis: Analysis, style: CardStyle | None = None) -> tuple[int, int, int, int]:
    """Where the scaled poster lies on the card, (x0, y0, x1, y1): for tests and callers."""
    s = style or CardStyle()
    w, h = _scaled_size(analysis.size, s.poster_height)
    return s.margin, s.margin, s.margin + w, s.margin + h


# -- pieces -------------------------------------------------------------------------------------


class _Fonts:
    def __init__(self, s: CardStyle) -> None:
        self.title = _font(s.title_size)
        self.text = _font(s.text_size)
        self.small = _font(s.small_size)


def _font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's built-in scalable font (FreeType; no font file, no download)."""
    from PIL import ImageFont

    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow built without FreeType
        raise RuntimeError("drawing a card needs Pillow with FreeType support")
    return font


def _scaled_size(size: tuple[int, int], height: int) -> tuple[int, int]:
    w, h = size
    scale = height / max(h, 1)
    return max(1, round(w * scale)), height


def _poster_panel(a: Analysis, s: CardStyle, fonts: _Fonts) -> Image.Image:
    from PIL import Image, ImageDraw

    assert a.image is not None
    img = Image.fromarray(a.image)
    w, h = _scaled_size(a.size, s.poster_height)
    scale = h / a.image.shape[0]
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
    img = img.resize((w, h), resample)
    draw = ImageDraw.Draw(img)
    boxes = sorted(a.objects or [], key=lambda d: -d.score)[: s.max_boxes]
    labelled: list[tuple[Detection, str, tuple[int, int, int]]] = [
        (d, f"{d.label} {d.score:.2f}", OBJECT_BOX) for d in boxes
    ]
    for d in a.faces or []:
        top = top_expression(d)
        labelled.append((d, f"face: {top[0]} {top[1]:.2f}" if top else "face", FACE_BOX))
    # All outlines first, then all labels: no box is drawn across another's label.
    for d, _, colour in labelled:
        x0, y0, x1, y1 = (v * scale for v in d.box)
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=3)
    for d, label, colour in labelled:
        _label(draw, d.box, scale, label, colour, fonts.small)
    return img


def _label(
    draw: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    scale: float,
    label: str,
    colour: tuple[int, int, int],
    font: ImageFont.FreeTypeFont,
) -> None:
    """A filled tag above the box's top-left corner (inside it when at the poster's top)."""
    x0, y0 = box[0] * scale, box[1] * scale
    tw = draw.textlength(label, font=font)
    th = font.size + 4
    ty = y0 - th if y0 - th >= 0 else y0
    draw.rectangle((x0, ty, x0 + tw + 6, ty + th), fill=colour)
    draw.text((x0 + 3, ty + 1), label, fill=(0, 0, 0), font=font)


_SWATCH_H = 46


def _draw_palette(
    draw: ImageDraw.ImageDraw, a: Analysis, x0: int, y: int, width: int, s: CardStyle,
    fonts: _Fonts,
) -> None:  # fmt: skip
    """Dominant colours as one strip, each swatch as wide as its share, under the poster."""
    assert a.palette is not None
    y += 12
    draw.text((x0, y), "dominant colours", fill=MUTED, font=fonts.small)
    y += s.small_size + 4
    x = float(x0)
    for rgb, share in a.palette:
        sw = share * width
        if sw >= 1:
            draw.rectangle((round(x), y, round(x + sw) - 1, y + _SWATCH_H), fill=tuple(rgb))
            if sw > 36:
                draw.text(
                    (round(x), y + _SWATCH_H + 4), f"{share:.0%}", fill=MUTED, font=fonts.small
                )
        x += sw
    draw.rectangle((x0, y, x0 + width - 1, y + _SWATCH_H), outline=GRID)


def _gradcam_overlay(image: np.ndarray, heat: np.ndarray, height: int) -> Image.Image:
    """The poster, greyed, with the heat map laid over it in warm colours."""
    from PIL import Image

    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    grey = image.astype(np.float32).mean(axis=2, keepdims=True).repeat(3, axis=2)
    hm = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    if hm.shape != (h, w):
        hm = np.asarray(Image.fromarray(hm).resize((w, h), Image.Resampling.BILINEAR))
    # A black-red-yellow ramp: hot spots read at a glance, even in greyscale print.
    colour = np.stack([np.clip(hm * 2, 0, 1), np.clip(hm * 2 - 1, 0, 1), np.zeros_like(hm)], 2)
    alpha = (0.15 + 0.6 * hm)[..., None]
    mixed = grey * 0.8 * (1 - alpha) + colour * 255.0 * alpha
    out = Image.fromarray(np.clip(mixed, 0, 255).astype(np.uint8))
    return out.resize((width, height), Image.Resampling.BILINEAR)


def _explained(a: Analysis, s: CardStyle) -> tuple[list[str], int]:
    """The explained genres the card draws (every predicted one, then others up to
    ``max_genres_explained`` in all) and how many explained genres it leaves out."""
    drawn = [g for g in a.explanations if g in a.predicted]
    for g in a.explanations:
        if g not in drawn and len(drawn) < s.max_genres_explained:
            drawn.append(g)
    return drawn, len(a.explanations) - len(drawn)


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    words = text.split()
    lines: list[str] = []
    line = ""
    for word in words:
        trial = f"{line} {word}".strip()
        if font.getlength(trial) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines or [""]


def _cue_text_width(s: CardStyle) -> float:
    return s.panel_width - 190


def _subtitle(a: Analysis) -> list[str]:
    """The lines under the title: the predicted set and why it is what it is."""
    if not a.predicted:
        lines = ["predicted: none (no genre reached its threshold)"]
    else:
        lines = [f"predicted: {', '.join(a.predicted)}"]
    below = a.predicted_below_threshold
    if below:
        lines.append(
            f"{', '.join(below)}: below the threshold, predicted as every poster gets at "
            f"least one genre"
        )
    lines[0] += f"   ({a.size_text})"
    return lines


def _notes(e: GenreExplanation, a: Analysis) -> list[str]:
    """Small lines under an explained genre's title."""
    notes = [
        f"a typical poster: {_pct(e.base_probability)}; bars: points each cue adds or takes away"
    ]
    if e.genre not in a.predicted:
        notes.append(
            NOT_PREDICTED if e.threshold > 1 else f"not predicted (threshold {_pct(e.threshold)})"
        )
    return notes


def _panel_height(a: Analysis, s: CardStyle, fonts: _Fonts) -> int:
    h = s.title_size + 10 + len(_subtitle(a)) * (s.small_size + 4) + 14  # title and subtitle
    h += len(a.probabilities) * s.row_height + 24
    drawn, hidden = _explained(a, s)
    for genre in drawn:
        e = a.explanations[genre]
        shown, _, n_other = e.top(s.cues_per_genre)
        h += s.text_size + 14 + len(_notes(e, a)) * (s.small_size + 4) + 4
        for cue in shown:
            h += len(_wrap(cue.text, fonts.small, _cue_text_width(s))) * (s.small_size + 3) + 5
        h += (s.small_size + 8) * (2 if n_other else 1) + 10
    if hidden:
        h += s.small_size + 8
    return h


def _pct(p: float) -> str:
    if 0 < p < 0.005:
        return "<1%"
    return f"{p:.0%}"


def _draw_panel(
    draw: ImageDraw.ImageDraw, a: Analysis, x: int, y: int, s: CardStyle, fonts: _Fonts
) -> None:
    width = s.panel_width
    title = os.path.basename(a.path) if a.path else "poster"
    draw.text((x, y), title, fill=INK, font=fonts.title)
    y += s.title_size + 10
    for line in _subtitle(a):
        draw.text((x, y), line, fill=MUTED, font=fonts.small)
        y += s.small_size + 4
    y += 14

    # Genre bars, most probable first; the tick is that genre's decision threshold.
    label_w = 120
    pct_w = 52
    bar_x0 = x + label_w
    bar_w = width - label_w - pct_w
    for genre, p in a.probabilities.items():
        predicted = genre in a.predicted
        font = fonts.text
        draw.text((x, y + 2), genre, fill=INK if predicted else MUTED, font=font)
        draw.rectangle((bar_x0, y + 4, bar_x0 + bar_w, y + s.row_height - 4), fill=GRID)
        if p > 0:
            draw.rectangle(
                (bar_x0, y + 4, bar_x0 + max(1, round(p * bar_w)), y + s.row_height - 4),
                fill=BAR_PREDICTED if predicted else BAR,
            )
        t = a.thresholds.get(genre)
        if t is not None and t > 1.0:
            # No tick off the bar's end: say it, where the bar has room.
            note_x = bar_x0 + max(1, round(p * bar_w)) + 6
            draw.text((note_x, y + 3), NOT_PREDICTED, fill=MUTED, font=fonts.small)
        elif t is not None:
            tx = bar_x0 + round(t * bar_w)
            draw.line((tx, y + 1, tx, y + s.row_height - 1), fill=THRESHOLD, width=2)
        draw.text((bar_x0 + bar_w + 8, y + 2), _pct(p), fill=INK if predicted else MUTED, font=font)
        y += s.row_height
    draw.text((bar_x0, y + 2), "| = decision threshold", fill=THRESHOLD, font=fonts.small)
    y += 24

    # Cues: the percentage points each moved the probability (with it minus without it),
    # bars scaled per genre so the strongest cue fills its half of the column.
    drawn, hidden = _explained(a, s)
    for genre in drawn:
        e = a.explanations[genre]
        shown, other, n_other = e.top(s.cues_per_genre)
        y += 14
        draw.text((x, y), f"Why {genre} ({_pct(e.probability)})", fill=INK, font=fonts.text)
        y += s.text_size + 4
        for note in _notes(e, a):
            draw.text((x, y), note, fill=MUTED, font=fonts.small)
            y += s.small_size + 4
        y += 4
        effects = [e.effect(c.contribution) for c in shown]
        other_effect = e.effect(other) if n_other else 0.0
        biggest = max([abs(v) for v in effects] + [abs(other_effect), 1e-9])
        bar_half = 50
        centre = x + width - bar_half - 66
        text_w = _cue_text_width(s)
        for cue, effect in zip(shown, effects, strict=True):
            lines = _wrap(cue.text, fonts.small, text_w)
            colour = RAISE if effect >= 0 else LOWER
            length = round(bar_half * abs(effect) / biggest)
            top = y + 2
            if effect >= 0:
                draw.rectangle((centre, top, centre + length, top + s.small_size - 2), fill=colour)
            else:
                draw.rectangle((centre - length, top, centre, top + s.small_size - 2), fill=colour)
            draw.line((centre, top - 2, centre, top + s.small_size), fill=MUTED)
            draw.text((centre + bar_half + 6, y), points(effect), fill=colour, font=fonts.small)
            for line in lines:
                draw.text((x + 8, y), line, fill=INK, font=fonts.small)
                y += s.small_size + 3
            y += 5
        if n_other:
            label = f"other cues ({n_other} together)"
            draw.text((x + 8, y), label, fill=MUTED, font=fonts.small)
            draw.text(
                (centre + bar_half + 6, y), points(other_effect), fill=MUTED, font=fonts.small
            )
            y += s.small_size + 8
        y += 10
    if hidden:
        more = f"+{hidden} more explained {'genre' if hidden == 1 else 'genres'} not shown"
        draw.text((x, y), f"{more} (see analyze --explain)", fill=MUTED, font=fonts.small)


def card_size(analysis: Analysis, style: CardStyle | None = None) -> tuple[int, int]:
    """The (width, height) :func:`render_card` produces, without drawing it."""
    s = style or CardStyle()
    return _layout(analysis, s, _Fonts(s)).size
