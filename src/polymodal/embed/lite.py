"""The Embedder of the offline default model `lite` (see models/lite.py for what it is)."""

from __future__ import annotations

import numpy as np
import torch

from polymodal.embed.base import Embedder
from polymodal.models.clip import PreprocessConfig
from polymodal.models.efficientnet_lite import EfficientNetLite0
from polymodal.models.lite import LOW_RES_SIDE, LiteImageTower, load_image_tower
from polymodal.models.minilm import DIM, MiniLMEncoder
from polymodal.models.preprocess import ImageTransform


class LiteEmbedder(Embedder):
    name = "lite"
    dim = DIM
    scoring = "softmax"

    def __init__(self, tower: LiteImageTower | None = None, text: MiniLMEncoder | None = None):
        self.tower = tower or load_image_tower()
        self.text = text or MiniLMEncoder()
        cfg = self.tower.config
        # ConSE embeddings sit close together (cosines between about 0.1 and 0.7), so the softmax
        # needs a sharp temperature; 50 is what the shipped file records.
        self.logit_scale = cfg.logit_scale
        self.logit_bias = None
        self.transform = ImageTransform(PreprocessConfig(
            size=cfg.image_size, mean=EfficientNetLite0.MEAN, std=EfficientNetLite0.STD, interpolation="bicubic"))

    def draft_size(self):
        return self.transform.draft_size()

    def _prepare_image(self, image) -> tuple[np.ndarray, bool]:
        return self.transform.crop_uint8(image), min(image.size) < LOW_RES_SIDE

    @torch.inference_mode()
    def _encode_image_batch(self, prepared: list[tuple[np.ndarray, bool]]) -> np.ndarray:
        pixels = self.transform.normalize(np.stack([crop for crop, _ in prepared]))
        low_res = torch.tensor([small for _, small in prepared])
        return self.tower(pixels, low_res).numpy()

    def _encode_text_batch(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        return self.text(texts)

    def describe(self) -> dict:
        return {**super().describe(), "config": vars(self.tower.config)}
