"""Reading what users hand us into an ``(H, W, 3)`` uint8 RGB array, with clear errors.

Accepts a path, a PIL image or a NumPy array; honours EXIF orientation; converts grayscale,
palette, RGBA (composited on white), CMYK and 16-bit images; refuses images above ``max_pixels``
before decoding them (decompression bombs included).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageError", "ImageInput", "DEFAULT_MAX_PIXELS", "load_image", "to_rgb_array"]

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]  # noqa: UP007 (a runtime alias on Python 3.10)
DEFAULT_MAX_PIXELS = 80_000_000  # 80 MP: larger than any camera photo, far below a decompression bomb


class ImageError(ValueError):
    """The input is not a usable image; the message names the problem."""


def _check_size(width: int, height: int, max_pixels: int | None, name: str) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"{name} is empty ({width}x{height} pixels)")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{name} is too large: {width}x{height} = {width * height / 1e6:.0f} MP, "
            f"the limit is {max_pixels / 1e6:.0f} MP (max_pixels); downscale it first"
        )


def _pil_to_array(im: Image.Image) -> np.ndarray:
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


def to_rgb_array(array: np.ndarray, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Check a NumPy image (HxW, HxWx1, HxWx3 RGB or HxWx4 RGBA, uint8) and return it as HxWx3 uint8."""
    if not isinstance(array, np.ndarray):
        raise ImageError(f"expected a NumPy array, got {type(array).__name__}")
    if array.dtype != np.uint8:
        raise ImageError(f"a NumPy image must be uint8 (0-255), got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"a NumPy image must be HxW, HxWx3 (RGB) or HxWx4 (RGBA), got shape {array.shape}")
    _check_size(array.shape[1], array.shape[0], max_pixels, "the image")
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    if array.shape[2] == 4:
        return _pil_to_array(Image.fromarray(array, "RGBA"))
    return np.ascontiguousarray(array)


def load_image(src: ImageInput, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Any supported input -> ``(H, W, 3)`` uint8 RGB, upright per EXIF. Raises ``ImageError``."""
    if isinstance(src, np.ndarray):
        return to_rgb_array(src, max_pixels)
    if isinstance(src, Image.Image):
        _check_size(*src.size, max_pixels, "the image")
        return _pil_to_array(src)
    if not isinstance(src, (str, os.PathLike)):
        raise ImageError(
            f"cannot read an image from {type(src).__name__}: pass a path, a PIL image or a NumPy array"
        )
    path = Path(src)
    if not path.exists():
        raise ImageError(f"no such file: {path}")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies below
        try:
            with Image.open(path) as im:
                _check_size(*im.size, max_pixels, str(path))
                im.load()
                return _pil_to_array(im)
        except Image.DecompressionBombError as e:
            raise ImageError(f"{path} is too large: {e}") from None
        except UnidentifiedImageError:
            raise ImageError(f"{path} is not an image file (or a format Pillow cannot read)") from None
        except (OSError, SyntaxError, ValueError) as e:
            if isinstance(e, ImageError):
                raise
            raise ImageError(f"{path} is truncated or corrupt ({e})") from None
