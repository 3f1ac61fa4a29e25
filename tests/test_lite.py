"""The offline default model `lite`: its parts, its maths, and its quality on real data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import polymodal
from polymodal.models.lite import WEIGHTS, imagenet_classes
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def lite():
    return polymodal.load("lite")


def test_lite_is_the_default_and_its_file_is_small(lite, monkeypatch):
    monkeypatch.delenv("POLYMODAL_MODEL", raising=False)
    from polymodal.models.registry import default_model_name

    assert default_model_name() == "lite"
    assert lite.dim == 384 and lite.scoring == "softmax"
    assert WEIGHTS.stat().st_size < 5_000_000
    assert lite.tower.config.mix > 0 and lite.tower.head is not None
    assert len(imagenet_classes()) == 1000


def test_conse_is_the_probability_weighted_mean_of_top_class_texts(lite):
    tower = lite.tower
    logits = torch.randn(3, 1000) * 3
    got = tower.conse(logits, torch.tensor([False, False, True])).numpy()
    C = tower.class_embeddings.numpy().astype(np.float64)
    prior = tower.low_res_log_prior.numpy().astype(np.float64)
    for row, small in enumerate([False, False, True]):
        z = logits[row].double().numpy() - (prior if small else 0.0)
        p = np.exp(z - z.max())
        p /= p.sum()
        top = np.argsort(-p)[: tower.config.top_t]
        e = (p[top, None] * C[top]).sum(0)
        assert np.abs(got[row] - e / np.linalg.norm(e)).max() < 1e-5


def test_small_images_take_the_low_resolution_path(lite):
    small = Image.new("RGB", (32, 32), "red")
    large = small.resize((256, 256))
    assert lite._prepare_image(small)[1] is True and lite._prepare_image(large)[1] is False


def test_text_tower_is_a_sentence_encoder(lite):
    a, b, c = lite.encode_texts(["a dog runs on the grass", "a puppy playing in a field", "quarterly earnings report"])
    assert a @ b > a @ c + 0.3
    assert np.allclose(np.linalg.norm([a, b, c], axis=1), 1, atol=1e-5)


def test_coco_objects_are_recognised(lite):
    """Real annotations: for each coco-mini image, the zero-shot scores of the 80 COCO categories
    should rank the categories present above those absent (ROC AUC well above chance, 0.5)."""
    root = shared_data("coco-mini")
    data = json.loads((root / "instances.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    present: dict[int, set[str]] = {}
    for a in data["annotations"]:
        present.setdefault(a["image_id"], set()).add(names[a["category_id"]])
    images = [im for im in data["images"] if im["id"] in present][:40]
    labels = sorted(names.values())
    result = polymodal.classify(lite, [str(root / "images" / im["file_name"]) for im in images], labels,
                                templates="simple")
    pos, neg = [], []
    for im, pred in zip(images, result.predictions):
        for entry in pred.labels:
            (pos if entry["label"] in present[im["id"]] else neg).append(entry["score"])
    pos, neg = np.array(pos), np.array(neg)
    auc = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auc > 0.75, f"ROC AUC {auc:.3f}"  # 0.795 measured


def test_held_out_flickr_retrieval_beats_chance(lite):
    """Text-to-image on 50 Flickr images the head never saw (split 600-799): chance R@5 is 0.10."""
    from polymodal.eval.retrieval import evaluate_retrieval, read_captions

    data = read_captions(shared_data("flickr8k-subset/captions.jsonl"), slice(700, 750))
    result = evaluate_retrieval(lite, data)
    assert result["text_to_image"]["R@5"] > 0.4, result


def test_demo_samples_are_recognised(lite):
    """The main job's built-in drawings: each is an ImageNet object, and lite must name each."""
    from polymodal.media.samples import SAMPLE_LABELS, draw_samples

    result = polymodal.classify(lite, list(draw_samples().values()), SAMPLE_LABELS, templates="simple")
    assert [p.labels[0]["label"] for p in result.predictions] == SAMPLE_LABELS
