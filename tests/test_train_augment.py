"""Training views: RandomResizedCrop by torchvision's documented algorithm, and the eval view.

torchvision is not installable here, so the crop is checked against the algorithm's definition:
the area fraction of an accepted box is uniform on `scale`, its aspect ratio log-uniform on
`ratio`, its position uniform; after 10 failed tries the box is the centre crop with the ratio
clamped; the output is that box resized to a square.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from polymodal.errors import InvalidInputError
from polymodal.models.clip import PreprocessConfig
from polymodal.models.preprocess import ImageTransform
from polymodal.train.augment import center_view, crop_params, random_resized_crop

DRAWS = 4000
KS_CRITICAL = 1.95 / math.sqrt(DRAWS)  # Kolmogorov-Smirnov at the 0.1% level


def ks_uniform(values, lo: float, hi: float) -> float:
    """Kolmogorov-Smirnov distance between the sample and the uniform distribution on [lo, hi]."""
    x = np.sort((np.asarray(values, dtype=np.float64) - lo) / (hi - lo))
    n = len(x)
    return float(max(np.max(np.arange(1, n + 1) / n - x), np.max(x - np.arange(n) / n)))


def draw(width, height, scale, ratio, seed=0, n=DRAWS):
    rng = np.random.default_rng(seed)
    return np.array([crop_params(width, height, rng, scale, ratio) for _ in range(n)])  # (n, 4) top, left, h, w


def test_area_fraction_aspect_ratio_and_position_follow_the_definition():
    # A box of at most half the area with a ratio in [3/4, 4/3] always fits a square: no try is
    # rejected, so the drawn distributions are the sampling distributions themselves.
    side, scale, ratio = 1000, (0.08, 0.5), (3 / 4, 4 / 3)
    top, left, h, w = draw(side, side, scale, ratio).T
    area = w * h / side**2
    assert ks_uniform(area, *scale) < KS_CRITICAL
    assert ks_uniform(np.log(w / h), math.log(ratio[0]), math.log(ratio[1])) < KS_CRITICAL
    # positions: uniform over the free room in each direction (inclusive of both ends)
    assert ks_uniform((top + 0.5) / (side - h + 1), 0, 1) < KS_CRITICAL
    assert ks_uniform((left + 0.5) / (side - w + 1), 0, 1) < KS_CRITICAL
    # rounding to whole pixels moves the area by well under 1%
    assert area.min() >= scale[0] * 0.99 and area.max() <= scale[1] * 1.01


def test_rejected_tries_keep_every_box_inside_the_image():
    # With the training default scale (0.9, 1) a square image rejects most wide or tall boxes.
    top, left, h, w = draw(200, 200, (0.9, 1.0), (3 / 4, 4 / 3), n=1000).T
    assert (w >= 1).all() and (h >= 1).all()
    assert (left + w <= 200).all() and (top + h <= 200).all() and (top >= 0).all() and (left >= 0).all()
    assert (w * h >= 0.9 * 200 * 200 * 0.99).all()
    assert len({(a, b) for a, b in zip(w, h)}) > 10  # still random


@pytest.mark.parametrize("width,height,expected", [
    # far wider than 4/3: full height, width = round(height * 4/3), centred
    (1000, 100, (0, (1000 - 133) // 2, 100, 133)),
    # far taller than 3/4: full width, height = round(width / (3/4)), centred
    (90, 1000, ((1000 - 120) // 2, 0, 120, 90)),
])
def test_fallback_is_the_centre_crop_with_the_ratio_clamped(width, height, expected):
    # No box of 90-100% of the area with a ratio in [3/4, 4/3] fits: every try fails.
    rng = np.random.default_rng(3)
    assert crop_params(width, height, rng, (0.9, 1.0), (3 / 4, 4 / 3)) == expected


def test_fallback_within_the_ratio_range_is_the_whole_image():
    # an area above the image's own can never fit; the image's ratio 1.2 is inside [3/4, 4/3]
    assert crop_params(120, 100, np.random.default_rng(0), (1.5, 2.0), (3 / 4, 4 / 3)) == (0, 0, 100, 120)


def test_output_is_the_box_resized_to_a_square():
    # Pixels encode their own coordinates; with nearest-neighbour resizing the corners of the
    # output are the corners of the box (within the half-pixel of the sampling grid).
    width, height, size = 240, 180, 32
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    image = Image.fromarray(np.stack([x, y, np.zeros_like(x)], axis=-1).astype(np.uint8))
    for seed in range(20):
        top, left, h, w = crop_params(width, height, np.random.default_rng(seed), (0.3, 0.6))
        out = random_resized_crop(image, size, np.random.default_rng(seed), scale=(0.3, 0.6), interpolation="nearest")
        assert out.shape == (size, size, 3) and out.dtype == np.uint8
        step_x, step_y = w / size, h / size
        assert abs(int(out[0, 0, 0]) - left) <= step_x and abs(int(out[0, 0, 1]) - top) <= step_y
        assert abs(int(out[-1, -1, 0]) - (left + w - 1)) <= step_x
        assert abs(int(out[-1, -1, 1]) - (top + h - 1)) <= step_y


def test_same_generator_state_gives_the_same_view():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8))
    a = random_resized_crop(image, 48, np.random.default_rng((7, 1, 5)))
    b = random_resized_crop(image, 48, np.random.default_rng((7, 1, 5)))
    c = random_resized_crop(image, 48, np.random.default_rng((7, 1, 6)))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("size,shape", [(64, (150, 200)), (30, (200, 150)), (224, (100, 80))])
def test_center_view_is_the_embedders_crop(size, shape, interpolation):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8))
    expected = ImageTransform(PreprocessConfig(size=size, interpolation=interpolation)).crop_uint8(image)
    assert np.array_equal(center_view(image, size, interpolation), expected)


def test_grey_images_become_rgb_views():
    grey = Image.new("L", (50, 40), 128)
    assert random_resized_crop(grey, 16, np.random.default_rng(0)).shape == (16, 16, 3)
    assert center_view(grey, 16).shape == (16, 16, 3)


@pytest.mark.parametrize("kwargs,match", [
    ({"scale": (1.0, 0.5)}, "scale"),
    ({"scale": (0.0, 1.0)}, "scale"),
    ({"ratio": (-1.0, 2.0)}, "ratio"),
    ({"ratio": "wide"}, "ratio"),
    ({"interpolation": "lanczos"}, "lanczos"),
    ({"size": 0}, "size"),
])
def test_bad_arguments_are_named(kwargs, match):
    image = Image.new("RGB", (40, 30))
    args = {"size": 16, **kwargs}
    with pytest.raises(InvalidInputError, match=match):
        random_resized_crop(image, args.pop("size"), np.random.default_rng(0), **args)
