"""ONNX export of the native tiny model and the ONNX Runtime embedder that reads it back."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import torch  # noqa: E402

import polymodal  # noqa: E402
from polymodal.backends.onnx import IMAGE_FILE, TEXT_FILE, OnnxEmbedder, export_onnx  # noqa: E402
from polymodal.embed.base import TextTruncatedWarning  # noqa: E402
from polymodal.embed.resolve import build_random  # noqa: E402
from polymodal.errors import CheckpointError, InvalidInputError  # noqa: E402
from polymodal.models.clip import ClipModel  # noqa: E402

TOL = 1e-3  # the brief's bound; the observed differences are ~1e-7 (float32 rounding)
LONG = " ".join(["a very long caption about a cat on a mat"] * 12)  # > 77 tokens: truncated
TEXTS = ["a", "a photo of a cat", "two dogs playing in the snow next to a red house", LONG, "hello!"]


@pytest.fixture(scope="module")
def native():
    return build_random("tiny-test", name="clip-tiny-random")


@pytest.fixture(scope="module")
def exported(native, tmp_path_factory):
    return export_onnx(native, tmp_path_factory.mktemp("onnx") / "tiny")


@pytest.fixture(scope="module")
def model(exported):
    return polymodal.load(str(exported))


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(30, 30), (45, 31), (31, 64), (80, 50), (12, 17), (30, 90), (64, 64)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in
            (sizes[i % len(sizes)] for i in range(n))]


def test_export_writes_a_self_describing_directory(native, exported):
    names = {p.name for p in exported.iterdir()}
    assert {IMAGE_FILE, TEXT_FILE, ClipModel.CONFIG, "vocab.json", "merges.txt"} <= names
    meta = json.loads((exported / ClipModel.CONFIG).read_text())
    assert meta["family"] == "onnx" and meta["name"] == "clip-tiny-random"
    assert meta["config"] == json.loads(json.dumps(native.model.config.to_dict()))
    assert meta["logit_scale"] == pytest.approx(native.logit_scale) and meta["logit_bias"] is None

    import onnx

    for file, name, rank in ((IMAGE_FILE, "pixels", 4), (TEXT_FILE, "ids", 2)):
        graph = onnx.load(str(exported / file)).graph
        (inp,), (out,) = graph.input, graph.output
        assert inp.name == name and out.name == "embeddings"
        in_dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        out_dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
        assert len(in_dims) == rank and isinstance(in_dims[0], str)  # dynamic batch
        assert isinstance(out_dims[0], str) and out_dims[1] == native.dim
        if name == "ids":
            assert isinstance(in_dims[1], str)  # dynamic length
        else:
            assert in_dims[1:] == [3, 30, 30]


def test_loads_through_the_resolver_with_the_native_attributes(native, model):
    assert isinstance(model, OnnxEmbedder)
    assert (model.name, model.dim, model.scoring) == (native.name, native.dim, native.scoring)
    assert model.logit_scale == pytest.approx(native.logit_scale, rel=1e-6) and model.logit_bias is None
    assert model.draft_size() == native.draft_size()
    assert model.describe()["backend"] == "OnnxEmbedder"


def test_image_embeddings_match_pytorch(native, model):
    images = _images(7)
    expected = native.encode_images(images)
    for batch_size in (3, 7, 1):  # the graph was traced with a batch of 2
        got = model.encode_images(images, batch_size=batch_size)
        assert got.shape == (7, native.dim) and got.dtype == np.float32
        assert np.abs(got - expected).max() <= TOL
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_image_graph_matches_the_model_on_raw_pixels(native, model):
    pixels = torch.randn(5, 3, 30, 30, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected = native.model.encode_image(pixels).numpy()
    got = model.image_session.run(None, {"pixels": pixels.numpy()})[0]
    assert np.abs(got - expected).max() <= TOL


def test_text_embeddings_match_pytorch_on_mixed_lengths(native, model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TextTruncatedWarning)
        expected = native.embed_texts(TEXTS)
    for batch_size in (5, 2, 1):  # different trimmed lengths per batch
        with pytest.warns(TextTruncatedWarning):
            got = model.embed_texts(TEXTS, batch_size=batch_size)
        assert got.kept == expected.kept and got.truncated == expected.truncated == [3]
        assert np.abs(got.vectors - expected.vectors).max() <= TOL


def test_text_graph_takes_any_length_up_to_the_context(native, model):
    """Untrimmed (77) and trimmed ids give the same vectors; the causal mask follows T."""
    tok = native.tokenizer(TEXTS[:3], context_length=77)
    full = torch.from_numpy(tok.ids)
    with torch.inference_mode():
        expected = native.model.encode_text(full).numpy()
    longest = int((tok.ids == native.tokenizer.eot_token_id).argmax(axis=1).max()) + 1
    for length in (77, 40, longest):
        got = model.text_session.run(None, {"ids": tok.ids[:, :length]})[0]
        assert np.abs(got - expected).max() <= TOL


def test_scores_equal_the_native_ones(native, model):
    images = _images(3, seed=5)
    texts = ["a cat", "a dog", "a car", "a photo of a red house"]
    ni, nt = native.encode_images(images), native.encode_texts(texts)
    oi, ot = model.encode_images(images), model.encode_texts(texts)
    assert np.array_equal(model.score(ni, nt), native.score(ni, nt))
    assert np.abs(model.score(oi, ot) - native.score(ni, nt)).max() <= TOL


def test_sigmoid_scoring_round_trips(tmp_path):
    from polymodal.embed.native import ClipEmbedder
    from polymodal.models.clip import ClipConfig
    from polymodal.models.tokenizer import ClipTokenizer

    config = ClipConfig.named("tiny-test")
    config.logit_bias_init = -10.0
    config.text.context_length = 16
    config.vision.layers = config.text.layers = 1
    torch.manual_seed(0)
    native = ClipEmbedder(ClipModel(config), ClipTokenizer.default(), "tiny-sigmoid")
    loaded = polymodal.load(str(export_onnx(native, tmp_path / "sig", opset=17)))
    assert loaded.scoring == "sigmoid" and loaded.logit_bias == pytest.approx(-10.0)
    texts = ["a cat", "a photo of two dogs on a beach in the summer sun at noon today"]  # truncated at 16
    with pytest.warns(TextTruncatedWarning):
        got = loaded.encode_texts(texts)
    with pytest.warns(TextTruncatedWarning):
        expected = native.encode_texts(texts)
    assert np.abs(got - expected).max() <= TOL
    vi = native.encode_images(_images(2))
    assert np.allclose(loaded.score(vi, expected), native.score(vi, expected))


def test_cli_export(tmp_path, capsys, native):
    from polymodal.cli.main import main

    out = tmp_path / "cli-export"
    assert main(["models", "export-onnx", "clip-tiny-random", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["out"] == str(out) and info["name"] == "clip-tiny-random"
    assert (out / IMAGE_FILE).is_file() and (out / TEXT_FILE).is_file() and (out / ClipModel.CONFIG).is_file()
    loaded = polymodal.load(str(out))
    assert np.abs(loaded.encode_texts(TEXTS[:3]) - native.encode_texts(TEXTS[:3])).max() <= TOL


def test_only_native_models_export(model, tmp_path):
    with pytest.raises(InvalidInputError, match="only native models"):
        export_onnx(model, tmp_path / "again")


def test_export_does_not_overwrite_a_native_model(native, tmp_path):
    from polymodal.embed.resolve import save_embedder

    save_embedder(native, tmp_path / "saved")
    with pytest.raises(InvalidInputError, match="already holds"):
        export_onnx(native, tmp_path / "saved")
    assert not (tmp_path / "saved" / IMAGE_FILE).exists()


def test_reexport_into_the_same_directory(native, exported, tmp_path):
    copy = tmp_path / "again"
    shutil.copytree(exported, copy)
    assert export_onnx(native, copy) == copy
    texts = TEXTS[:3]
    assert np.abs(polymodal.load(str(copy)).encode_texts(texts) - native.encode_texts(texts)).max() <= TOL


@pytest.mark.parametrize("opset", [9, 16, "18", True])
def test_bad_opset(native, tmp_path, opset):
    with pytest.raises(InvalidInputError, match="opset"):
        export_onnx(native, tmp_path / "x", opset=opset)


def test_threads_option(exported):
    single = OnnxEmbedder.from_dir(exported, threads=1)
    assert single.describe()["threads"] == 1 and single.name == "clip-tiny-random"
    with pytest.raises(InvalidInputError, match="threads"):
        OnnxEmbedder.from_dir(exported, threads=0)


@pytest.fixture
def broken(exported, tmp_path):
    """A fresh copy of the export to damage."""
    copy = tmp_path / "broken"
    shutil.copytree(exported, copy)
    return copy


@pytest.mark.parametrize("missing", [IMAGE_FILE, TEXT_FILE, "vocab.json"])
def test_missing_files_are_named(broken, missing):
    (broken / missing).unlink()
    with pytest.raises(CheckpointError, match=missing.replace(".", r"\.")):
        polymodal.load(str(broken))


def test_corrupt_graph(broken):
    (broken / TEXT_FILE).write_bytes(b"not an onnx graph")
    with pytest.raises(CheckpointError, match=TEXT_FILE):
        polymodal.load(str(broken))


@pytest.mark.parametrize("damage,match", [
    (lambda meta: meta.pop("config"), "config"),
    (lambda meta: meta.pop("logit_scale"), "logit_scale"),
    (lambda meta: meta["config"].update(colour="blue"), "colour"),
    (lambda meta: meta.update(image_encoder="elsewhere.onnx"), "elsewhere.onnx"),
])
def test_bad_config(broken, damage, match):
    path = broken / ClipModel.CONFIG
    meta = json.loads(path.read_text())
    damage(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=match):
        polymodal.load(str(broken))


def test_bad_directories(tmp_path, broken):
    with pytest.raises(CheckpointError, match="does not exist"):
        OnnxEmbedder.from_dir(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="polymodal_config.json"):
        OnnxEmbedder.from_dir(tmp_path / "empty")
    (broken / ClipModel.CONFIG).write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        OnnxEmbedder.from_dir(broken)
    (broken / ClipModel.CONFIG).write_text(json.dumps({"family": "clip"}))
    with pytest.raises(CheckpointError, match="not an ONNX export"):
        OnnxEmbedder.from_dir(broken)


@pytest.mark.slow
def test_dynamo_exporter_gives_the_same_vectors(native, tmp_path):
    pytest.importorskip("onnxscript")
    loaded = polymodal.load(str(export_onnx(native, tmp_path / "dynamo", dynamo=True)))
    assert json.loads((tmp_path / "dynamo" / ClipModel.CONFIG).read_text())["exporter"] == "dynamo"
    images = _images(3)
    assert np.abs(loaded.encode_images(images) - native.encode_images(images)).max() <= TOL
    texts = TEXTS[:3] + TEXTS[4:]
    assert np.abs(loaded.encode_texts(texts, batch_size=3) - native.encode_texts(texts)).max() <= TOL
