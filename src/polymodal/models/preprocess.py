"""Image preprocessing of the CLIP family: resize the shortest side, centre crop, normalise.

Identical to transformers' CLIPImageProcessor (checked in tests/test_preprocess.py): the resize is
PIL's, on 8-bit pixels, with the long side truncated (`int(size * long / short)`), and the crop
offset rounds down (`(h - size) // 2`). The per-image work stays in uint8 and the float
conversion and normalisation run once per batch in torch.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from polymodal.errors import CheckpointError
from polymodal.models.clip import PreprocessConfig

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


class ImageTransform:
    """Callable turning RGB PIL images into a normalised (B, 3, size, size) float32 batch."""

    def __init__(self, cfg: PreprocessConfig):
        if cfg.interpolation not in _RESAMPLE:
            raise CheckpointError(f"unknown interpolation {cfg.interpolation!r}; known: {sorted(_RESAMPLE)}")
        self.cfg = cfg
        self.size = cfg.size
        self.resample = _RESAMPLE[cfg.interpolation]
        self.mean = torch.tensor(cfg.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.std, dtype=torch.float32).view(1, 3, 1, 1)

    def crop_uint8(self, image: Image.Image) -> np.ndarray:
        """RGB PIL image -> (size, size, 3) uint8: shortest side to `size`, then centre crop."""
        w, h = image.size
        s = self.size
        if w <= h:
            new_w, new_h = s, int(s * h / w)
        else:
            new_w, new_h = int(s * w / h), s
        if (new_w, new_h) != (w, h):
            image = image.resize((new_w, new_h), self.resample)
        top, left = (new_h - s) // 2, (new_w - s) // 2
        return np.asarray(image.crop((left, top, left + s, top + s)), dtype=np.uint8)

    def normalize(self, batch_uint8: np.ndarray) -> torch.Tensor:
        """(B, size, size, 3) uint8 -> (B, 3, size, size) float32 normalised."""
        x = torch.from_numpy(batch_uint8).permute(0, 3, 1, 2).float().div_(255.0)
        return x.sub_(self.mean).div_(self.std)

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        return self.normalize(np.stack([self.crop_uint8(im) for im in images]))

    def draft_size(self) -> tuple[int, int]:
        """The JPEG draft size that keeps at least 2x oversampling before the final resize, so
        reduced-scale decoding changes the result only marginally (see the benchmark)."""
        return (2 * self.size, 2 * self.size)
