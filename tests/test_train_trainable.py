"""Trainable models: in each mode exactly the intended parameters learn, the forward is the
embedder's, LoRA adds nothing at init, and lite's trainable form reproduces the shipped model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polymodal.errors import CheckpointError, InvalidInputError
from polymodal.models.clip import ClipConfig, ClipModel
from polymodal.models.losses import clip_loss, siglip_loss
from polymodal.train.trainable import build_trainable
from tests.conftest import shared_data

CAPTIONS = ["a dog runs on the grass", "two children play in the water", "a man rides a bike", "a red car"]


@pytest.fixture(scope="module")
def flickr():
    """Four real photos (paths) and their captions."""
    import json

    root = shared_data("flickr8k-subset")
    rows = [json.loads(line) for line in (root / "captions.jsonl").read_text().splitlines()[:4]]
    return [str(root / r["image"]) for r in rows], [r["caption"] for r in rows]


def crops(paths, size):
    """The eval view the embedders use, as a batch the data loader would give: (B, S, S, 3) uint8
    and the (w, h) sizes of the decoded images."""
    from polymodal.media import load_image
    from polymodal.models.clip import PreprocessConfig
    from polymodal.models.preprocess import ImageTransform

    transform = ImageTransform(PreprocessConfig(size=size))
    images = [load_image(p, draft_size=transform.draft_size()) for p in paths]
    pixels = torch.from_numpy(np.stack([transform.crop_uint8(im) for im in images]))
    return pixels, torch.tensor([im.size for im in images])


def step(trainable, pixels, sizes, captions, steps=1, lr=0.5, objective="clip"):
    """`steps` plain SGD steps (no weight decay or momentum: a frozen parameter cannot move)."""
    params = [p for p in trainable.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr)
    ii, ti = trainable.image_inputs(pixels, sizes), trainable.text_inputs(captions)
    for _ in range(steps):
        img, txt, scale, bias = trainable(ii, ti)
        loss = clip_loss(img, txt, scale) if objective == "clip" else siglip_loss(img, txt, scale, bias)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss


def check_only_trainable_change(trainable, expected: set[str], run, inert: set[str] = frozenset()) -> None:
    """`run` changes exactly the `expected` parameters, except `inert` ones: trainable parameters
    whose gradient is zero in exact arithmetic, so a step moves them by rounding error at most."""
    assert set(trainable.trainable_names()) == expected
    before = {n: p.detach().clone() for n, p in trainable.named_parameters()}
    buffers = {n: b.clone() for n, b in trainable.named_buffers()}  # e.g. BatchNorm statistics
    run()
    after = dict(trainable.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed - inert == expected - inert
    for n in inert:
        torch.testing.assert_close(after[n].detach(), before[n], rtol=0, atol=1e-6)
    assert all(after[n].grad is None for n in before if n not in expected)
    assert all(torch.equal(b, buffers[n]) for n, b in trainable.named_buffers())


def random_batch(size, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8), torch.tensor([[200, 150]] * n)


# ----------------------------------------------------------------------------------------------
# Native CLIP


def clip_names() -> list[str]:
    """Parameter names of the plain tiny CLIP, as the Trainable registers them."""
    return ["model." + n for n, _ in ClipModel(ClipConfig.named("tiny-test")).named_parameters()]


def expected_clip(mode: str) -> set[str]:
    names = clip_names()
    projections = {"model.visual.proj.weight", "model.textual.proj.weight", "model.logit_scale"}
    if mode == "full":
        return set(names)
    if mode == "lit":
        return {n for n in names if n.startswith("model.textual.")} | {"model.logit_scale"}
    if mode == "projection":
        return projections
    layers = ["attn.qkv", "attn.out", "mlp.fc", "mlp.proj"]
    lora = {f"model.{tower}.blocks.{i}.{layer}.lora_{ab}.default.weight"
            for tower in ("visual", "textual") for i in range(2) for layer in layers for ab in "AB"}
    return projections | lora


@pytest.mark.parametrize("mode", ["full", "lit", "projection", "lora"])
def test_clip_modes_train_exactly_their_parameters(mode):
    trainable = build_trainable("clip-tiny-random", mode=mode)
    pixels, sizes = random_batch(30)
    # two steps: LoRA's B starts at zero, so A only receives a gradient from the second step on
    check_only_trainable_change(trainable, expected_clip(mode), lambda: step(trainable, pixels, sizes, CAPTIONS, steps=2))


def test_lora_starts_as_the_base_model():
    base, lora = build_trainable("clip-tiny-random", mode="projection"), build_trainable("clip-tiny-random", mode="lora")
    pixels, sizes = random_batch(30)
    out_base = base(base.image_inputs(pixels, sizes), base.text_inputs(CAPTIONS))
    out_lora = lora(lora.image_inputs(pixels, sizes), lora.text_inputs(CAPTIONS))
    torch.testing.assert_close(out_lora[0], out_base[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(out_lora[1], out_base[1], rtol=0, atol=1e-6)


def test_forward_is_the_embedders_and_a_step_is_visible_through_it(flickr):
    from polymodal.embed.resolve import load_embedder

    paths, captions = flickr
    trainable = build_trainable("clip-tiny-random", mode="full")
    reference = load_embedder("clip-tiny-random")  # loaded on its own: the same seeded weights
    pixels, sizes = crops(paths, trainable.image_size)
    img, txt, scale, bias = trainable(trainable.image_inputs(pixels, sizes), trainable.text_inputs(captions))
    np.testing.assert_allclose(img.detach().numpy(), reference.encode_images(paths), atol=1e-5)
    np.testing.assert_allclose(txt.detach().numpy(), reference.encode_texts(captions), atol=1e-5)
    assert bias is None and math.isclose(float(scale.detach()), reference.logit_scale, rel_tol=1e-6)

    live = trainable.embedder()
    before = live.encode_texts(captions)
    step(trainable, pixels, sizes, captions)
    after = trainable.embedder()
    assert after is live and not np.allclose(live.encode_texts(captions), before, atol=1e-4)
    _, txt, scale, _ = trainable(trainable.image_inputs(pixels, sizes), trainable.text_inputs(captions))
    np.testing.assert_allclose(live.encode_texts(captions), txt.detach().numpy(), atol=1e-5)
    assert math.isclose(live.logit_scale, float(scale.detach()), rel_tol=1e-6)  # the new temperature too


def test_siglip_objective_adds_a_bias(tmp_path):
    pretrained = build_trainable("clip-tiny-random", mode="projection", objective="siglip")
    model = pretrained.model
    assert pretrained.objective_default == "siglip" and float(model.logit_bias.detach()) == -10.0
    assert math.isclose(float(model.logit_scale.detach()), math.log(1 / 0.07), rel_tol=1e-6)  # its own scale kept
    assert "model.logit_bias" in pretrained.trainable_names()
    pixels, sizes = random_batch(30)
    *_, bias = pretrained(pretrained.image_inputs(pixels, sizes), pretrained.text_inputs(CAPTIONS))
    assert bias is model.logit_bias
    step(pretrained, pixels, sizes, CAPTIONS, objective="siglip")
    assert float(model.logit_bias.detach()) != -10.0
    assert pretrained.embedder().scoring == "sigmoid"

    scratch = build_trainable("scratch:tiny-test", objective="siglip")
    assert math.isclose(float(scratch.model.logit_scale.detach().exp()), 10.0, rel_tol=1e-6)
    assert float(scratch.model.logit_bias.detach()) == -10.0

    # the softmax objective on a model with a bias leaves the bias alone (its loss never uses it)
    softmax = build_trainable(str(scratch.export(tmp_path / "sig", "sig")), mode="full", objective="clip")
    assert softmax.objective_default == "clip" and "model.logit_bias" not in softmax.trainable_names()
    assert build_trainable("scratch:tiny-test", objective="clip").model.logit_bias is None


def test_scratch_models_are_seeded_and_small_config_builds():
    a, b = build_trainable("scratch:tiny-test", seed=3), build_trainable("scratch:tiny-test", seed=3)
    c = build_trainable("scratch:tiny-test", seed=4)
    assert torch.equal(a.model.visual.proj.weight, b.model.visual.proj.weight)
    assert not torch.equal(a.model.visual.proj.weight, c.model.visual.proj.weight)
    small = build_trainable("scratch:small")
    assert (small.image_size, small.dim, small.name) == (64, 192, "scratch:small")
    pixels, sizes = random_batch(64, n=2)
    img, txt, _, _ = small(small.image_inputs(pixels, sizes), small.text_inputs(CAPTIONS[:2]))
    assert img.shape == txt.shape == (2, 192)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(2))


def test_trainable_state_round_trip_and_refusals():
    trainer = build_trainable("clip-tiny-random", mode="lora", seed=1)
    pixels, sizes = random_batch(30)
    step(trainer, pixels, sizes, CAPTIONS, steps=2)
    state = {k: v.clone() for k, v in trainer.trainable_state_dict().items()}
    assert set(state) == expected_clip("lora")

    fresh = build_trainable("clip-tiny-random", mode="lora", seed=1)
    fresh.load_trainable_state_dict(state)
    inputs = trainer.image_inputs(pixels, sizes), trainer.text_inputs(CAPTIONS)
    for got, want in zip(fresh(*inputs)[:3], trainer(*inputs)[:3]):
        torch.testing.assert_close(got, want, rtol=0, atol=0)

    with pytest.raises(CheckpointError, match=r"unexpected \['extra'\]"):
        fresh.load_trainable_state_dict({**state, "extra": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="missing"):
        build_trainable("clip-tiny-random", mode="projection").load_trainable_state_dict(state)


def test_bad_arguments_name_the_fix():
    with pytest.raises(InvalidInputError, match="mode 'partial' is not one of full, lit, projection, lora"):
        build_trainable("clip-tiny-random", mode="partial")
    with pytest.raises(InvalidInputError, match="objective 'sigmoid'"):
        build_trainable("clip-tiny-random", objective="sigmoid")
    with pytest.raises(InvalidInputError, match="unknown architecture 'nope'"):
        build_trainable("scratch:nope")
    with pytest.raises(InvalidInputError, match="no transformer layers for LoRA"):
        build_trainable("scratch:mini-conv", mode="lora")  # ConvNet + bag of words
    trainable = build_trainable("clip-tiny-random", mode="projection")
    with pytest.raises(InvalidInputError, match=r"uint8 tensor \(B, 30, 30, 3\)"):
        trainable.image_inputs(torch.zeros(2, 64, 64, 3, dtype=torch.uint8))
    with pytest.raises(InvalidInputError, match="list of strings"):
        trainable.text_inputs("one caption")


# ----------------------------------------------------------------------------------------------
# lite


LITE_ALWAYS = {"logit_scale", "tower.mix_weights", "tower.head.weight", "tower.head.bias"}
MINILM_LORA = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
               "intermediate.dense", "output.dense"]


def minilm_names() -> list[str]:
    from transformers import AutoModel

    from polymodal.models.minilm import minilm_dir

    return [n for n, _ in AutoModel.from_pretrained(str(minilm_dir())).named_parameters()]


def expected_lite(mode: str) -> set[str]:
    if mode in ("projection", "lit"):
        return LITE_ALWAYS
    if mode == "full":  # MiniLM without its pooler, which mean pooling never uses
        return LITE_ALWAYS | {"text." + n for n in minilm_names() if not n.startswith("pooler.")}
    return LITE_ALWAYS | {f"text.encoder.layer.{i}.{layer}.lora_{ab}.default.weight"
                          for i in range(6) for layer in MINILM_LORA for ab in "AB"}


@pytest.fixture(scope="module")
def lite_batch(flickr, tmp_path_factory):
    """Three photos and one thumbnail (42x31: lite's low-resolution path), as crops and sizes."""
    from PIL import Image

    paths, captions = flickr
    small = tmp_path_factory.mktemp("lite") / "thumb.png"
    Image.open(paths[3]).convert("RGB").resize((42, 31), Image.Resampling.BICUBIC).save(small)
    paths = [*paths[:3], str(small)]
    pixels, sizes = crops(paths, 224)
    return paths, captions, pixels, sizes


def test_lite_forward_reproduces_the_shipped_model(lite_batch):
    from polymodal.embed.resolve import load_embedder
    from polymodal.models.minilm import MiniLMEncoder

    paths, captions, pixels, sizes = lite_batch
    trainable = build_trainable("lite", mode="projection").eval()
    assert trainable.image_size == 224 and trainable.dim == 384 and trainable.objective_default == "clip"
    inputs = trainable.image_inputs(pixels, sizes)
    assert inputs["low_res"].tolist() == [False, False, False, True]
    with torch.no_grad():
        img, txt, scale, bias = trainable(inputs, trainable.text_inputs(captions))
    shipped = load_embedder("lite")  # its backbone runs in ONNX Runtime
    np.testing.assert_allclose(img.numpy(), shipped.encode_images(paths), atol=1e-4)
    # the shipped embedder runs MiniLM in bf16 on CPUs with bf16 units: compare with its fp32 path
    np.testing.assert_allclose(txt.numpy(), MiniLMEncoder()(captions)[0], atol=1e-4)
    assert bias is None and math.isclose(float(scale), shipped.logit_scale, rel_tol=1e-6)


@pytest.mark.parametrize("mode", ["projection", "full", pytest.param("lora", marks=pytest.mark.slow)])
def test_lite_modes_train_exactly_their_parameters(mode, lite_batch):
    _, captions, pixels, sizes = lite_batch
    captions = captions[1:] + captions[:1]  # lite already pairs these photos right: loss ~0, no gradient
    trainable = build_trainable("lite", mode=mode)
    if mode == "projection":
        assert set(build_trainable("lite", mode="lit").trainable_names()) == LITE_ALWAYS
    backbone = trainable.tower.backbone
    # Attention is blind to the key bias: it adds q.b_k to every logit of a query alike, and the
    # softmax cancels it, so its gradient is zero (and a step moves it by rounding at most).
    inert = {n for n in expected_lite(mode) if n.endswith("attention.self.key.bias")}
    check_only_trainable_change(trainable, expected_lite(mode),
                                lambda: step(trainable, pixels, sizes, captions, steps=2 if mode == "lora" else 1),
                                inert)
    assert not backbone.training  # BatchNorm statistics never move
    assert trainable.text.training == (mode != "projection")
