"""The shape of a collection's rows, and the record a collection keeps about itself.

One row per item (an image file, a text file; later a PDF page, a video keyframe, an audio
segment: a decoder may cut one file into several items, told apart by the fragment of `uri`).

    id            16 hex chars, blake2b of `uri`: stable, URL-safe, never a path
    uri           what the item is: the source path, plus "#fragment" for part of a file
    source        the file it came from (absolute path) or a URL
    content_hash  blake2b-128 of the source's bytes: detects changed and renamed files
    kind          the tower the vector came from: "image" | "text"
    media_type    MIME type of the source ("image/jpeg", "text/plain", ...)
    size, mtime   of the source file (bytes, seconds since the epoch) when it was indexed
    width, height of the image in pixels, after EXIF rotation (null for text)
    text          the text of a text item (null for images)
    metadata      free JSON object given by the user or a decoder ("{}" when none)
    indexed_at    seconds since the epoch
    vector        float32[dim], unit length

The collection's own record (model, dimension, format) lives in the Lance schema metadata under
the key b"polymodal", so it travels with the dataset wherever it is copied (another disk, object
storage, a Ray cluster writing the same dataset).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np

FORMAT_VERSION = 1
META_KEY = b"polymodal"

#: Columns returned with search hits and item look-ups (everything but the vector).
RECORD_COLUMNS = ["id", "uri", "source", "content_hash", "kind", "media_type", "size", "mtime",
                  "width", "height", "text", "metadata", "indexed_at"]


@dataclass(frozen=True)
class CollectionMeta:
    """What a collection records about itself at creation; never changes afterwards."""

    model: str  # the spec that loads the model again: a registered name, hf:org/repo, or a path
    dim: int
    model_name: str = ""  # the model's own name (may differ from a path spec)
    created: float = field(default_factory=time.time)
    format: int = FORMAT_VERSION

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> "CollectionMeta":
        data = json.loads(raw)
        return cls(**{k: data[k] for k in ("model", "dim", "model_name", "created", "format") if k in data})


def item_schema(meta: CollectionMeta):
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("uri", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("content_hash", pa.string(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("media_type", pa.string()),
            pa.field("size", pa.int64()),
            pa.field("mtime", pa.float64()),
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
            pa.field("text", pa.string()),
            pa.field("metadata", pa.string()),
            pa.field("indexed_at", pa.float64()),
            pa.field("vector", pa.list_(pa.float32(), meta.dim), nullable=False),
        ],
        metadata={META_KEY: meta.to_bytes()},
    )


def item_id(uri: str) -> str:
    """The row id of an item: short, stable and safe in a URL whatever the path holds."""
    return hashlib.blake2b(uri.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def records_to_table(records: list[dict], vectors: np.ndarray, meta: CollectionMeta):
    """Rows (dicts with any of the record columns; `uri` required) + (N, dim) vectors -> Arrow table."""
    import pyarrow as pa

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(records):
        raise ValueError(f"{len(records)} records but vectors of shape {vectors.shape}")
    now = time.time()
    columns: dict[str, list] = {name: [] for name in RECORD_COLUMNS}
    for rec in records:
        uri = rec["uri"]
        row = {
            "id": rec.get("id") or item_id(uri),
            "uri": uri,
            "source": rec.get("source") or uri.split("#", 1)[0],
            "content_hash": rec.get("content_hash") or "",
            "kind": rec.get("kind") or "image",
            "media_type": rec.get("media_type"),
            "size": rec.get("size"),
            "mtime": rec.get("mtime"),
            "width": rec.get("width"),
            "height": rec.get("height"),
            "text": rec.get("text"),
            "metadata": _metadata_json(rec.get("metadata")),
            "indexed_at": rec.get("indexed_at") or now,
        }
        for name in RECORD_COLUMNS:
            columns[name].append(row[name])
    schema = item_schema(meta)
    arrays = [pa.array(columns[name], type=schema.field(name).type) for name in RECORD_COLUMNS]
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    arrays.append(pa.FixedSizeListArray.from_arrays(flat, meta.dim))
    return pa.Table.from_arrays(arrays, schema=schema)


def _metadata_json(value) -> str:
    if value is None:
        return "{}"
    if isinstance(value, str):
        json.loads(value)  # must already be JSON
        return value
    return json.dumps(value, sort_keys=True, default=str)


def row_to_record(row: dict) -> dict:
    """A stored row as plain JSON-able data (metadata parsed, vector dropped)."""
    out = {k: row.get(k) for k in RECORD_COLUMNS if k in row}
    if isinstance(out.get("metadata"), str):
        try:
            out["metadata"] = json.loads(out["metadata"])
        except ValueError:
            pass
    return out
