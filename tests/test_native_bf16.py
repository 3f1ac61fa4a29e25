"""The native embedder's bf16 path keeps bf16 copies of the matrix weights between calls: same
vectors as plain autocast on the fp32 model, the model itself untouched, copies refreshed when
the weights change."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

import polymodal


def _images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)) for _ in range(3)]


def _plain_autocast(embedder, images):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        x = embedder.model.encode_image(embedder.transform(images)).float().numpy()
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_bf16_weights_are_cast_once_and_give_autocast_results():
    embedder = polymodal.load("clip-tiny-random", precision="bf16")
    images = _images()
    vectors = embedder.encode_images(images)
    assert np.abs(vectors - _plain_autocast(embedder, images)).max() < 1e-6
    assert {p.dtype for p in embedder.model.parameters()} == {torch.float32}  # the model stays fp32
    twin = embedder._runner()
    assert twin is embedder._runner()  # kept between calls
    assert twin.visual.blocks[0].mlp.fc.weight.dtype == torch.bfloat16
    assert twin.visual.ln_pre.weight is embedder.model.visual.ln_pre.weight  # the rest is shared
    embedder.encode_texts(["a cat"])
    assert embedder._runner() is twin


def test_bf16_copies_follow_weight_changes():
    embedder = polymodal.load("clip-tiny-random", precision="bf16")
    images = _images()
    before = embedder.encode_images(images)
    with torch.no_grad():
        embedder.model.visual.proj.weight.neg_()  # what an optimizer step does: in place
    assert np.allclose(embedder.encode_images(images), -before, atol=1e-6)
    embedder.model.load_state_dict({k: v.clone() for k, v in embedder.model.state_dict().items()})
    assert np.allclose(embedder.encode_images(images), -before, atol=1e-6)


def test_fp32_runs_the_model_itself():
    embedder = polymodal.load("clip-tiny-random")
    assert embedder._runner() is embedder.model
