"""Image preprocessing in numpy + Pillow, matching open_clip's evaluation transform.

open_clip (shortest-side mode): resize the short side to `size` (bicubic), center-crop `size`×`size`,
scale to [0, 1], normalise by mean/std, channels first. Training and the Pi runtime both use this one
function, and a test holds it to open_clip's own transform. Torch-free; knows nothing about models.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_IMAGE_PIXELS = 64_000_000  # refuse decompression bombs well before they exhaust a Pi's memory
MAX_IMAGE_BYTES = 50_000_000  # no camera frame or photo is this big; reading one would stall a Pi


class ImageError(ValueError):
    """An image that cannot be used: missing, unreadable, not an image, or too large."""


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as RGB, with a one-line ImageError for anything that is not a usable image."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"no image file at {path}")
    size = path.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise ImageError(f"{path} is too large ({size / 1e6:.0f} MB; the limit is {MAX_IMAGE_BYTES / 1e6:.0f} MB)")
    if size == 0:
        raise ImageError(f"{path} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit says it in one line
            with Image.open(path) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise ImageError(f"{path} is too large ({img.width}×{img.height} pixels)")
                img.load()
                return _to_rgb(ImageOps.exif_transpose(img))  # a phone photo arrives the right way up
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path} is not a readable image ({type(exc).__name__})") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with 16- and 32-bit greyscale scaled down to 8 bits (Pillow's convert clips them: a 16-bit PNG
    came out 99.6% white)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        image = Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return image.convert("RGB")


def preprocess(image: Image.Image, size: int, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(3, size, size) float32 array, as open_clip's eval transform gives for the same image."""
    image = _to_rgb(image)
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    if new_long > 4 * size:  # a thin strip: resizing all of it first would allocate new_long x size pixels
        # (a 373-byte 100000x1 PNG peaked at 624 MB); resize only the source region the crop keeps
        sx, sy = w / new_w, h / new_h
        box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
        image = image.resize((size, size), Image.Resampling.BICUBIC, box=box)
    else:
        if (new_w, new_h) != (w, h):
            image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
        image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.float32) / 255.0  # (H, W, 3)
    pixels = (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))  # (3, H, W)
