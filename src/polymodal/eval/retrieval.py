"""Cross-modal retrieval recall: R@K of text-to-image and image-to-text search."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from polymodal.errors import InvalidInputError


def recall_at_k(similarity: np.ndarray, relevant: Sequence[set[int]], ks=(1, 5, 10)) -> dict[str, float]:
    """similarity: (Q, N) query-by-candidate scores; relevant[q]: the candidate indices that count
    as a hit for query q. R@K is the fraction of queries with a hit among their K best candidates."""
    if similarity.shape[0] != len(relevant):
        raise InvalidInputError(f"{similarity.shape[0]} queries but {len(relevant)} relevance sets")
    order = np.argsort(-similarity, axis=1, kind="stable")
    out = {}
    for k in ks:
        top = order[:, :k]
        out[f"R@{k}"] = float(np.mean([bool(set(row.tolist()) & rel) for row, rel in zip(top, relevant)]))
    return out


@dataclass
class CaptionSet:
    images: list[str]  # unique image paths
    captions: list[str]
    caption_image: list[int]  # index into images for each caption


def read_captions(path: str | Path, images: slice | None = None) -> CaptionSet:
    """A captions.jsonl of {"image": relative path, "caption": text} lines; `images` selects a
    slice of the unique images in file order (e.g. slice(600, 800) for a held-out split)."""
    path = Path(path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    order: list[str] = []
    for row in rows:
        if row["image"] not in order:
            order.append(row["image"])
    chosen = order[images] if images is not None else order
    index = {name: i for i, name in enumerate(chosen)}
    caps = [(row["caption"], index[row["image"]]) for row in rows if row["image"] in index]
    return CaptionSet([str(path.parent / name) for name in chosen], [c for c, _ in caps], [i for _, i in caps])


def evaluate_retrieval(model, data: CaptionSet, ks=(1, 5, 10)) -> dict:
    """Text-to-image and image-to-text R@K of `model` (an Embedder) on `data`."""
    images = model.encode_images(data.images)
    texts = model.encode_texts(data.captions)
    sim = texts @ images.T  # (captions, images)
    t2i = recall_at_k(sim, [{i} for i in data.caption_image], ks)
    by_image = [set() for _ in data.images]
    for c, i in enumerate(data.caption_image):
        by_image[i].add(c)
    i2t = recall_at_k(sim.T, by_image, ks)
    return {"images": len(data.images), "captions": len(data.captions),
            "text_to_image": t2i, "image_to_text": i2t}
