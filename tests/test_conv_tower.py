"""The from-scratch recipe's parts of the native CLIP: the ConvNet image tower ("vision": {"type":
"conv"}) and mean-pooled text ("text": {"pool": "mean"}; with no layers, a bag of words). Configs
round-trip, each forward pass is the one its docstring states, every weight learns, and a model
with them saves, loads, trains, exports (safetensors and ONNX) and is accepted by `classify`,
`index` and `search` (through the collection it filled) exactly as a ViT one is."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from polymodal.cli.main import EXIT_OK, main
from polymodal.embed.resolve import build_random, load_embedder, save_embedder
from polymodal.errors import CheckpointError
from polymodal.models.clip import (CONFIG_DIR, ClipConfig, ClipModel, ConvTower, ConvVisionConfig, TextConfig,
                                   TextTransformer, VisionConfig)
from polymodal.train.export import export_named
from polymodal.train.trainable import build_trainable
from tests.test_train_trainable import crops, step

ARCH = "conv-tiny-test"


@pytest.fixture
def images(tmp_path) -> list[str]:
    """Four noisy pictures of different sizes and aspect ratios, as files."""
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(30, 30), (64, 40), (37, 90), (120, 120)]):
        path = tmp_path / "pics" / f"p{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_config_round_trips_and_old_configs_stay_vits():
    config = ClipConfig.named(ARCH)
    assert isinstance(config.vision, ConvVisionConfig) and config.vision.widths == (8, 16)
    again = ClipConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    for name in ("tiny-test", "mini", "small"):  # no "type" key: a ViT, as before
        assert isinstance(ClipConfig.named(name).vision, VisionConfig)


def test_every_config_file_builds():
    for path in sorted(CONFIG_DIR.glob("*.json")):
        if path.stem.startswith("ViT-"):
            continue  # full-size architectures: seconds each to build, and covered by parity tests
        model = ClipModel(ClipConfig.named(path.stem))
        size = model.config.preprocess.size
        out = model.encode_image(torch.zeros(1, 3, size, size))
        assert out.shape == (1, model.config.embed_dim), path.stem


def test_bad_vision_configs_are_named():
    base = ClipConfig.named(ARCH).to_dict()
    with pytest.raises(CheckpointError, match="'resnet'"):
        ClipConfig.from_dict({**base, "vision": {**base["vision"], "type": "resnet"}})
    with pytest.raises(CheckpointError, match="patch_size"):
        ClipConfig.from_dict({**base, "vision": {**base["vision"], "patch_size": 8}})
    with pytest.raises(CheckpointError, match="divisible by groups"):
        ClipModel(ClipConfig.from_dict({**base, "vision": {**base["vision"], "widths": [8, 10]}}))


def test_forward_is_conv_groupnorm_gelu_pool_stages():
    """The tower against its stated computation, written with torch.nn.functional alone."""
    cfg = ConvVisionConfig(image_size=20, widths=(8, 16, 16), depth=2, stem_stride=2, groups=4)
    torch.manual_seed(0)
    tower = ConvTower(cfg, 12, "gelu", 1e-5)
    with torch.no_grad():  # non-trivial norm gains and shifts
        for m in tower.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
    pixels = torch.randn(3, 3, 20, 22)
    convs = [m for m in tower.stages if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in tower.stages if isinstance(m, torch.nn.GroupNorm)]
    x, k = pixels, 0
    for i in range(len(cfg.widths)):
        if i:
            x = F.max_pool2d(x, 2)
        for j in range(cfg.depth):
            x = F.conv2d(x, convs[k].weight, stride=2 if i == j == 0 else 1, padding=1)
            x = F.gelu(F.group_norm(x, 4, norms[k].weight, norms[k].bias, 1e-5))
            k += 1
    assert x.shape[-2:] == (2, 2)  # 20x22 -> stride 2 -> 10x11 -> pool -> 5x5 -> pool -> 2x2
    expected = F.layer_norm(x.mean(dim=(2, 3)), (16,), tower.ln_post.weight, tower.ln_post.bias, 1e-5)
    expected = expected @ tower.proj.weight.T
    torch.testing.assert_close(tower(pixels), expected, rtol=1e-5, atol=1e-5)


def test_mean_pooling_is_the_mean_up_to_end_of_text_and_ignores_padding():
    torch.manual_seed(0)
    cfg = TextConfig(context_length=8, vocab_size=50, width=6, layers=0, heads=2, eot_token_id=49, pool="mean")
    tower = TextTransformer(cfg, 4, "gelu", 1e-5)
    ids = torch.tensor([[48, 5, 7, 49, 0, 0], [48, 3, 49, 0, 0, 0]])  # start, words, end-of-text, padding
    x = F.layer_norm(tower.token_embedding(ids) + tower.positional_embedding[:6], (6,),
                     tower.ln_final.weight, tower.ln_final.bias, 1e-5)
    expected = torch.stack([x[0, :4].mean(0), x[1, :3].mean(0)]) @ tower.proj.weight.T
    torch.testing.assert_close(tower(ids), expected)
    torch.testing.assert_close(tower(ids[:, :4]), expected)  # trimming the padding changes nothing
    with pytest.raises(CheckpointError, match="'max'"):
        TextTransformer(TextConfig(pool="max", layers=0), 4, "gelu", 1e-5)


def test_every_weight_learns_and_train_equals_eval():
    torch.manual_seed(0)
    model = ClipModel(ClipConfig.named(ARCH))
    # GroupNorm keeps no running statistics: nothing but parameters to save, no train/eval gap
    assert not list(model.visual.buffers())
    pixels = torch.randn(4, 3, 30, 30)
    ids = torch.tensor([[49406, 320, 1929, 49407], [49406, 320, 2368, 49407]] * 2)
    img, txt, scale, _ = model(pixels, ids)
    (img @ txt.T * scale).logsumexp(1).sum().backward()
    for name, p in model.visual.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    with torch.no_grad():
        torch.testing.assert_close(model.eval().encode_image(pixels), img.detach())
    # pooled features: any input size gives (B, D)
    assert model.encode_image(torch.randn(2, 3, 45, 33)).shape == (2, 32)


def test_save_load_round_trip_through_the_resolver(tmp_path, images, clip_bpe):
    native = build_random(ARCH, name="conv-tiny-random")
    folder = save_embedder(native, tmp_path / "conv")
    loaded = load_embedder(str(folder))
    texts = ["a dog on the grass", "snow"]
    np.testing.assert_allclose(loaded.encode_images(images), native.encode_images(images), atol=1e-6)
    np.testing.assert_allclose(loaded.encode_texts(texts), native.encode_texts(texts), atol=1e-6)


def trained_export(tmp_path, images, monkeypatch) -> tuple:
    """A conv model trained 2 steps and exported as "conv-ft"; its live embedder and the steps' effect."""
    monkeypatch.setenv("POLYMODAL_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("POLYMODAL_DB", str(tmp_path / "db"))
    trainable = build_trainable(f"scratch:{ARCH}", seed=1)
    pixels, sizes = crops(images, trainable.image_size)
    before = trainable.embedder().encode_images(images).copy()
    step(trainable, pixels, sizes, ["a red square", "a dog", "a beach", "snow"], steps=2, lr=0.2)
    live = trainable.embedder()
    export_named(trainable, "conv-ft")
    return live, np.abs(live.encode_images(images) - before).max()


def test_trained_export_gives_the_same_embeddings_and_classify_accepts_it(tmp_path, images, monkeypatch, capsys,
                                                                         clip_bpe):
    live, moved = trained_export(tmp_path, images, monkeypatch)
    assert moved > 1e-3  # the steps moved the conv tower
    exported = load_embedder("conv-ft")
    np.testing.assert_allclose(exported.encode_images(images), live.encode_images(images), atol=1e-5)
    texts = ["a dog", "a red square on the beach"]
    np.testing.assert_allclose(exported.encode_texts(texts), live.encode_texts(texts), atol=1e-5)
    assert main(["classify", images[0], "--labels", "dog,beach", "--model", "conv-ft", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["predictions"]


@pytest.mark.slow  # LanceDB: several seconds on a loaded 2-core machine
def test_index_and_search_accept_the_export(tmp_path, images, monkeypatch, capsys, clip_bpe):
    trained_export(tmp_path, images, monkeypatch)
    assert main(["index", str(tmp_path / "pics"), "--model", "conv-ft", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["count"] == 4
    assert main(["search", "a dog", "-k", "2", "--json"]) == EXIT_OK  # the collection's model embeds the query
    result = json.loads(capsys.readouterr().out)
    assert len(result["hits"]) == 2 and result["model"] == "conv-ft"


def test_onnx_export_matches_pytorch(tmp_path, images, clip_bpe):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import polymodal
    from polymodal.backends.onnx import export_onnx

    native = build_random(ARCH, name="conv-tiny-random")
    onnx_model = polymodal.load(str(export_onnx(native, tmp_path / "onnx")))
    np.testing.assert_allclose(onnx_model.encode_images(images), native.encode_images(images), atol=1e-4)
    texts = ["a", "a dog on the grass next to a red house", "snow"]  # mixed lengths: the mean's mask
    np.testing.assert_allclose(onnx_model.encode_texts(texts), native.encode_texts(texts), atol=1e-4)
