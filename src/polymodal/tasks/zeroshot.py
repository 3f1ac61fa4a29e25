"""Zero-shot image classification: score images against label prompts with a dual encoder.

Each label's text embedding is the renormalised mean of its prompt embeddings over a template
ensemble (Radford et al. 2021, section 3.1.4). Scores use the model's own scoring: a softmax over
the labels for CLIP-style models (one label per image), an independent sigmoid per label for
SigLIP-style models (multi-label).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from polymodal.embed.base import Embedder, Failure
from polymodal.errors import InvalidInputError
from polymodal.tasks.templates import resolve_templates


@dataclass
class Prediction:
    index: int  # position of the image in the input
    source: str
    labels: list[dict]  # [{"label": str, "score": float}], best first

    def to_dict(self) -> dict:
        return {"index": self.index, "source": self.source, "labels": self.labels}


@dataclass
class ClassifyResult:
    model: str
    scoring: str
    predictions: list[Prediction]
    failures: list[Failure] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "scoring": self.scoring,
            "predictions": [p.to_dict() for p in self.predictions],
            "failures": [f.to_dict() for f in self.failures],
        }


def clean_labels(labels: Sequence[str]) -> list[str]:
    if isinstance(labels, str):
        raise InvalidInputError("labels must be a list of strings, not one string: split it, e.g. 'cat,dog'.split(',')")
    out = [str(label).strip() for label in labels]
    if not out:
        raise InvalidInputError("the label list is empty: give at least two labels, e.g. --labels cat,dog")
    if any(not label for label in out):
        raise InvalidInputError(f"a label is empty in {list(labels)!r}: remove the empty entry")
    dupes = sorted({label for label in out if out.count(label) > 1})
    if dupes:
        raise InvalidInputError(f"labels {dupes} appear more than once: each label must be unique")
    return out


class ZeroShotClassifier:
    """Label embeddings computed once, reused for every image batch."""

    def __init__(self, model: Embedder, labels: Sequence[str], templates=None):
        self.model = model
        self.labels = clean_labels(labels)
        self.templates = resolve_templates(templates)
        prompts = [t.replace("{}", label) for label in self.labels for t in self.templates]
        vectors = model.encode_texts(prompts).reshape(len(self.labels), len(self.templates), model.dim)
        mean = vectors.mean(axis=1)  # (L, D)
        self.label_vectors = mean / np.linalg.norm(mean, axis=-1, keepdims=True)

    def scores(self, image_vectors: np.ndarray) -> np.ndarray:
        """(N, L) scores of N image vectors against the labels."""
        return self.model.score(image_vectors, self.label_vectors)

    def predict(self, images: Sequence, *, top_k: int | None = None, batch_size: int | None = None,
                progress: bool = False) -> ClassifyResult:
        from polymodal.media import describe_source

        if top_k is not None and top_k < 1:
            raise InvalidInputError(f"top_k must be at least 1, got {top_k}")
        emb = self.model.embed_images(images, batch_size=batch_size, progress=progress)
        scores = self.scores(emb.vectors)
        predictions = []
        for row, index in zip(scores, emb.kept):
            order = np.argsort(-row, kind="stable")[: top_k or len(self.labels)]
            predictions.append(Prediction(
                index, describe_source(images[index], index),
                [{"label": self.labels[j], "score": float(row[j])} for j in order],
            ))
        return ClassifyResult(self.model.name, self.model.scoring, predictions, emb.failures)


def as_item_list(items) -> list:
    """One item (a path, bytes, a PIL image or an array) or an iterable of items -> a list."""
    if isinstance(items, (str, bytes, os.PathLike, np.ndarray)) or hasattr(items, "getpixel"):
        return [items]
    return list(items)


def classify(model: Embedder | str | None, images: Sequence, labels: Sequence[str], *, templates=None,
             top_k: int | None = None, batch_size: int | None = None, progress: bool = False) -> ClassifyResult:
    """Classify `images` (paths, bytes, PIL images or arrays) among `labels`.

    `model` is an Embedder or anything `polymodal.load` takes (None: the default model).
    `templates`: "imagenet80" (default), "imagenet7", "simple", a file, or a list with `{}`.
    Bad images are reported in `result.failures` and skipped.
    """
    if not isinstance(model, Embedder):
        from polymodal.embed.resolve import load_embedder

        model = load_embedder(model)
    images = as_item_list(images)
    return ZeroShotClassifier(model, labels, templates).predict(
        images, top_k=top_k, batch_size=batch_size, progress=progress
    )
