"""Cross-modal search over a collection, and near-duplicate groups.

A query is a text, an image, or both: each is embedded with the collection's model and the unit
vectors are mixed with the given weights, then normalised again (a "dog" text pulled towards the
look of an example photo). Scores are cosine similarities in [-1, 1]; `threshold` drops hits
below a score. Text-to-image, image-to-image, text-to-text and image-to-text all go through the
same call: what the collection holds decides (filter by kind to restrict it).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from polymodal.errors import InvalidInputError
from polymodal.store.filters import Filter


@dataclass
class SearchResult:
    collection: str
    model: str
    query: dict  # what was asked: text, image (its name), weights
    hits: list[dict] = field(default_factory=list)  # best first: record columns + score
    exact: bool = True  # False when the approximate index answered
    seconds: float = 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 4)
        return out


def query_vector(embedder, *, text: str | None = None, image=None, text_weight: float = 1.0,
                 image_weight: float = 1.0) -> np.ndarray:
    """The unit (dim,) query vector of a text, an image (path, bytes, PIL image), or both mixed."""
    if text is None and image is None:
        raise InvalidInputError("give a text query, an image query, or both")
    if text is not None and not str(text).strip():
        raise InvalidInputError("the text query is empty: give some words, or search by --image")
    if text_weight < 0 or image_weight < 0 or (text is not None and image is not None and text_weight + image_weight == 0):
        raise InvalidInputError(f"weights must be >= 0 and not both 0 (text {text_weight}, image {image_weight})")
    vector = np.zeros(embedder.dim, np.float32)
    if text is not None:
        vector += (text_weight if image is not None else 1.0) * embedder.encode_texts([str(text)])[0]
    if image is not None:
        vector += (image_weight if text is not None else 1.0) * embedder.encode_images([image])[0]
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def search(collection, embedder, *, text: str | None = None, image=None, text_weight: float = 1.0,
           image_weight: float = 1.0, k: int = 10, filter: Filter | None = None,
           threshold: float | None = None, exact: bool = False) -> SearchResult:
    """Search `collection` by text and/or image with its own model (`embedder`)."""
    collection.check_model(embedder.name, embedder.dim)
    start = time.perf_counter()
    vector = query_vector(embedder, text=text, image=image, text_weight=text_weight, image_weight=image_weight)
    hits = collection.search(vector, k, filter=filter, threshold=threshold, exact=exact)
    query = {"text": text, "image": _image_name(image), "text_weight": text_weight, "image_weight": image_weight,
             "k": k, "threshold": threshold, "filter": filter.to_sql() if filter else None}
    return SearchResult(collection.name, collection.model, query, hits,
                        exact=exact or not collection.has_index(), seconds=time.perf_counter() - start)


def _image_name(image) -> str | None:
    if image is None:
        return None
    from polymodal.media import describe_source

    return describe_source(image)


# ----------------------------------------------------------------------------------------------
# Near duplicates

#: Up to this many rows, duplicates come from exact all-pairs similarities in blocks; above, each
#: item asks the approximate index for its neighbours.
EXACT_DUPES_MAX_ROWS = 50_000


def find_duplicates(collection, *, threshold: float = 0.95, filter: Filter | None = None,
                    neighbours: int = 10) -> list[dict]:
    """Groups of items whose vectors have cosine >= threshold with another member (single
    linkage), largest first. Each group: {"size", "max_score", "items": [record + "score"]}."""
    if not -1.0 <= threshold <= 1.0:
        raise InvalidInputError(f"threshold must be a cosine in [-1, 1], not {threshold}")
    where = filter.to_sql() if filter else None
    position: dict[str, int] = {}  # id -> union-find slot
    parent: list[int] = []
    best: list[float] = []  # each linked item's best score to another member

    def slot(item_id: str) -> int:
        if item_id not in position:
            position[item_id] = len(parent)
            parent.append(len(parent))
            best.append(-1.0)
        return position[item_id]

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def link(a: str, b: str, score: float) -> None:
        i, j = slot(a), slot(b)
        best[i], best[j] = max(best[i], score), max(best[j], score)
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    if collection.count(where) <= EXACT_DUPES_MAX_ROWS:
        batches = list(collection.vectors(where=where))
        ids = [item for batch_ids, _ in batches for item in batch_ids]
        matrix = np.concatenate([vectors for _, vectors in batches]) if ids else np.zeros((0, collection.dim), np.float32)
        for start in range(0, len(ids), 1024):
            sims = matrix[start:start + 1024] @ matrix.T  # (B, N)
            for r, c in zip(*np.nonzero(sims >= threshold)):
                if c > start + r:
                    link(ids[start + r], ids[c], float(sims[r, c]))
    else:  # stream the vectors; each asks the approximate index for its neighbours
        for batch_ids, vectors in collection.vectors(where=where):
            for item, vector in zip(batch_ids, vectors):
                for hit in collection.search(vector, neighbours + 1, filter=filter, threshold=threshold):
                    if hit["id"] != item:
                        link(item, hit["id"], hit["score"])

    members: dict[int, list[str]] = {}
    for item, i in position.items():
        members.setdefault(find(i), []).append(item)
    records = collection.get_many(position)
    groups = []
    for group in members.values():
        items = [{**records[item], "score": best[position[item]]} for item in group if item in records]
        if len(items) > 1:
            items.sort(key=lambda rec: rec["source"])
            groups.append({"size": len(items), "max_score": max(rec["score"] for rec in items), "items": items})
    groups.sort(key=lambda g: (-g["size"], -g["max_score"]))
    return groups
