"""The Embedder contract, on the native tiny model: inputs, batching, failures, scoring."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

import polymodal
from polymodal.embed.base import TextTruncatedWarning
from polymodal.errors import InvalidInputError, MediaError


@pytest.fixture(scope="module")
def model():
    return polymodal.load("clip-tiny-random")


def _png_bytes(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, format="PNG")
    return buf.getvalue()


def test_every_input_kind_gives_the_same_unit_vector(model, tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    image.save(tmp_path / "x.png")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    vectors = model.encode_images([str(tmp_path / "x.png"), tmp_path / "x.png", buf.getvalue(), image, array])
    assert vectors.shape == (5, model.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(vectors - vectors[0]).max() < 1e-6


def test_batch_size_does_not_change_results(model):
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(7)]
    a = model.encode_images(images, batch_size=2)
    b = model.encode_images(images, batch_size=7)
    assert np.abs(a - b).max() < 1e-5
    texts = ["a dog", "a photo of a very small cat sitting on a mat", "x", "two"]
    assert np.abs(model.encode_texts(texts, batch_size=1) - model.encode_texts(texts)).max() < 1e-5


def test_trimmed_padding_equals_full_context(model):
    """The native embedder cuts padding after the longest text; the full 77 positions agree."""
    import torch

    texts = ["a photo of a cat", "hello!"]
    full = torch.from_numpy(model.tokenizer(texts).ids)
    with torch.inference_mode():
        expected = model.model.encode_text(full).numpy()
    assert np.abs(model.encode_texts(texts) - expected).max() < 1e-5


def test_bad_images_are_skipped_and_reported(model, tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    items = [_png_bytes("red"), str(tmp_path / "empty.jpg"), str(tmp_path / "missing.png"),
             str(tmp_path / "notes.txt"), _png_bytes("blue")]
    out = model.embed_images(items, batch_size=2)
    assert out.kept == [0, 4] and out.vectors.shape == (2, model.dim)
    assert [(f.index, f.reason) for f in out.failures] == [(1, "empty"), (2, "unreadable"), (3, "unsupported")]
    assert all(f.source in f.message for f in out.failures)
    with pytest.raises(MediaError, match="empty.jpg"):
        model.encode_images(items)


def test_texts_empty_and_wrong_types(model):
    with pytest.raises(InvalidInputError, match="text 1 is empty"):
        model.encode_texts(["fine", "   "])
    with pytest.raises(InvalidInputError, match="not one string"):
        model.encode_texts("a single string")
    out = model.embed_texts(["fine", "", 3, "also fine"])
    assert out.kept == [0, 3] and [f.reason for f in out.failures] == ["empty", "unsupported"]


def test_truncation_is_reported(model):
    long_text = " ".join(["word"] * 200)
    with pytest.warns(TextTruncatedWarning, match="truncated"):
        out = model.embed_texts(["short", long_text])
    assert out.truncated == [1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.encode_texts(["short enough"])


def test_score_softmax_and_sigmoid(model):
    img = model.encode_images([Image.new("RGB", (30, 30), "red"), Image.new("RGB", (30, 30), "blue")])
    txt = model.encode_texts(["red", "blue", "green"])
    probs = model.score(img, txt)
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    logits = model.logit_scale * img @ txt.T
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.allclose(probs, expected, atol=1e-6)


def test_bf16_precision_stays_close_to_fp32():
    fp32 = polymodal.load("clip-tiny-random")
    bf16 = polymodal.load("clip-tiny-random", precision="bf16")
    images = [Image.new("RGB", (30, 30), c) for c in ("red", "green", "blue")]
    cos = (fp32.encode_images(images) * bf16.encode_images(images)).sum(axis=1)
    assert cos.min() > 0.99
    with pytest.raises(InvalidInputError, match="precision"):
        polymodal.load("clip-tiny-random", precision="fp8")
