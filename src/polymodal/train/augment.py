"""Image views for training: torchvision's RandomResizedCrop on PIL, and the matching eval view.

`random_resized_crop` follows torchvision's `RandomResizedCrop` (`get_params`, then crop, then
resize to a square with PIL), with numpy's Generator in place of torch's global RNG so that a view
is a pure function of (image, rng): up to 10 tries draw an area fraction uniformly from `scale`
and an aspect ratio (w / h) log-uniformly from `ratio`; the first box that fits the image is
placed uniformly at random; if none fits, the fallback is a centre crop of the whole image with
its aspect ratio clamped into `ratio`. Like torchvision, the square output stretches the box (a
box of ratio 4/3 becomes a square), which is why `ratio` stays near 1 for dual encoders.

`center_view` is the eval view, `ImageTransform.crop_uint8` (shortest side to `size`, centre crop),
so that training and embedding see the same geometry.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image

from polymodal.errors import CheckpointError, InvalidInputError
from polymodal.models.clip import PreprocessConfig
from polymodal.models.preprocess import ImageTransform

__all__ = ["center_view", "crop_params", "random_resized_crop"]

_ATTEMPTS = 10  # torchvision's number of tries before the centre-crop fallback


@functools.lru_cache(maxsize=16)
def _transform(size: int, interpolation: str) -> ImageTransform:
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise InvalidInputError(f"image size must be a positive integer number of pixels, got {size!r}")
    try:
        return ImageTransform(PreprocessConfig(size=size, interpolation=interpolation))
    except CheckpointError as exc:  # an unknown interpolation: here a caller's argument, not a checkpoint's
        raise InvalidInputError(f"interpolation {interpolation!r}: {exc}") from None


def _check_range(name: str, value, low_ok: float) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a (min, max) pair of numbers, got {value!r}") from None
    if not (low_ok < lo <= hi) or not (math.isfinite(lo) and math.isfinite(hi)):
        raise InvalidInputError(f"{name} must be a (min, max) pair with {low_ok} < min <= max, got {value!r}")
    return lo, hi


def crop_params(width: int, height: int, rng: np.random.Generator, scale=(0.9, 1.0),
                ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """torchvision's `RandomResizedCrop.get_params`: the box (top, left, box_h, box_w) in pixels."""
    s_lo, s_hi = _check_range("scale", scale, 0.0)
    r_lo, r_hi = _check_range("ratio", ratio, 0.0)
    area = width * height
    log_lo, log_hi = math.log(r_lo), math.log(r_hi)
    for _ in range(_ATTEMPTS):
        target_area = area * rng.uniform(s_lo, s_hi)
        aspect = math.exp(rng.uniform(log_lo, log_hi))  # w / h, log-uniform so 3/4 and 4/3 are equally likely
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    # Fallback: the largest centred box whose ratio is clamped into [r_lo, r_hi].
    in_ratio = width / height
    if in_ratio < r_lo:
        w, h = width, int(round(width / r_lo))
    elif in_ratio > r_hi:
        w, h = int(round(height * r_hi)), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(image: Image.Image, size: int, rng: np.random.Generator, scale=(0.9, 1.0),
                        ratio=(3 / 4, 4 / 3), interpolation: str = "bicubic") -> np.ndarray:
    """A random box of `image` (see `crop_params`) resized to (size, size, 3) uint8."""
    resample = _transform(size, interpolation).resample
    image = _rgb(image)
    top, left, h, w = crop_params(image.width, image.height, rng, scale, ratio)
    # Crop, then resize, as torchvision's PIL path does (resize(box=) would read pixels outside
    # the box for the filter's support and give slightly different edges).
    view = image.crop((left, top, left + w, top + h))
    if view.size != (size, size):
        view = view.resize((size, size), resample)
    return np.asarray(view, dtype=np.uint8)


def center_view(image: Image.Image, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """The eval view: shortest side to `size`, centre crop -> (size, size, 3) uint8."""
    return _transform(size, interpolation).crop_uint8(_rgb(image))


def _rgb(image: Image.Image) -> Image.Image:
    # load_image already gives RGB; a caller's grey or RGBA image would otherwise give (S, S) or
    # (S, S, 4) arrays
    return image if image.mode == "RGB" else image.convert("RGB")
