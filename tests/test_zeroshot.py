"""Zero-shot classification: template ensembles, scoring, ranking and input checks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import polymodal
from polymodal.embed.base import Embedder
from polymodal.errors import InvalidInputError
from polymodal.tasks.templates import IMAGENET_7, IMAGENET_80, resolve_templates
from polymodal.tasks.zeroshot import ZeroShotClassifier


class ColourEmbedder(Embedder):
    """A transparent dual encoder: an image embeds as its mean RGB; a text as the colour words it
    names. Zero-shot results are then known in advance."""

    name, dim, logit_scale = "colours", 3, 100.0
    WORDS = {"red": 0, "green": 1, "blue": 2}

    def __init__(self, scoring="softmax", bias=None):
        self.scoring, self.logit_bias = scoring, bias

    def _encode_image_batch(self, prepared):
        return np.stack([np.asarray(im, np.float32).mean(axis=(0, 1)) + 1e-3 for im in prepared])

    def _encode_text_batch(self, texts):
        out = np.full((len(texts), 3), 1e-3, np.float32)
        for i, text in enumerate(texts):
            for word, axis in self.WORDS.items():
                out[i, axis] += text.count(word)
        return out, []


def _square(colour):
    return Image.new("RGB", (8, 8), colour)


def test_known_answers_softmax():
    result = polymodal.classify(ColourEmbedder(), [_square("red"), _square("blue")], ["blue", "red", "green"])
    top = [p.labels[0]["label"] for p in result.predictions]
    assert top == ["red", "blue"]
    for p in result.predictions:
        scores = [x["score"] for x in p.labels]
        assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-5)
    assert result.to_dict()["scoring"] == "softmax"


def test_sigmoid_scores_are_independent():
    result = polymodal.classify(ColourEmbedder("sigmoid", bias=-50.0), [_square((255, 0, 255))],
                                ["red", "green", "blue"], templates="simple")
    scores = {x["label"]: x["score"] for x in result.predictions[0].labels}
    assert scores["red"] > 0.5 and scores["blue"] > 0.5 and scores["green"] < 0.5  # magenta is both


def test_label_vectors_are_the_renormalised_template_mean():
    model = polymodal.load("clip-tiny-random")
    clf = ZeroShotClassifier(model, ["cat", "dog"], templates=["a {}.", "the {} here"])
    prompts = model.encode_texts(["a cat.", "the cat here"])
    mean = prompts.mean(axis=0)
    assert np.allclose(clf.label_vectors[0], mean / np.linalg.norm(mean), atol=1e-6)


def test_top_k_and_failures(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    result = polymodal.classify(ColourEmbedder(), [_square("green"), str(tmp_path / "bad.png")],
                                ["red", "green", "blue"], top_k=1)
    assert [len(p.labels) for p in result.predictions] == [1]
    assert result.predictions[0].labels[0]["label"] == "green"
    assert [f.reason for f in result.failures] == ["corrupt"] or [f.reason for f in result.failures] == ["unsupported"]


def test_template_sets():
    assert len(IMAGENET_80) == 80 and len(set(IMAGENET_80)) == 80 and len(IMAGENET_7) == 7
    assert set(IMAGENET_7) <= set(IMAGENET_80)
    assert resolve_templates(["a {label}!"]) == ("a {}!",)


@pytest.mark.parametrize("labels,match", [([], "empty"), (["cat", ""], "empty"), (["cat", "cat"], "more than once"),
                                          ("cat,dog", "not one string")])
def test_bad_labels(labels, match):
    with pytest.raises(InvalidInputError, match=match):
        polymodal.classify(ColourEmbedder(), [_square("red")], labels)


@pytest.mark.parametrize("templates,match", [([], "empty"), (["no placeholder"], "exactly one"),
                                             ("no-such-set", "neither a named set")])
def test_bad_templates(templates, match):
    with pytest.raises(InvalidInputError, match=match):
        polymodal.classify(ColourEmbedder(), [_square("red")], ["red", "blue"], templates=templates)


def test_templates_from_file(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("a {} thing\n\nsome {}\n")
    assert resolve_templates(str(f)) == ("a {} thing", "some {}")
