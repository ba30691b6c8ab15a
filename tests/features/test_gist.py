"""gist: orientation and scale conventions, localisation, flat images, the fast path's accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_poster

from postergenre.features import gist as g
from postergenre.features.gist import GistExtractor

N = 128


@pytest.fixture(scope="module")
def gist() -> GistExtractor:
    ext = GistExtractor()
    ext.load("cpu")
    return ext


def energies(ext: GistExtractor, image: np.ndarray) -> np.ndarray:
    """(N_SCALES, N_ORIENT, GRID, GRID) energies of one image."""
    return ext.extract([image])[0].reshape(g.N_SCALES, g.N_ORIENT, g.GRID, g.GRID)


def stripes(angle_deg: float, period: float, size: int = N) -> np.ndarray:
    """Sinusoidal stripes whose intensity varies along direction ``angle_deg`` (x right, y down)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    a = np.deg2rad(angle_deg)
    wave = np.cos(2 * np.pi * (x * np.cos(a) + y * np.sin(a)) / period)
    grey = (127.5 + 100 * wave).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


@pytest.mark.parametrize(("angle", "orientation"), [(0, 0), (90, 4), (45, 2), (135, 6)])
def test_stripes_put_their_energy_in_the_matching_orientation(
    gist: GistExtractor, angle: float, orientation: int
) -> None:
    per_orientation = energies(gist, stripes(angle, period=8)).sum(axis=(0, 2, 3))
    assert int(per_orientation.argmax()) == orientation
    # ... and clearly: the orthogonal orientation gets little of it.
    assert per_orientation[(orientation + 4) % 8] < 0.1 * per_orientation[orientation]


def test_vertical_and_horizontal_stripes_differ(gist: GistExtractor) -> None:
    vertical = energies(gist, stripes(0, 8)).sum(axis=(0, 2, 3))
    horizontal = energies(gist, stripes(90, 8)).sum(axis=(0, 2, 3))
    assert vertical.argmax() == 0 and horizontal.argmax() == 4


@pytest.mark.parametrize(("period", "scale"), [(4, 0), (8, 1), (16, 2), (32, 3)])
def test_the_stripe_period_picks_the_scale(gist: GistExtractor, period: int, scale: int) -> None:
    per_scale = energies(gist, stripes(0, period)).sum(axis=(1, 2, 3))
    assert int(per_scale.argmax()) == scale


def test_a_flat_image_has_near_zero_energy(gist: GistExtractor) -> None:
    for value in (0, 128, 255):
        out = gist.extract([np.full((236, 160, 3), value, dtype=np.uint8)])
        assert np.abs(out).max() < 1e-4


def test_texture_in_one_corner_lights_up_that_cell(gist: GistExtractor) -> None:
    image = np.full((N, N, 3), 128, dtype=np.uint8)
    image[: N // 4, : N // 4] = stripes(0, 8)[: N // 4, : N // 4]
    e = energies(gist, image).sum(axis=(0, 1))
    assert int(e.argmax()) == 0  # cell r0c0
    assert e[3, 3] < 0.05 * e[0, 0]


def test_contrast_normalisation_makes_a_dim_copy_score_alike(gist: GistExtractor) -> None:
    poster = make_poster(3)
    dim = (poster.astype(np.float32) * 0.5).astype(np.uint8)
    a, b = gist.extract([poster, dim])
    assert np.corrcoef(a, b)[0, 1] > 0.98


def test_fast_path_matches_full_size_filtering() -> None:
    """The baseband-window shortcut against filtering at full size with the same bank."""
    grey = np.stack([g.to_grey(make_poster(i)) for i in range(6)] + [g.to_grey(stripes(30, 6))])
    fast = g.gist_energies(grey)
    spectrum = np.fft.fft2(g.prefilter(grey))
    bank = g.filter_bank()
    crop = slice(g.PAD, g.PAD + g.SIZE)
    cell = g.SIZE // g.GRID
    exact = np.empty_like(fast)
    for s in range(g.N_SCALES):
        for o in range(g.N_ORIENT):
            response = np.abs(np.fft.ifft2(spectrum * bank[s, o]))[:, crop, crop]
            exact[:, s, o] = response.reshape(len(grey), g.GRID, cell, g.GRID, cell).mean((2, 4))
    # Coarser sampling of the envelope costs a little accuracy where energy changes fast
    # (sharp shapes); sampling cells at their corners instead of centres would cost 30%+.
    level = exact.mean(axis=(0, 2, 3, 4), keepdims=True)  # per scale
    assert (np.abs(fast - exact) / level).max() < 0.10
    assert np.median(np.abs(fast - exact) / exact) < 0.01


def test_each_window_holds_its_filter() -> None:
    bank = g.filter_bank()
    windows = g._bank()
    for s in range(g.N_SCALES):
        for o in range(g.N_ORIENT):
            inside = float((np.abs(windows.gains[s][o]) ** 2).sum())
            assert inside > 0.998 * float((bank[s, o] ** 2).sum()), (s, o)


def test_names_follow_scale_orientation_cell() -> None:
    names = GistExtractor().feature_names()
    assert len(names) == 512 and len(set(names)) == 512
    assert names[0] == "gist.s0.o0.r0c0" and names[-1] == "gist.s3.o7.r3c3"
    assert names[16] == "gist.s0.o1.r0c0"
