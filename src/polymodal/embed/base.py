"""The Embedder interface that every dual encoder answers, native or through a backend.

Two ways in, one code path underneath:
- `encode_images` / `encode_texts` are strict: they return a (N, dim) float32 array of unit
  vectors or raise on the first bad item (a typed error naming it).
- `embed_images` / `embed_texts` are batch-tolerant: a bad item is reported in `failures` and
  skipped, the rest are embedded; `kept[i]` is the input index of `vectors[i]`.

Images are decoded and prepared in worker threads one batch ahead of the model, so decoding
overlaps with the forward pass. Subclasses provide four hooks: `_prepare_image` (per image,
runs in a worker thread), `_encode_image_batch`, `_encode_text_batch` and optionally `draft_size`.
"""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from polymodal.errors import InvalidInputError, MediaError


class TextTruncatedWarning(UserWarning):
    """Some texts were longer than the model's context and were cut."""


@dataclass
class Failure:
    index: int  # position in the input
    source: str  # a printable name of the item
    reason: str  # "corrupt", "unsupported", "too-large", "unreadable", "empty", ...
    message: str

    def to_dict(self) -> dict:
        return {"index": self.index, "source": self.source, "reason": self.reason, "message": self.message}


@dataclass
class Embeddings:
    vectors: np.ndarray  # (len(kept), dim) float32, unit rows
    kept: list[int]  # input index of each row
    failures: list[Failure] = field(default_factory=list)
    truncated: list[int] = field(default_factory=list)  # input indices of texts cut to the context


def _batches(items: Iterable, size: int) -> Iterator[list[tuple[int, Any]]]:
    """(index, item) pairs in lists of `size`, pulling from `items` only as batches are taken."""
    batch: list[tuple[int, Any]] = []
    for index, item in enumerate(items):
        batch.append((index, item))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class Embedder(ABC):
    """A dual encoder: images and texts into one `dim`-dimensional space, with its own scoring."""

    name: str
    dim: int
    scoring: str  # "softmax" (CLIP: rank texts against each other) | "sigmoid" (SigLIP: independent)
    logit_scale: float  # the exponentiated temperature
    logit_bias: float | None = None
    image_batch_size: int = 32
    text_batch_size: int = 256

    # -- hooks ----------------------------------------------------------------------------------

    def _prepare_image(self, image) -> Any:
        """Per-image CPU work on a decoded RGB PIL image (resize, crop); runs in worker threads."""
        return image

    @abstractmethod
    def _encode_image_batch(self, prepared: list) -> np.ndarray:
        """Prepared images -> (B, dim) features (normalised or not)."""

    @abstractmethod
    def _encode_text_batch(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """Texts -> ((B, dim) features, batch indices of texts that were truncated)."""

    def draft_size(self) -> tuple[int, int] | None:
        """JPEG draft size for reduced-scale decoding, or None to decode at full size."""
        return None

    # -- images -----------------------------------------------------------------------------------

    def _load(self, item, index: int):
        from polymodal.media import describe_source, load_image

        image = load_image(item, draft_size=self.draft_size(), source=describe_source(item, index))
        return self._prepare_image(image)

    def _prepare_batch(self, batch: list[tuple[int, Any]], strict: bool):
        kept, prepared, failures = [], [], []
        for index, item in batch:
            try:
                prepared.append(self._load(item, index))
                kept.append(index)
            except MediaError as exc:
                if strict:
                    raise
                failures.append(Failure(index, exc.source, exc.reason, str(exc)))
        return kept, prepared, failures

    def iter_image_batches(self, items: Iterable, *, batch_size: int | None = None,
                           strict: bool = False) -> Iterator[Embeddings]:
        """Embed a stream of images batch by batch: one `Embeddings` per batch, with `kept` and
        failure indices counted from the start of the stream. `items` is consumed lazily (a few
        batches ahead of the model, decoding in worker threads), so memory stays bounded however
        long the stream is."""
        batch_size = batch_size or self.image_batch_size
        workers = max(1, min(4, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: deque = deque()
            batches = _batches(items, batch_size)
            for batch in batches:  # keep `workers` batches decoding ahead of the model
                pending.append(pool.submit(self._prepare_batch, batch, strict))
                if len(pending) >= workers:
                    break
            while pending:
                batch_kept, prepared, batch_failures = pending.popleft().result()
                nxt = next(batches, None)
                if nxt is not None:
                    pending.append(pool.submit(self._prepare_batch, nxt, strict))
                vectors = _unit(self._encode_image_batch(prepared)) if prepared else np.zeros((0, self.dim), np.float32)
                yield Embeddings(vectors, batch_kept, batch_failures)

    def embed_images(self, items: Sequence, *, batch_size: int | None = None, progress: bool = False,
                     strict: bool = False) -> Embeddings:
        """Embed images given as paths, bytes, PIL images or arrays (see polymodal.media)."""
        items = list(items) if not isinstance(items, (list, tuple)) else items
        vectors, kept, failures = [], [], []
        bar = _progress(progress, len(items), "images")
        for part in self.iter_image_batches(items, batch_size=batch_size, strict=strict):
            vectors.append(part.vectors)
            kept += part.kept
            failures += part.failures
            if bar:
                bar.update(len(part.kept) + len(part.failures))
        if bar:
            bar.close()
        out = np.concatenate(vectors) if vectors else np.zeros((0, self.dim), np.float32)
        return Embeddings(out, kept, failures)

    def encode_images(self, items: Sequence, *, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """(N, dim) float32 unit vectors; raises MediaError naming the first bad item."""
        return self.embed_images(items, batch_size=batch_size, progress=progress, strict=True).vectors

    # -- texts ------------------------------------------------------------------------------------

    def embed_texts(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False,
                    strict: bool = False) -> Embeddings:
        if isinstance(texts, str):
            raise InvalidInputError("texts must be a list of strings, not one string: wrap it as [text]")
        texts = list(texts)
        batch_size = batch_size or self.text_batch_size
        failures, good = [], []
        for index, text in enumerate(texts):
            problem = None
            if not isinstance(text, str):
                problem = ("unsupported", f"text {index} is a {type(text).__name__}, not a string")
            elif not text.strip():
                problem = ("empty", f"text {index} is empty; give it some words or drop it")
            if problem and strict:
                raise InvalidInputError(problem[1])
            if problem:
                failures.append(Failure(index, f"text #{index}", problem[0], problem[1]))
            else:
                good.append(index)
        # Batches of similar length waste little on padding (about 1.5x faster on captions);
        # the rows go back to input order below.
        by_length = sorted(good, key=lambda i: len(texts[i]))
        out = np.zeros((len(good), self.dim), np.float32)
        row_of = {index: row for row, index in enumerate(good)}
        truncated = []
        bar = _progress(progress, len(texts), "texts")
        for start in range(0, len(by_length), batch_size):
            chunk = by_length[start:start + batch_size]
            feats, cut = self._encode_text_batch([texts[i] for i in chunk])
            out[[row_of[i] for i in chunk]] = _unit(feats)
            truncated += [chunk[j] for j in cut]
            if bar:
                bar.update(len(chunk))
        if bar:
            bar.close()
        truncated.sort()
        if truncated:
            warnings.warn(
                f"{len(truncated)} text(s) were longer than {self.name}'s context and were truncated "
                f"(indices {truncated[:10]}{'...' if len(truncated) > 10 else ''})",
                TextTruncatedWarning, stacklevel=2,
            )
        return Embeddings(out, good, failures, truncated)

    def encode_texts(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """(N, dim) float32 unit vectors; raises InvalidInputError for an empty or non-string text."""
        return self.embed_texts(texts, batch_size=batch_size, progress=progress, strict=True).vectors

    # -- scoring ----------------------------------------------------------------------------------

    def score(self, image_vectors: np.ndarray, text_vectors: np.ndarray) -> np.ndarray:
        """(N, M) scores of N images against M texts with the model's own scoring: a softmax over
        the M texts for CLIP-style models, an independent sigmoid per pair for SigLIP-style ones."""
        logits = self.logit_scale * (np.asarray(image_vectors, np.float32) @ np.asarray(text_vectors, np.float32).T)
        if self.logit_bias is not None:
            logits = logits + self.logit_bias
        if self.scoring == "sigmoid":
            return 1.0 / (1.0 + np.exp(-logits))
        logits = logits - logits.max(axis=-1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=-1, keepdims=True)

    def describe(self) -> dict:
        return {"name": self.name, "dim": self.dim, "scoring": self.scoring, "backend": type(self).__name__}


def _progress(enabled: bool, total: int, unit: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit[:-1], desc=f"embedding {unit}", leave=False)
