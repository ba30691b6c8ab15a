"""Every kind of poster file a user may have: RGB out, or a clear error naming the file."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import encode, make_poster
from PIL import Image

from postergenre.errors import PosterError
from postergenre.images import decode_poster, load_poster


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "fmt,ext",
    [
        ("JPEG", "jpg"),
        ("PNG", "png"),
        ("WEBP", "webp"),
        ("BMP", "bmp"),
        ("TIFF", "tif"),
        ("GIF", "gif"),
    ],
)
def test_common_formats_give_rgb(tmp_path: Path, fmt: str, ext: str) -> None:
    array = make_poster(3)
    out = load_poster(write(tmp_path, f"p.{ext}", encode(array, fmt)))
    assert out.dtype == np.uint8 and out.shape == array.shape
    if fmt in ("PNG", "BMP", "TIFF", "WEBP"):
        tol = 0 if fmt != "WEBP" else 60
        assert np.abs(out.astype(int) - array.astype(int)).mean() <= max(tol, 0) + 3


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    grey = Image.fromarray(np.tile(np.arange(160, dtype=np.uint8), (200, 1)), "L")
    out = load_poster(write(tmp_path, "g.png", encode(grey, "PNG")))
    assert out.shape == (200, 160, 3)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert out[0, 100, 0] == 100


def test_png_alpha_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((50, 40, 4), np.uint8)
    rgba[..., 0] = 255  # red, but fully transparent on the left half
    rgba[:, 20:, 3] = 255
    out = load_poster(write(tmp_path, "a.png", encode(Image.fromarray(rgba, "RGBA"), "PNG")))
    assert tuple(out[10, 5]) == (255, 255, 255)
    assert tuple(out[10, 30]) == (255, 0, 0)


def test_cmyk_jpeg_gives_plausible_rgb(tmp_path: Path) -> None:
    rgb = np.zeros((60, 40, 3), np.uint8)
    rgb[:30] = (200, 30, 30)
    rgb[30:] = (30, 30, 200)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    out = load_poster(write(tmp_path, "c.jpg", encode(cmyk, "JPEG", quality=95)))
    assert out.shape == (60, 40, 3)
    top, bottom = out[:25].reshape(-1, 3).mean(0), out[35:].reshape(-1, 3).mean(0)
    assert top[0] > top[2] + 80, top  # red stays red (no inverted CMYK)
    assert bottom[2] > bottom[0] + 80, bottom


def test_16bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    img = Image.fromarray(arr)
    if img.mode not in ("I;16", "I;16B", "I;16L", "I"):
        img = Image.fromarray(arr.astype(np.int32), "I")
    out = load_poster(write(tmp_path, "d.png", encode(img, "PNG")))
    assert out.shape == (32, 64, 3)
    assert out[0, 0, 0] <= 2 and out[0, -1, 0] >= 253
    assert 100 < out[0, 32, 0] < 155  # mid-range grey, not saturated


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    img = Image.fromarray(make_poster(5, size=(100, 60)))  # 60 wide, 100 tall
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    out = load_poster(write(tmp_path, "r.jpg", encode(img, "JPEG", exif=exif.tobytes())))
    assert out.shape == (60, 100, 3)


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf_path = tmp_path / "anim.gif"
    frames[0].save(buf_path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = load_poster(buf_path)
    assert out.shape == (40, 40, 3)
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 50


@pytest.mark.parametrize(
    "name,data,kind",
    [
        ("empty.jpg", b"", "empty"),
        ("text.jpg", b"this is not an image, just text that pretends\n" * 5, "not_image"),
    ],
)
def test_bad_files_have_kinds(tmp_path: Path, name: str, data: bytes, kind: str) -> None:
    path = write(tmp_path, name, data)
    with pytest.raises(PosterError) as info:
        load_poster(path)
    assert info.value.kind == kind
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PosterError) as info:
        load_poster(tmp_path / "nope.jpg")
    assert info.value.kind == "missing"


def test_a_url_is_named_as_one_not_as_a_missing_file() -> None:
    with pytest.raises(PosterError) as info:
        load_poster("https://example.com/poster.jpg")
    assert info.value.kind == "missing"
    assert str(info.value).startswith("https://example.com/poster.jpg: is a URL")
    assert "download the poster" in (info.value.hint or "")


def test_truncated_jpeg_is_corrupt(tmp_path: Path) -> None:
    data = encode(make_poster(2, size=(400, 300)), "JPEG", quality=90)
    path = write(tmp_path, "t.jpg", data[: len(data) // 2])
    with pytest.raises(PosterError) as info:
        load_poster(path)
    assert info.value.kind == "corrupt"


def test_one_pixel_image_is_too_small(tmp_path: Path) -> None:
    path = write(tmp_path, "one.png", encode(Image.new("RGB", (1, 1)), "PNG"))
    with pytest.raises(PosterError) as info:
        load_poster(path)
    assert info.value.kind == "too_small"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height (a decompression-bomb header) with a tiny body."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 10))
        + chunk(b"IEND", b"")
    )


def test_bomb_header_is_refused_before_decoding(tmp_path: Path) -> None:
    import tracemalloc

    path = write(tmp_path, "bomb.png", _png_header_only(30000, 30000))
    tracemalloc.start()
    with pytest.raises(PosterError) as info:
        load_poster(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert info.value.kind == "too_large"
    assert "900 megapixels" in str(info.value)
    assert peak < 50e6  # nothing near 2.7 GB was allocated


def test_pixel_limit_is_configurable() -> None:
    data = encode(make_poster(1, size=(300, 200)), "PNG")
    assert decode_poster(data, max_pixels=60_000).shape == (300, 200, 3)
    with pytest.raises(PosterError, match="limit"):
        decode_poster(data, max_pixels=50_000)


def test_garbage_is_not_image_even_when_every_pil_plugin_is_loaded(tmp_path: Path) -> None:
    from PIL import Image

    Image.init()  # other libraries load every plugin; some raise odd errors on text
    path = write(tmp_path, "plain.jpg", b"hello, this is just a text file\n" * 5)
    with pytest.raises(PosterError) as info:
        load_poster(path)
    assert info.value.kind == "not_image"
