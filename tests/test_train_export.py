"""Exporting trained models: LoRA merged exactly, names the resolver and the CLI accept, registry
names protected, and weight-space ensembling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polymodal.cli.main import EXIT_ERROR, EXIT_OK, main
from polymodal.embed.resolve import load_embedder, save_embedder
from polymodal.errors import CheckpointError, InvalidInputError, ModelNotFoundError
from polymodal.train.export import export_named, merged_state_dict, models_dir, weight_average
from polymodal.train.trainable import build_trainable
from tests.conftest import shared_data
from tests.test_train_trainable import crops, step


@pytest.fixture(autouse=True)
def _models(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYMODAL_MODELS", str(tmp_path / "models"))


@pytest.fixture(scope="module")
def flickr():
    root = shared_data("flickr8k-subset")
    rows = [json.loads(line) for line in (root / "captions.jsonl").read_text().splitlines()[4:8]]
    return [str(root / r["image"]) for r in rows], [r["caption"] for r in rows]


def trained(model: str, mode: str, flickr, steps: int = 2, **options):
    paths, captions = flickr
    trainable = build_trainable(model, mode=mode, **options)
    pixels, sizes = crops(paths, trainable.image_size)
    step(trainable, pixels, sizes, captions[1:] + captions[:1], steps=steps, lr=0.2)  # mismatched: a real gradient
    return trainable


def classify_json(capsys, model: str, paths) -> dict:
    code = main(["classify", *paths, "--labels", "dog,child,water", "--templates", "simple", "--model", model, "--json"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    return json.loads(out)


def test_models_dir_follows_the_environment(tmp_path, monkeypatch):
    assert models_dir() == tmp_path / "models"
    monkeypatch.delenv("POLYMODAL_MODELS")
    assert models_dir().parts[-4:] == (".local", "share", "polymodal", "models")


def test_lora_export_equals_the_live_model_and_loads_by_name(flickr, capsys):
    paths, captions = flickr
    trainable = trained("clip-tiny-random", "lora", flickr)
    live = trainable.embedder()
    folder = export_named(trainable, "tiny-ft")
    assert folder == models_dir() / "tiny-ft"
    from safetensors.torch import load_file

    weights = load_file(str(folder / "model.safetensors"))
    assert not [k for k in weights if "lora" in k]
    base = build_trainable("clip-tiny-random", mode="full").model.state_dict()
    assert not torch.equal(weights["visual.blocks.0.attn.qkv.weight"], base["visual.blocks.0.attn.qkv.weight"])

    loaded = load_embedder("tiny-ft")
    assert loaded.name == "tiny-ft" and loaded.dim == 32
    np.testing.assert_allclose(loaded.encode_images(paths), live.encode_images(paths), atol=1e-5)
    np.testing.assert_allclose(loaded.encode_texts(captions), live.encode_texts(captions), atol=1e-5)
    assert loaded.logit_scale == pytest.approx(live.logit_scale, rel=1e-6)

    result = classify_json(capsys, "tiny-ft", paths[:2])
    assert result["model"] == "tiny-ft" and len(result["predictions"]) == 2


def test_merged_state_follows_the_lora_formula():
    trainable = build_trainable("clip-tiny-random", mode="lora", lora_rank=4, lora_alpha=12)
    layer = trainable.model.visual.blocks[1].mlp.fc
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    merged = merged_state_dict(trainable.model)
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight  # (r, in), (out, r)
    want = layer.base_layer.weight + (12 / 4) * B @ A  # W + (alpha / r) B A (Hu et al. 2021)
    torch.testing.assert_close(merged["visual.blocks.1.mlp.fc.weight"], want.detach())
    assert set(merged) == set(build_trainable("clip-tiny-random", mode="full").model.state_dict())


def test_siglip_export_keeps_the_bias_and_sigmoid_scoring(flickr, tmp_path):
    trainable = build_trainable("scratch:tiny-test", mode="full", objective="siglip")
    loaded = load_embedder(trainable.export(tmp_path / "sig", "sig"))
    assert loaded.scoring == "sigmoid" and loaded.logit_bias == pytest.approx(-10.0)
    assert loaded.logit_scale == pytest.approx(10.0, rel=1e-6)


def test_registry_names_win_and_cannot_be_exported(flickr):
    trainable = build_trainable("scratch:tiny-test", mode="projection", seed=5)
    with pytest.raises(InvalidInputError, match="'clip-tiny-random' is a registered model name"):
        export_named(trainable, "clip-tiny-random")
    # a folder of that name put there by hand is never picked over the registry's model
    save_embedder(trainable.embedder(), models_dir() / "clip-tiny-random")
    paths, _ = flickr
    registry = build_trainable("clip-tiny-random", mode="full").embedder().encode_images(paths[:1])
    np.testing.assert_array_equal(load_embedder("clip-tiny-random").encode_images(paths[:1]), registry)


def test_unknown_names_list_the_exported_models(capsys):
    export_named(build_trainable("clip-tiny-random", mode="projection"), "my-tiny")
    with pytest.raises(ModelNotFoundError, match=r"Did you mean 'my-tiny'\?.*exported models in .*: my-tiny"):
        load_embedder("my-tinny")
    assert main(["classify", "x.jpg", "--labels", "a,b", "--model", "nothing-here"]) == EXIT_ERROR
    assert "my-tiny" in capsys.readouterr().err


def test_export_names_are_checked_before_anything_is_written():
    trainable = build_trainable("clip-tiny-random", mode="projection")
    for bad in ["", "../up", "a/b", "hf:org/x", ".hidden", "scratch:small"]:
        with pytest.raises(InvalidInputError, match="cannot be exported"):
            export_named(trainable, bad)
    export_named(trainable, "again")
    with pytest.raises(InvalidInputError, match="already exists.*overwrite=True"):
        export_named(trainable, "again")
    with torch.no_grad():
        trainable.model.logit_scale.fill_(1.0)
    export_named(trainable, "again", overwrite=True)
    assert load_embedder("again").logit_scale == pytest.approx(np.e)
    assert sorted(p.name for p in models_dir().iterdir()) == ["again"]  # no staging folder left


def test_fine_tuned_lite_classifies_by_name_in_the_cli(flickr, capsys, monkeypatch):
    import polymodal.embed.lite as lite_module
    from polymodal.tasks.zeroshot import classify

    monkeypatch.setattr(lite_module, "BF16_TEXT", False)  # MiniLM in fp32 on both sides
    paths, captions = flickr
    trainable = trained("lite", "projection", flickr, objective="siglip")
    folder = export_named(trainable, "lite-ft")
    meta = json.loads((folder / "polymodal_config.json").read_text())
    assert meta["family"] == "lite" and not (folder / "text").exists()  # MiniLM untouched: the package's

    # the CLI loads "lite-ft" through the resolver; its scores (images, texts, scale, bias and
    # sigmoid scoring together) must be the live model's
    got = classify_json(capsys, "lite-ft", paths)
    want = classify(trainable.embedder(), paths, ["dog", "child", "water"], templates="simple").to_dict()
    assert (got["model"], got["scoring"], want["scoring"]) == ("lite-ft", "sigmoid", "sigmoid")
    for g, w in zip(got["predictions"], want["predictions"]):
        assert [x["label"] for x in g["labels"]] == [x["label"] for x in w["labels"]]
        np.testing.assert_allclose([x["score"] for x in g["labels"]], [x["score"] for x in w["labels"]], atol=1e-5)


@pytest.mark.slow
def test_lora_lite_exports_merged_minilm(flickr, monkeypatch):
    import polymodal.embed.lite as lite_module

    monkeypatch.setattr(lite_module, "BF16_TEXT", False)  # compare MiniLM in fp32 on both sides
    paths, captions = flickr
    trainable = build_trainable("lite", mode="lora")
    live = trainable.embedder()
    untrained = live.encode_texts(captions)  # LoRA's B starts at zero: the shipped text tower
    pixels, sizes = crops(paths, trainable.image_size)
    step(trainable, pixels, sizes, captions[1:] + captions[:1], steps=2, lr=0.2)
    assert trainable.embedder() is live  # weights are shared; the call re-reads scale and bias
    folder = export_named(trainable, "lite-lora")
    from safetensors.torch import load_file

    assert not [k for k in load_file(str(folder / "text" / "model.safetensors")) if "lora" in k]
    loaded = load_embedder("lite-lora")
    assert (loaded.name, loaded.dim, loaded.scoring) == ("lite-lora", 384, "softmax")
    assert loaded.logit_scale == pytest.approx(live.logit_scale)
    np.testing.assert_allclose(loaded.encode_images(paths), live.encode_images(paths), atol=1e-5)
    np.testing.assert_allclose(loaded.encode_texts(captions), live.encode_texts(captions), atol=1e-5)
    assert not np.allclose(loaded.encode_texts(captions), untrained, atol=1e-3)
    mix = trainable.tower.mix_weights.detach().tolist()
    assert [loaded.tower.config.mix, loaded.tower.config.mix_low_res] == pytest.approx(mix)


def test_weight_average_is_wise_ft():
    a = build_trainable("scratch:tiny-test", seed=1).model.state_dict()
    b = build_trainable("scratch:tiny-test", seed=2).model.state_dict()
    for alpha, want in [(0, a), (1, b), (0.0, a), (1.0, b)]:
        got = weight_average(a, b, alpha)
        assert all(torch.equal(got[k], want[k]) for k in a)
    half = weight_average(a, b, 0.25)
    key = "visual.proj.weight"
    np.testing.assert_allclose(half[key].numpy(), 0.75 * a[key].numpy() + 0.25 * b[key].numpy(), rtol=1e-6)
    assert half[key].data_ptr() not in (a[key].data_ptr(), b[key].data_ptr())

    with pytest.raises(CheckpointError, match=r"only in the first \['visual.proj.weight'\]"):
        weight_average(a, {k: v for k, v in b.items() if k != key}, 0.5)
    with pytest.raises(CheckpointError, match="visual.proj.weight: \\(32, 32\\)"):
        weight_average(a, {**b, key: torch.zeros(32, 33)}, 0.5)
    with pytest.raises(CheckpointError, match="non-floating"):
        weight_average({"n": torch.tensor(1)}, {"n": torch.tensor(2)}, 0.5)
    for bad in (-0.1, 1.5, "0.5", True):
        with pytest.raises(InvalidInputError, match="alpha must be a number in"):
            weight_average(a, b, bad)
