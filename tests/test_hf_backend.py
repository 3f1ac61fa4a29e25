"""The transformers backend (polymodal.backends.hf) against transformers itself, on tiny random
checkpoints built offline: SigLIP (sigmoid scoring, max-length padding, SentencePiece tokenizer),
SigLIP 2 (NaFlex image processor, left-padded BPE tokenizer), ALIGN (softmax scoring with a
temperature, BERT tokenizer) and a model that is no dual encoder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import polymodal  # noqa: E402
from polymodal.embed.base import TextTruncatedWarning  # noqa: E402
from polymodal.errors import CheckpointError  # noqa: E402

TOL = 1e-4
TEXTS = ["a photo of a cat", "a small dog", "bird"]
LONG = "the quick brown fox jumps over the lazy dog " * 4  # longer than the tiny contexts
SENTENCES = [
    "a photo of a cat", "a photo of a dog", "a picture of a bird on a tree", "the quick brown fox jumps",
    "over the lazy dog", "a cat and a dog on the grass", "a small bird sings", "photo of the red car",
]


def _images(seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((40, 50), (64, 32), (30, 30))]


def _unit(x: torch.Tensor) -> np.ndarray:
    x = x.float()
    return (x / x.norm(dim=-1, keepdim=True)).numpy()


def _pooled(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _set_scale(model, scale: float, bias: float | None = None) -> None:
    with torch.no_grad():
        model.logit_scale.fill_(math.log(scale))
        if bias is not None:
            model.logit_bias.fill_(bias)


# ----------------------------------------------------------------------------------------------
# Tiny checkpoints


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory) -> Path:
    spm = pytest.importorskip("sentencepiece")
    from transformers import SiglipConfig, SiglipModel, SiglipTokenizer
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    path = tmp_path_factory.mktemp("tiny-siglip")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 4), model_prefix=str(path / "spiece"), vocab_size=64,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False,
        minloglevel=2, num_threads=1,
    )
    tokenizer = SiglipTokenizer(str(path / "spiece.model"), model_max_length=16)
    config = SiglipConfig(
        text_config=dict(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=30, patch_size=10),
    )
    torch.manual_seed(0)
    model = SiglipModel(config).eval()
    _set_scale(model, 10.0, -1.5)  # the init (scale 1, bias 0) would hide a mix-up
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    SiglipImageProcessorPil(size={"height": 30, "width": 30}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def align_dir(tmp_path_factory) -> Path:
    from transformers import AlignConfig, AlignModel, BertTokenizer
    from transformers.models.efficientnet.image_processing_pil_efficientnet import EfficientNetImageProcessorPil

    path = tmp_path_factory.mktemp("tiny-align")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted({w for s in SENTENCES for w in s.split()})
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, model_max_length=12)
    config = AlignConfig(
        text_config=dict(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32),
        vision_config=dict(image_size=32, width_coefficient=1.0, depth_coefficient=1.0, in_channels=[32, 16],
                           out_channels=[16, 16], kernel_sizes=[3, 3], strides=[1, 2], num_block_repeats=[1, 1],
                           expand_ratios=[1, 2], hidden_dim=32, depthwise_padding=[]),
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = AlignModel(config).eval()
    with torch.no_grad():
        model.temperature.fill_(0.05)  # logits = cosine / temperature = 20 * cosine
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    EfficientNetImageProcessorPil(size={"height": 32, "width": 32},
                                  crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def siglip2_dir(tmp_path_factory) -> Path:
    from transformers import Siglip2Config, Siglip2Model
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil
    from transformers.models.siglip2.tokenization_siglip2 import Siglip2Tokenizer

    path = tmp_path_factory.mktemp("tiny-siglip2")
    # a byte-fallback BPE over the words of SENTENCES, shaped like Gemma's
    special = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<0x{i:02X}>" for i in range(256)]
    words = sorted({"\u2581" + w for s in SENTENCES for w in s.split()})
    pieces = sorted({c for w in words for c in w})
    merges = []
    for word in words:
        for k in range(2, len(word) + 1):
            if word[:k] not in pieces:
                pieces.append(word[:k])
                merges.append((word[: k - 1], word[k - 1]))
    vocab = {token: i for i, token in enumerate(special + pieces)}
    tokenizer = Siglip2Tokenizer(vocab=vocab, merges=merges, model_max_length=16)
    config = Siglip2Config(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           patch_size=8, num_patches=16),
    )
    torch.manual_seed(0)
    model = Siglip2Model(config).eval()
    _set_scale(model, 8.0, -2.0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def siglip(siglip_dir):
    return polymodal.load(str(siglip_dir))


@pytest.fixture(scope="module")
def siglip_reference(siglip_dir):
    """transformers' own tokenizer, image processor and model from the same directory."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    return (AutoTokenizer.from_pretrained(siglip_dir), AutoImageProcessor.from_pretrained(siglip_dir),
            AutoModel.from_pretrained(siglip_dir).eval())


# ----------------------------------------------------------------------------------------------
# SigLIP


def test_siglip_declares_sigmoid_scoring(siglip, siglip_dir):
    from polymodal.backends.hf import HfDualEncoder

    assert isinstance(siglip, HfDualEncoder)
    assert siglip.name == siglip_dir.name
    assert siglip.scoring == "sigmoid"
    assert siglip.dim == 32
    assert siglip.logit_scale == pytest.approx(10.0, rel=1e-5)
    assert siglip.logit_bias == pytest.approx(-1.5, abs=1e-6)
    # SigLIP pools the last position: texts are padded to the whole (tiny) context, as trained
    assert siglip.text_kwargs == {"padding": "max_length", "max_length": 16, "truncation": True}
    assert siglip.describe()["backend"] == "HfDualEncoder"


def test_siglip_embeddings_match_transformers(siglip, siglip_reference):
    tokenizer, processor, model = siglip_reference
    images = _images()
    with torch.inference_mode():
        pixels = processor(images=images, return_tensors="pt")
        ref_img = _unit(_pooled(model.get_image_features(**pixels)))
        tokens = tokenizer(TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
        ref_txt = _unit(_pooled(model.get_text_features(**tokens)))
    img = siglip.encode_images(images, batch_size=2)  # two batches: stacking one-by-one processing
    txt = siglip.encode_texts(TEXTS)
    assert img.shape == (3, 32) and txt.shape == (3, 32)
    assert np.abs(img - ref_img).max() <= TOL
    assert np.abs(txt - ref_txt).max() <= TOL
    # a text alone (padded to max length, not to the batch) embeds as it does in a batch
    assert np.abs(siglip.encode_texts(TEXTS[2:]) - txt[2:]).max() <= TOL


def test_siglip_score_is_the_models_sigmoid(siglip, siglip_reference):
    tokenizer, processor, model = siglip_reference
    images = _images(1)
    with torch.inference_mode():
        inputs = processor(images=images, return_tensors="pt")
        inputs.update(tokenizer(TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt"))
        expected = torch.sigmoid(model(**inputs).logits_per_image).numpy()
    got = siglip.score(siglip.encode_images(images), siglip.encode_texts(TEXTS))
    assert got.shape == (3, 3)
    assert np.abs(got - expected).max() <= TOL


def test_siglip_classify_gives_independent_sigmoids(siglip, siglip_reference, tmp_path):
    tokenizer, processor, model = siglip_reference
    images = _images(2)
    paths = []
    for i, image in enumerate(images):  # through files too: the media loader feeds the processor
        paths.append(tmp_path / f"image{i}.png")
        image.save(paths[-1])
    labels = ["cat", "dog", "bird"]
    result = polymodal.classify(siglip, paths, labels=labels, templates="simple")
    assert result.scoring == "sigmoid" and not result.failures
    prompts = [f"a photo of a {label}." for label in labels]
    with torch.inference_mode():
        inputs = processor(images=images, return_tensors="pt")
        inputs.update(tokenizer(prompts, padding="max_length", max_length=16, truncation=True, return_tensors="pt"))
        expected = torch.sigmoid(model(**inputs).logits_per_image).numpy()
    sums = []
    for prediction in result.predictions:
        scores = {entry["label"]: entry["score"] for entry in prediction.labels}
        assert [scores[label] for label in labels] == pytest.approx(expected[prediction.index].tolist(), abs=TOL)
        assert all(0.0 < s < 1.0 for s in scores.values())
        sums.append(sum(scores.values()))
    assert any(abs(s - 1.0) > 1e-3 for s in sums)  # independent per label, not a distribution


def test_siglip_reports_truncated_texts(siglip, siglip_reference):
    tokenizer, _, model = siglip_reference
    texts = ["a cat", LONG, "a dog"]
    assert len(tokenizer(LONG)["input_ids"]) > 16
    with pytest.warns(TextTruncatedWarning):
        emb = siglip.embed_texts(texts)
    assert emb.truncated == [1]
    with torch.inference_mode():
        tokens = tokenizer(texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
        ref = _unit(_pooled(model.get_text_features(**tokens)))
    assert np.abs(emb.vectors - ref).max() <= TOL


# ----------------------------------------------------------------------------------------------
# SigLIP 2: variable-resolution patches (pixel_attention_mask, spatial_shapes), left padding


def test_siglip2_matches_transformers(siglip2_dir):
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = polymodal.load(str(siglip2_dir))
    assert model.scoring == "sigmoid" and model.dim == 32
    assert model.logit_scale == pytest.approx(8.0, rel=1e-5) and model.logit_bias == pytest.approx(-2.0)
    assert model.text_kwargs == {"padding": "max_length", "max_length": 16, "truncation": True}

    tokenizer = AutoTokenizer.from_pretrained(siglip2_dir)
    assert tokenizer.padding_side == "left"
    processor = AutoImageProcessor.from_pretrained(siglip2_dir)
    ref_model = AutoModel.from_pretrained(siglip2_dir).eval()
    images = _images(4)  # three aspect ratios: three different patch grids
    with torch.inference_mode():
        inputs = processor(images=images, return_tensors="pt")
        assert {"pixel_attention_mask", "spatial_shapes"} <= set(inputs)
        inputs.update(tokenizer(TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt"))
        out = ref_model(**inputs)
    img, txt = model.encode_images(images, batch_size=2), model.encode_texts(TEXTS)
    assert np.abs(img - out.image_embeds.numpy()).max() <= TOL
    assert np.abs(txt - out.text_embeds.numpy()).max() <= TOL
    assert np.abs(model.score(img, txt) - torch.sigmoid(out.logits_per_image).numpy()).max() <= TOL


# ----------------------------------------------------------------------------------------------
# ALIGN: the same backend, the other scoring


def test_align_softmax_with_temperature(align_dir):
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = polymodal.load(str(align_dir))
    assert model.scoring == "softmax"
    assert model.logit_bias is None
    assert model.logit_scale == pytest.approx(20.0, rel=1e-5)  # 1 / temperature
    assert model.dim == 16
    # AlignProcessor pads to max_length 64; capped here by the tokenizer's 12
    assert model.text_kwargs == {"padding": "max_length", "max_length": 12, "truncation": True}

    tokenizer = AutoTokenizer.from_pretrained(align_dir)
    processor = AutoImageProcessor.from_pretrained(align_dir)
    ref_model = AutoModel.from_pretrained(align_dir).eval()
    images, texts = _images(3), TEXTS + [LONG]
    with torch.inference_mode():
        inputs = processor(images=images, return_tensors="pt")
        inputs.update(tokenizer(texts, padding="max_length", max_length=12, truncation=True, return_tensors="pt"))
        out = ref_model(**inputs)
        expected = out.logits_per_image.softmax(dim=-1).numpy()
    with pytest.warns(TextTruncatedWarning):
        emb = model.embed_texts(texts)
    assert emb.truncated == [3]
    img = model.encode_images(images)
    assert np.abs(img - out.image_embeds.numpy()).max() <= TOL
    assert np.abs(emb.vectors - out.text_embeds.numpy()).max() <= TOL
    scores = model.score(img, emb.vectors)
    assert np.abs(scores - expected).max() <= TOL
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Not a dual encoder


def test_text_only_model_is_refused(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=16)).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="get_image_features") as info:
        polymodal.load(str(tmp_path))
    assert "BertModel" in str(info.value) and "dual encoder" in str(info.value)


def test_unknown_model_type_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "no-such-model"}')
    with pytest.raises(CheckpointError):
        polymodal.load(str(tmp_path))


def test_missing_tokenizer_dependency_names_the_install_command():
    from polymodal.backends.hf import _optional_dependency
    from polymodal.errors import BackendUnavailableError

    error = _optional_dependency(ImportError("SiglipTokenizer requires the SentencePiece library"), "the tokenizer")
    assert isinstance(error, BackendUnavailableError)
    assert "sentencepiece" in str(error) and "polymodal[hf]" in str(error)
    assert _optional_dependency(ImportError("something else"), "the tokenizer") is None
