"""guard.consistency: claim extraction, the ROC AUC function, scoring mechanics, and the COCO
presence AUC of the default model on real annotations (coco-mini instances.json)."""

from __future__ import annotations

import json
import zlib
from itertools import product

import numpy as np
import pytest

from conftest import SHARED_DATA, shared_data
from polymodal.embed.base import Embedder
from polymodal.errors import InvalidInputError
from polymodal.guard.consistency import (THRESHOLDS, ConsistencyChecker, check_consistency, checker_for,
                                         extract_claims, roc_auc, shared_model, vocabulary)

# The 80 COCO category names, in the order of COCO's instances files.
COCO_CATEGORIES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
]


def claims_of(text: str) -> set[tuple]:
    return {(c.kind, c.subject, c.value) for c in extract_claims(text)}


# ---------------------------------------------------------------------------------------------
# Claim extraction (no model)

TABLE = [
    ("A man riding a horse next to two dogs.",
     {("object", "man", None), ("object", "horse", None), ("object", "dog", None), ("count", "dog", "two")}),
    ("Two small black dogs and a black and white cat on the beach",
     {("object", "dog", None), ("size", "dog", "small"), ("colour", "dog", "black"), ("count", "dog", "two"),
      ("object", "cat", None), ("colour", "cat", "black and white"), ("scene", "beach", None)}),
    ("The car is red.", {("object", "car", None), ("colour", "car", "red")}),
    ("A woman in an orange shirt holds an orange.",
     {("object", "woman", None), ("object", "shirt", None), ("colour", "shirt", "orange"), ("object", "orange", None)}),
    ("There is no dog here, only a man without a hat.", {("object", "man", None)}),
    ("3 people at a dining table with wine glasses",
     {("object", "person", None), ("count", "person", "three"), ("object", "dining table", None),
      ("object", "wine glass", None)}),
    ("He wants to train the bear.", {("object", "bear", None)}),
    ("a pizza box on the kitchen table", {("object", "box", None), ("object", "kitchen table", None)}),
    ("Four sheep and one goose in the snow",
     {("object", "sheep", None), ("count", "sheep", "four"), ("object", "goose", None), ("count", "goose", "one"),
      ("scene", "snow", None)}),
    ("The teddy bears sat on a wooden bench.",
     {("object", "teddy bear", None), ("object", "bench", None), ("material", "bench", "wooden")}),
    ("Two children and their mice", {("object", "child", None), ("count", "child", "two"), ("object", "mouse", None)}),
    ("A grey cat sleeps. The cat is grey.", {("object", "cat", None), ("colour", "cat", "gray")}),
    ("A big brown bear", {("object", "bear", None), ("size", "bear", "large"), ("colour", "bear", "brown")}),
    ("Nothing to see", set()),
]


@pytest.mark.parametrize("text,expected", TABLE, ids=[t for t, _ in TABLE])
def test_claim_extraction_table(text, expected):
    assert claims_of(text) == expected


def test_claim_spans_point_at_the_mention():
    text = "Yesterday a man rode a big brown horse."
    by_kind = {(c.kind, c.subject): c for c in extract_claims(text)}
    assert by_kind[("object", "horse")].phrase == "a big brown horse"
    assert text[slice(*by_kind[("colour", "horse")].span)] == "brown"
    assert by_kind[("colour", "horse")].prompt == "there is a brown horse"


def test_prompts_use_the_right_article_and_number():
    prompts = {c.prompt for c in extract_claims("an elephant, two umbrellas, snow, scissors and one dog")}
    assert prompts >= {"there is an elephant", "there are two umbrellas", "there is snow", "there are scissors",
                       "there is one dog"}


def test_every_coco_category_is_one_claim_of_its_concept():
    assert len(COCO_CATEGORIES) == 80
    concept_coco = {t.concept: t.coco for t in vocabulary()}
    for name in COCO_CATEGORIES:
        claims = extract_claims(f"there is a {name}")
        assert len(claims) == 1 and claims[0].kind == "object", (name, claims)
        assert concept_coco[claims[0].concept] == name


def test_vocabulary_is_consistent():
    terms = vocabulary()
    assert len({t.term for t in terms}) == len(terms)
    assert {t.kind for t in terms} == {"person", "animal", "object", "scene"}
    assert {t.form for t in terms} <= {"count", "mass", "plural"}
    for concept in {t.concept for t in terms}:  # a concept has one kind and one COCO category
        members = [t for t in terms if t.concept == concept]
        assert len({t.kind for t in members}) == 1 and len({t.coco for t in members}) == 1, concept


def test_extract_claims_rejects_non_text():
    with pytest.raises(InvalidInputError):
        extract_claims(None)


# ---------------------------------------------------------------------------------------------
# ROC AUC


def brute_force_auc(scores, labels) -> float:
    """Mann-Whitney: P(score of a random positive > a random negative), ties count one half."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_equals_pairwise_definition(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    labels = rng.random(n) < rng.uniform(0.1, 0.9)
    labels[:2] = [True, False]
    scores = np.round(rng.normal(labels * rng.uniform(0, 2), 1.0), 1)  # rounding makes ties
    assert roc_auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels), abs=1e-12)


def test_roc_auc_agrees_with_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    labels = rng.random(500) < 0.3
    scores = np.round(rng.normal(labels * 0.8, 1.0), 2)
    assert roc_auc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_edges():
    assert roc_auc([1, 2, 3], [0, 1, 1]) == 1.0
    assert roc_auc([3, 2, 1], [0, 1, 1]) == 0.0
    assert roc_auc([1, 1], [0, 1]) == 0.5
    with pytest.raises(InvalidInputError):
        roc_auc([1, 2], [1, 1])
    with pytest.raises(InvalidInputError):
        roc_auc([1, 2, 3], [1, 0])


# ---------------------------------------------------------------------------------------------
# Scoring mechanics, with a hashing text encoder


class HashEmbedder(Embedder):
    """Each text -> a fixed random unit vector seeded by its CRC (nearly orthogonal in 64-d)."""

    name, dim, scoring, logit_scale = "hash", 64, "softmax", 50.0

    def __init__(self):
        self.encoded: list[str] = []

    def _encode_text_batch(self, texts):
        self.encoded += texts
        return np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim) for t in texts]), []

    def _encode_image_batch(self, prepared):
        raise NotImplementedError


def _vec(model, text):
    return model.encode_texts([text])[0]


def test_scores_are_z_against_the_contrasts():
    model = HashEmbedder()
    checker = ConsistencyChecker(model)
    image = _vec(model, "there is a dog")  # an "image" that is exactly the dog prompt
    report = checker.check_vector(image, "A dog next to a cat.")
    dog, cat = report.claims
    assert dog.supported and not cat.supported and report.score == 0.5
    assert [c.subject for c in report.unsupported] == ["cat"]
    # recompute dog's z by hand: contrasts are all terms of other concepts
    terms = vocabulary()
    sims = np.array([_vec(model, ("there is an " if t.term[0] in "aeiou" else "there is a ") + t.term)
                     if t.form == "count" else
                     _vec(model, ("there is " if t.form == "mass" else "there are ") + t.term) for t in terms]) @ image
    contrast = np.array([s for s, t in zip(sims, terms) if t.concept != "dog"])
    best = max(s for s, t in zip(sims, terms) if t.concept == "dog")
    assert dog.score == pytest.approx((best - contrast.mean()) / np.std(np.append(contrast, best)), abs=1e-3)
    assert dog.cosine == pytest.approx(1.0, abs=1e-4)


def test_attribute_and_count_claims_compare_with_their_alternatives():
    model = HashEmbedder()
    # mechanics, not calibration: the shipped count threshold (-0.15) is lenient by design
    checker = ConsistencyChecker(model, thresholds={"colour": 1.0, "count": 1.0})
    image = _vec(model, "there is a black dog") + _vec(model, "there are three dogs")
    report = checker.check_vector(image / np.linalg.norm(image), "three black dogs")
    by_kind = {c.kind: c for c in report.claims}
    assert by_kind["colour"].supported and by_kind["count"].supported
    wrong = checker.check_vector(image / np.linalg.norm(image), "two red dogs")
    by_kind = {c.kind: c for c in wrong.claims}
    assert not by_kind["colour"].supported and by_kind["colour"].alternative == "black"
    assert not by_kind["count"].supported and by_kind["count"].alternative == "three"


def test_text_side_is_encoded_once_and_cached():
    model = HashEmbedder()
    checker = ConsistencyChecker(model)
    image = _vec(model, "there is a dog")
    checker.check_vector(image, "a black dog")
    first = len(model.encoded)
    assert first >= len(vocabulary())  # the vocabulary in one go, plus the colour set
    checker.check_vector(-image, "a black dog on a bench")
    assert len(model.encoded) == first  # nothing new: objects come from the cached vocabulary


def test_report_is_json_and_thresholds_are_checked():
    model = HashEmbedder()
    report = ConsistencyChecker(model, thresholds={"object": -100.0}).check_vector(_vec(model, "x"), "a cat")
    assert report.consistent and json.loads(json.dumps(report.to_dict()))["claims"][0]["subject"] == "cat"
    assert ConsistencyChecker(model).check_vector(_vec(model, "x"), "no claims here").score == 1.0
    with pytest.raises(InvalidInputError):
        ConsistencyChecker(model, thresholds={"objects": 1.0})
    with pytest.raises(InvalidInputError):
        ConsistencyChecker(model).check(np.zeros((8, 8, 3), np.uint8), "  ")


# ---------------------------------------------------------------------------------------------
# Real data: the default model on coco-mini


@pytest.fixture(scope="module")
def coco():
    data = json.loads(shared_data("coco-mini/instances.json").read_text())
    images = data["images"][:24]  # a fast subset; benchmarks/consistency_auc.py runs all 80
    index = {im["id"]: i for i, im in enumerate(images)}
    names = {c["id"]: c["name"] for c in data["categories"]}
    present = np.zeros((len(images), 80), bool)
    order = [c["name"] for c in data["categories"]]
    for a in data["annotations"]:
        if a["image_id"] in index:
            present[index[a["image_id"]], order.index(names[a["category_id"]])] = True
    model = shared_model("lite")
    vectors = model.encode_images([str(SHARED_DATA / "coco-mini" / "images" / im["file_name"]) for im in images])
    return model, vectors, order, present


def test_coco_presence_auc_beats_raw_cosine(coco):
    model, vectors, categories, present = coco
    checker = checker_for(model)  # the shared checker: its vocabulary vectors serve the next test too
    z, cosine = np.zeros(present.shape), np.zeros(present.shape)
    for j, name in enumerate(categories):
        for i, vector in enumerate(vectors):
            claim = checker.score_claims(vector, extract_claims(f"there is a {name}"))[0]
            z[i, j], cosine[i, j] = claim.score, claim.cosine
    calibrated, raw = roc_auc(z, present), roc_auc(cosine, present)
    # all 80 images: 0.894 calibrated, 0.858 raw (benchmarks/consistency_auc.py)
    assert calibrated >= 0.85
    assert calibrated > raw + 0.01
    # at the shipped threshold most present categories are supported and most absent are not
    assert (z[present] >= THRESHOLDS["object"]).mean() > 0.7
    assert (z[~present] >= THRESHOLDS["object"]).mean() < 0.3


def test_check_consistency_on_a_real_photo():
    path = shared_data("coco-mini/images/000000163497.jpg")  # a giraffe by trees
    report = check_consistency(path, "A giraffe standing next to a pizza.")
    verdict = {c.subject: c.supported for c in report.claims}
    assert verdict == {"giraffe": True, "pizza": False}
    assert report.score == 0.5 and [c.subject for c in report.unsupported] == ["pizza"]
    assert json.loads(json.dumps(report.to_dict()))["model"] == "lite"
