"""The Embedder over polymodal's native CLIP-family model (models/clip.py)."""

from __future__ import annotations

import numpy as np
import torch

from polymodal.embed.base import Embedder
from polymodal.errors import InvalidInputError
from polymodal.models.clip import ClipModel
from polymodal.models.preprocess import ImageTransform
from polymodal.models.tokenizer import ClipTokenizer

PRECISIONS = ("fp32", "bf16")


class ClipEmbedder(Embedder):
    """Native CLIP/SigLIP-style dual encoder.

    precision: "fp32", or "bf16" (autocast on CPU: several times faster on CPUs with bf16 matrix
    units; benchmarks/embed_throughput.py measures its cosine similarity to fp32).
    fast_decode: decode JPEGs at reduced scale (PIL draft) when they are over twice the input size.
    """

    def __init__(self, model: ClipModel, tokenizer: ClipTokenizer, name: str, *,
                 precision: str = "fp32", fast_decode: bool = True):
        if precision not in PRECISIONS:
            raise InvalidInputError(f"precision {precision!r} is not one of {PRECISIONS}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.precision = precision
        self.fast_decode = fast_decode
        cfg = model.config
        self.dim = cfg.embed_dim
        self.scoring = cfg.scoring
        self.transform = ImageTransform(cfg.preprocess)
        self.context_length = cfg.text.context_length
        self.refresh_scale()

    def refresh_scale(self) -> None:
        """Re-read the temperature and bias from the model (after training changes them)."""
        self.logit_scale = float(self.model.logit_scale.detach().exp())
        bias = self.model.logit_bias
        self.logit_bias = None if bias is None else float(bias.detach())

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def draft_size(self):
        return self.transform.draft_size() if self.fast_decode else None

    def _prepare_image(self, image) -> np.ndarray:
        return self.transform.crop_uint8(image)  # (S, S, 3) uint8

    @torch.inference_mode()
    def _encode_image_batch(self, prepared: list[np.ndarray]) -> np.ndarray:
        pixels = self.transform.normalize(np.stack(prepared))  # (B, 3, S, S)
        with self._autocast():
            return self.model.encode_image(pixels).float().numpy()

    @torch.inference_mode()
    def _encode_text_batch(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        tok = self.tokenizer(texts, context_length=self.context_length)
        # Causal attention and end-of-text pooling make trailing padding irrelevant, so the batch is
        # cut after its longest text: short captions cost ~15 positions instead of 77.
        length = int((tok.ids == self.tokenizer.eot_token_id).argmax(axis=1).max()) + 1
        ids = torch.from_numpy(tok.ids[:, :length])
        with self._autocast():
            return self.model.encode_text(ids).float().numpy(), tok.truncated
