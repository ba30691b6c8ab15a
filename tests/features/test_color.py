"""color: dominant colours and shares, tone, colourfulness, warmth, layout grid, palette."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_poster

from postergenre.errors import ConfigError
from postergenre.features.color import ColorExtractor

H, W = 236, 160
RED = (220, 20, 30)


@pytest.fixture(scope="module")
def color() -> ColorExtractor:
    ext = ColorExtractor()
    ext.load("cpu")
    return ext


def features(ext: ColorExtractor, image: np.ndarray) -> dict[str, float]:
    return dict(zip(ext.feature_names(), ext.extract([image])[0].tolist(), strict=True))


def solid(rgb: tuple[int, int, int], h: int = H, w: int = W) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (h, w, 3)).copy()


def red_block_poster() -> np.ndarray:
    """70% of the area a red block, the rest a white band and a dark-blue band."""
    img = solid(RED)
    img[: int(H * 0.15)] = (245, 245, 245)
    img[int(H * 0.85) :] = (20, 30, 90)
    return img


def lab_of(rgb: tuple[int, int, int]) -> np.ndarray:
    import cv2

    px = np.array([[rgb]], dtype=np.float32) / 255.0
    return cv2.cvtColor(px, cv2.COLOR_RGB2Lab)[0, 0]


def test_a_red_block_is_the_top_dominant_colour_with_its_share(color: ColorExtractor) -> None:
    f = features(color, red_block_poster())
    lab = np.array([f["color.dominant1.L"], f["color.dominant1.a"], f["color.dominant1.b"]])
    assert np.abs(lab - lab_of(RED)).max() < 3.0
    assert f["color.dominant1.share"] == pytest.approx(0.70, abs=0.03)
    shares = [f[f"color.dominant{i}.share"] for i in range(1, 6)]
    assert shares == sorted(shares, reverse=True) and sum(shares) == pytest.approx(1.0, abs=1e-5)


def test_palette_gives_rgb_and_shares_largest_first(color: ColorExtractor) -> None:
    palette = color.palette(red_block_poster())
    assert len(palette) == 5
    (r, g, b), share = palette[0]
    assert abs(r - RED[0]) <= 6 and abs(g - RED[1]) <= 6 and abs(b - RED[2]) <= 6
    assert share == pytest.approx(0.70, abs=0.03)
    # The white and dark-blue bands come next, 15% each.
    assert sorted(round(s, 2) for _, s in palette[1:3]) == pytest.approx([0.15, 0.15], abs=0.02)


def test_a_flat_poster_has_one_colour_with_the_whole_share(color: ColorExtractor) -> None:
    f = features(color, solid((40, 160, 60)))
    assert f["color.dominant1.share"] == pytest.approx(1.0)
    assert all(f[f"color.dominant{i}.share"] == 0.0 for i in range(2, 6))
    assert f["color.contrast"] == pytest.approx(0.0, abs=1e-6)
    assert f["color.lab.L.skew"] == 0.0


def test_a_dark_poster_scores_darker_than_a_bright_one(color: ColorExtractor) -> None:
    dark = make_poster(1) // 5
    bright = (255 - (255 - make_poster(1).astype(np.int32)) // 5).astype(np.uint8)
    fd, fb = features(color, dark), features(color, bright)
    assert fd["color.brightness"] < 0.25 < 0.75 < fb["color.brightness"]
    assert fd["color.dark_ratio"] > 0.8 and fb["color.dark_ratio"] == 0.0
    assert fd["color.lab.L.mean"] < fb["color.lab.L.mean"]


def test_a_grey_poster_has_no_colourfulness_and_a_vivid_one_has_much(
    color: ColorExtractor,
) -> None:
    grey = make_poster(2).mean(axis=2).astype(np.uint8)[:, :, None].repeat(3, axis=2)
    fg = features(color, grey)
    assert fg["color.colorfulness"] < 1.0
    assert fg["color.saturation.mean"] < 0.02
    vivid = np.zeros((H, W, 3), dtype=np.uint8)
    vivid[:, : W // 3] = (255, 0, 0)
    vivid[:, W // 3 : 2 * W // 3] = (0, 255, 0)
    vivid[:, 2 * W // 3 :] = (0, 0, 255)
    assert features(color, vivid)["color.colorfulness"] > 100.0


def test_orange_is_warm_and_blue_is_not(color: ColorExtractor) -> None:
    assert features(color, solid((240, 140, 30)))["color.warm_ratio"] == pytest.approx(1.0)
    assert features(color, solid((30, 60, 200)))["color.warm_ratio"] == 0.0
    # A grey poster has no hue to be warm with.
    assert features(color, solid((128, 128, 128)))["color.warm_ratio"] == 0.0


def test_hsv_histogram_is_a_distribution_and_red_sits_in_hue_bin_0(color: ColorExtractor) -> None:
    f = features(color, solid((250, 10, 10)))
    hist = {k: v for k, v in f.items() if k.startswith("color.hsv_hist.")}
    assert len(hist) == 72 and sum(hist.values()) == pytest.approx(1.0, abs=1e-5)
    assert f["color.hsv_hist.h0_s2_v2"] == pytest.approx(1.0)
    # Pure blue (240 deg) is in the bin centred on 225 deg.
    assert features(color, solid((0, 0, 255)))["color.hsv_hist.h5_s2_v2"] == pytest.approx(1.0)


def test_grid_reports_each_cells_own_colour(color: ColorExtractor) -> None:
    img = solid(RED)
    img[: H // 3, : W // 3] = (20, 40, 220)  # top-left cell blue
    f = features(color, img)
    assert f["color.grid.r0c0.b"] < -40  # blue: strongly negative b
    assert f["color.grid.r2c2.a"] > 40  # red: strongly positive a
    top_left = np.array([f[f"color.grid.r0c0.{c}"] for c in "Lab"])
    assert np.abs(top_left - lab_of((20, 40, 220))).max() < 4.0


def test_names_are_readable_and_k_sets_the_dominant_count() -> None:
    names = ColorExtractor(k=3).feature_names()
    assert "color.dominant3.share" in names and "color.dominant4.share" not in names
    for name in ("color.brightness", "color.saturation.mean", "color.colorfulness",
                 "color.dark_ratio", "color.warm_ratio", "color.hsv_hist.h3_s1_v2",
                 "color.grid.r0c1.L", "color.contrast", "color.dominant1.L"):  # fmt: skip
        assert name in ColorExtractor().feature_names()
    with pytest.raises(ConfigError, match="k"):
        ColorExtractor(k=0)


def test_same_poster_same_features_in_any_batch(color: ColorExtractor) -> None:
    posters = [make_poster(i) for i in range(4)]
    batch = color.extract(posters)
    alone = np.stack([color.extract([p])[0] for p in posters])
    np.testing.assert_array_equal(batch, alone)
