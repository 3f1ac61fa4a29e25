"""The Embedder over polymodal's native CLIP-family model (models/clip.py)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

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
        self._twin = None  # (stamp of the matrix weights, bf16 twin of the model); see _runner
        self.refresh_scale()

    def refresh_scale(self) -> None:
        """Re-read the temperature and bias from the model (after training changes them)."""
        self.logit_scale = float(self.model.logit_scale.detach().exp())
        bias = self.model.logit_bias
        self.logit_bias = None if bias is None else float(bias.detach())

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _runner(self) -> ClipModel:
        """The model to run: `self.model` in fp32; in bf16, a twin whose matrix weights (Linear,
        Conv) are kept in bf16.

        Autocast casts every matrix weight to bf16 again on each forward (its cast cache is off in
        inference mode): for ViT-B/32 that is ~50 ms, as long as the forward of one image. The twin
        gives autocast weights that are already bf16, so the results are the same bit for bit; it
        shares every other parameter with the model, and is rebuilt when a matrix weight changes
        (an optimizer step, load_state_dict, .to()). Cost: a bf16 copy of the weights (2 bytes a
        parameter, ~0.3 GB for ViT-B/32)."""
        if self.precision != "bf16":
            return self.model
        matrices = [p for m in self.model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))
                    for p in m.parameters(recurse=False)]
        stamp = [(id(p), p.data_ptr(), p._version) for p in matrices]
        if self._twin is None or self._twin[0] != stamp:
            self._twin = None  # free the old twin before making the new one
            with torch.inference_mode(False), torch.no_grad():
                # deepcopy takes what `memo` gives for an object: the model's own tensors, except
                # for bf16 copies of the matrices.
                memo = {id(t): t for t in (*self.model.parameters(), *self.model.buffers())}
                memo.update({id(p): nn.Parameter(p.to(torch.bfloat16), requires_grad=False) for p in matrices})
                self._twin = (stamp, copy.deepcopy(self.model, memo).eval())
        return self._twin[1]

    def draft_size(self):
        return self.transform.draft_size() if self.fast_decode else None

    def _prepare_image(self, image) -> np.ndarray:
        return self.transform.crop_uint8(image)  # (S, S, 3) uint8

    @torch.inference_mode()
    def _encode_image_batch(self, prepared: list[np.ndarray]) -> np.ndarray:
        pixels = self.transform.normalize(np.stack(prepared))  # (B, 3, S, S)
        with self._autocast():
            return self._runner().encode_image(pixels).float().numpy()

    @torch.inference_mode()
    def _encode_text_batch(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        tok = self.tokenizer(texts, context_length=self.context_length)
        # Causal attention and end-of-text pooling make trailing padding irrelevant, so the batch is
        # cut after its longest text: short captions cost ~15 positions instead of 77.
        length = int((tok.ids == self.tokenizer.eot_token_id).argmax(axis=1).max()) + 1
        ids = torch.from_numpy(tok.ids[:, :length])
        with self._autocast():
            return self._runner().encode_text(ids).float().numpy(), tok.truncated
