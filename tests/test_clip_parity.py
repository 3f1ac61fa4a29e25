"""Parity of the native CLIP with implementations polymodal did not write.

The same random weights, saved in each ecosystem's real layout, loaded through polymodal's
resolver, must give the same embeddings (max abs diff <= 1e-4): transformers' CLIPModel (its
save_pretrained directory), open_clip's CLIP (an open_clip hub directory and a bare state dict),
and OpenAI's state-dict layout (checked against open_clip's own loader for OpenAI weights).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import polymodal
from polymodal.models.tokenizer import ClipTokenizer
from tests._references import import_open_clip

TEXTS = ["a photo of a cat", "two dogs playing in the snow", "a red car!", "x"]
TOL = 1e-4
SCALE = 0.2  # std of the random weights: large enough that a wrong wiring shows


def _images(sizes=((30, 30), (45, 30), (30, 61), (120, 90))):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def _unit(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.float(), dim=-1).detach().numpy()


# ----------------------------------------------------------------------------------------------
# transformers


def _hf_clip_dir(tmp_path, clip_bpe, act="quick_gelu", eos=49407, intermediate=64):
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=intermediate, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, hidden_act=act,
                         bos_token_id=49406, eos_token_id=eos, pad_token_id=49407),
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                           image_size=30, patch_size=10, hidden_act=act),
        projection_dim=24,
    )
    model = CLIPModel(config).eval()
    path = tmp_path / "hf-clip"
    model.save_pretrained(path)
    CLIPImageProcessorPil(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30}).save_pretrained(path)
    ClipTokenizer.from_bpe_file(clip_bpe).save(path)
    return model, path


@pytest.mark.parametrize("act,eos,intermediate", [("quick_gelu", 49407, 64), ("gelu", 2, 37)])
def test_hf_clip_directory_parity(tmp_path, clip_bpe, act, eos, intermediate):
    from transformers import CLIPImageProcessorPil, CLIPTokenizer

    hf, path = _hf_clip_dir(tmp_path, clip_bpe, act, eos, intermediate)
    ours = polymodal.load(str(path))
    assert ours.dim == 24 and ours.scoring == "softmax"

    images = _images()
    pixels = CLIPImageProcessorPil.from_pretrained(path)(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ref_img = _unit(hf.get_image_features(pixel_values=pixels).pooler_output)
    got_img = ours.encode_images(images)  # end to end: our preprocessing and our model
    assert np.abs(got_img - ref_img).max() <= TOL

    tok = CLIPTokenizer.from_pretrained(path)(TEXTS, padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        ref_txt = _unit(hf.get_text_features(**tok).pooler_output)
    got_txt = ours.encode_texts(TEXTS)
    assert np.abs(got_txt - ref_txt).max() <= TOL
    assert ours.logit_scale == pytest.approx(float(hf.logit_scale.detach().exp()), rel=1e-6)


def test_positional_embedding_interpolation_matches_transformers(tmp_path, clip_bpe):
    hf, path = _hf_clip_dir(tmp_path, clip_bpe)
    ours = polymodal.load(str(path))
    pixels = torch.randn(2, 3, 50, 40)  # a 5x4 patch grid from a model trained on 3x3
    with torch.no_grad():
        ref = _unit(hf.get_image_features(pixel_values=pixels, interpolate_pos_encoding=True).pooler_output)
        got = ours.model.encode_image(pixels).numpy()
    assert np.abs(got - ref).max() <= TOL


def test_hf_clip_from_the_cache_by_name(tmp_path, clip_bpe, monkeypatch):
    """hf:org/repo resolves through the Hugging Face cache layout without any network."""
    _, path = _hf_clip_dir(tmp_path, clip_bpe)
    cache = tmp_path / "cache"
    snapshot = cache / "models--acme--tiny-clip" / "snapshots" / "abc123"
    snapshot.parent.mkdir(parents=True)
    path.rename(snapshot)
    (cache / "models--acme--tiny-clip" / "refs").mkdir()
    (cache / "models--acme--tiny-clip" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    model = polymodal.load("hf:acme/tiny-clip")
    assert model.name == "hf:acme/tiny-clip" and model.dim == 24
    assert polymodal.load("hf:acme/tiny-clip@abc123").dim == 24


# ----------------------------------------------------------------------------------------------
# open_clip and OpenAI


def _open_clip_model(quick_gelu: bool, logit_bias=None, vision_width=32, text_width=32, heads=2):
    open_clip = import_open_clip()
    torch.manual_seed(1)
    model = open_clip.model.CLIP(
        embed_dim=24,
        vision_cfg=dict(layers=2, width=vision_width, head_width=vision_width // heads, patch_size=8, image_size=32),
        text_cfg=dict(context_length=77, vocab_size=49408, width=text_width, heads=heads, layers=2),
        quick_gelu=quick_gelu,
        init_logit_bias=logit_bias,
    ).eval()
    # open_clip initialises some tensors to zero; randomise every tensor so parity means something.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * SCALE)
        model.logit_scale.fill_(2.0)
    return model


def _compare_to_open_clip(reference, ours):
    pixels = torch.randn(3, 3, 32, 32)
    ids = torch.from_numpy(ClipTokenizer.default()(TEXTS).ids)
    with torch.no_grad():
        ref_img = _unit(reference.encode_image(pixels))
        ref_txt = _unit(reference.encode_text(ids))
        got_img = ours.model.encode_image(pixels).numpy()
    got_txt = ours.encode_texts(TEXTS)
    assert np.abs(got_img - ref_img).max() <= TOL
    assert np.abs(got_txt - ref_txt).max() <= TOL


@pytest.mark.parametrize("quick_gelu", [True, False])
def test_open_clip_hub_directory_parity(tmp_path, quick_gelu):
    from safetensors.torch import save_file

    reference = _open_clip_model(quick_gelu)
    path = tmp_path / "oc"
    path.mkdir()
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path / "open_clip_model.safetensors"))
    (path / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": {"embed_dim": 24, "quick_gelu": quick_gelu,
                      "vision_cfg": {"layers": 2, "width": 32, "head_width": 16, "patch_size": 8, "image_size": 32},
                      "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}},
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic"},
    }))
    ours = polymodal.load(str(path))
    assert ours.model.config.act == ("quick_gelu" if quick_gelu else "gelu")
    assert ours.transform.cfg.mean == (0.5, 0.5, 0.5)
    _compare_to_open_clip(reference, ours)


def test_open_clip_sigmoid_variant_keeps_its_bias(tmp_path):
    reference = _open_clip_model(quick_gelu=False, logit_bias=-5.0, vision_width=64, text_width=64, heads=1)
    with torch.no_grad():
        reference.logit_bias.fill_(-5.0)
    torch.save(reference.state_dict(), tmp_path / "siglipish.pt")
    ours = polymodal.load(str(tmp_path / "siglipish.pt"))
    assert ours.scoring == "sigmoid" and ours.logit_bias == pytest.approx(-5.0)
    _compare_to_open_clip(reference, ours)
    scores = ours.score(ours.encode_texts(["a"]), ours.encode_texts(["a", "b"]))
    assert ((scores > 0) & (scores < 1)).all()


def test_openai_state_dict_parity(tmp_path):
    """OpenAI's layout: open_clip's key names plus three integer entries, QuickGELU, 64-wide heads.
    The reference is open_clip's loader for OpenAI weights, which rebuilds the model from them."""
    open_clip = import_open_clip()
    source = _open_clip_model(quick_gelu=True, vision_width=128, text_width=64, heads=2)
    state = source.state_dict()
    state.update(input_resolution=torch.tensor(32), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    torch.save(state, tmp_path / "ViT-tiny.pt")
    reference = open_clip.model.build_model_from_openai_state_dict(dict(state)).float().eval()
    # open_clip's loader casts to fp16 (as OpenAI shipped); restore the exact fp32 weights.
    reference.load_state_dict(source.state_dict())
    ours = polymodal.load(str(tmp_path / "ViT-tiny.pt"))
    assert ours.model.config.act == "quick_gelu"
    assert ours.model.config.vision.heads == 2 and ours.model.config.text.heads == 1
    _compare_to_open_clip(reference, ours)


def test_saved_native_model_round_trips(tmp_path):
    from polymodal.embed.resolve import save_embedder

    original = polymodal.load("clip-tiny-random")
    save_embedder(original, tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").is_file() and (tmp_path / "saved" / "vocab.json").is_file()
    loaded = polymodal.load(str(tmp_path / "saved"))
    images = _images()
    assert np.array_equal(loaded.encode_images(images), original.encode_images(images))
    assert np.array_equal(loaded.encode_texts(TEXTS), original.encode_texts(TEXTS))
    assert loaded.name == "clip-tiny-random"
