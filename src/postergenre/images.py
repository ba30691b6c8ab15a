"""Any poster file -> an RGB uint8 array (H, W, 3), or a :class:`PosterError` saying why not.

Handles JPEG, PNG, WebP, BMP, TIFF and GIF (first frame); applies EXIF orientation;
converts grayscale, palette, CMYK, 16-bit and alpha (composited on white). The pixel
count is checked from the header, before any decoding, so a decompression bomb is refused
without allocating it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from types import TracebackType

import numpy as np

from postergenre.errors import PosterError

#: Default limit on width x height, checked before decoding.
DEFAULT_MAX_PIXELS = 50_000_000
#: Smaller than this on either side is no poster.
MIN_SIDE = 16

_HINT_FORMATS = "supported: JPEG, PNG, WebP, BMP, TIFF, GIF"


def load_poster(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode one poster file. Raises PosterError (with ``.kind``) on bad input."""
    data = read_bytes(path)
    return decode_poster(data, name=str(path), max_pixels=max_pixels)


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes; PosterError for missing, unreadable or empty files."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        if "://" in str(path):
            # Only the weights manager downloads; a poster's URL is not fetched.
            raise PosterError(
                str(path), "missing", "is a URL; postergenre reads poster files only",
                "download the poster, then give the file's path",
            ) from None  # fmt: skip
        raise PosterError(p, "missing", "no such file", "check the path") from None
    except IsADirectoryError:
        raise PosterError(p, "not_image", "is a directory, not an image file") from None
    except PermissionError:
        raise PosterError(
            p, "unreadable", "permission denied", "check the file's permissions"
        ) from None
    except OSError as exc:
        raise PosterError(p, "unreadable", f"cannot read file ({exc.strerror or exc})") from None
    if not data:
        raise PosterError(
            p, "empty", "file is empty (0 bytes)", "re-download or re-export the poster"
        )
    return data


def decode_poster(
    data: bytes, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode image bytes to RGB uint8 (H, W, 3)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise PosterError(name, "empty", "file is empty (0 bytes)")
    try:
        # Opening reads only the header: size is known before any pixel is decoded.
        with _bomb_guard_off():
            img: Image.Image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise PosterError(name, "not_image", "not an image file", _HINT_FORMATS) from None
    except Exception as exc:  # PIL plugins raise many types on garbage headers
        if not looks_like_image(data):
            raise PosterError(name, "not_image", "not an image file", _HINT_FORMATS) from None
        raise PosterError(name, "corrupt", f"unreadable image header ({exc})") from None
    width, height = img.size
    if width * height > max_pixels:
        raise PosterError(
            name,
            "too_large",
            f"{width}x{height} is {width * height / 1e6:.0f} megapixels, over the "
            f"{max_pixels / 1e6:.0f}-megapixel limit",
            "downscale the poster, or raise the limit (max_pixels) if you trust the file",
        )
    if min(width, height) < MIN_SIDE:
        raise PosterError(
            name, "too_small", f"{width}x{height} is smaller than {MIN_SIDE} pixels on a side"
        )
    try:
        with _bomb_guard_off():
            img.seek(0)  # first frame of animations
            img.load()
            img = ImageOps.exif_transpose(img) or img
            rgb = to_rgb(img)
    except PosterError:
        raise
    except Exception as exc:
        raise PosterError(
            name, "corrupt", f"truncated or corrupt image data ({exc})", "re-download the poster"
        ) from None
    if min(rgb.shape[0], rgb.shape[1]) < MIN_SIDE:
        raise PosterError(name, "too_small", f"{rgb.shape[1]}x{rgb.shape[0]} after EXIF rotation")
    return rgb


#: Leading bytes of the formats we read; what starts otherwise is no image.
_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
)


def looks_like_image(data: bytes) -> bool:
    """Whether ``data`` starts like one of the supported formats (WebP: RIFF....WEBP)."""
    return data.startswith(_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def to_rgb(img: object) -> np.ndarray:
    """A decoded PIL image of any mode -> contiguous RGB uint8 (H, W, 3)."""
    from PIL import Image

    assert isinstance(img, Image.Image)  # internal helper: callers pass PIL images
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit grey: scale to 8 bits by the data's own range, not by clipping.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        grey = ((arr - lo) / (hi - lo if hi > lo else 1.0) * 255.0).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("LA", "La", "PA"):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "RGBa"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK (PIL inverts Adobe CMYK), YCbCr, LAB, HSV, RGBX
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


class _bomb_guard_off:
    """We check the pixel count ourselves; PIL's own warning-or-error must not fire first."""

    def __enter__(self) -> None:
        import warnings

        from PIL import Image

        self._saved = Image.MAX_IMAGE_PIXELS
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = self._saved
        self._warnings.__exit__(exc_type, exc, tb)
