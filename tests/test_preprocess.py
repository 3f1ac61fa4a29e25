"""Image preprocessing equals transformers' CLIP image processor (its PIL implementation)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from polymodal.models.clip import PreprocessConfig
from polymodal.models.preprocess import ImageTransform

# Square, landscape, portrait, odd crop margins, smaller than the crop, one pixel thin.
SIZES = [(224, 224), (640, 480), (480, 640), (301, 227), (225, 500), (100, 80), (37, 1), (1000, 999)]


@pytest.mark.parametrize("interpolation,resample", [("bicubic", 3), ("bilinear", 2)])
@pytest.mark.parametrize("size", [224, 30])
def test_matches_transformers_clip_image_processor(size, interpolation, resample):
    from transformers import CLIPImageProcessorPil

    reference = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                      resample=resample)
    ours = ImageTransform(PreprocessConfig(size=size, interpolation=interpolation))
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]
    expected = reference(images=images, return_tensors="np")["pixel_values"]
    got = ours(images).numpy()
    assert got.shape == expected.shape == (len(SIZES), 3, size, size)
    assert np.abs(got - expected).max() < 1e-5


def test_custom_mean_and_std_are_applied():
    cfg = PreprocessConfig(size=4, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    white = Image.new("RGB", (4, 4), "white")
    assert np.allclose(ImageTransform(cfg)([white]).numpy(), 1.0)
