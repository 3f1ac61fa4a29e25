"""Training data: (image, caption) pairs and the loader that turns them into batches of views.

Sources:
* `PairDataset`, a map-style data set: a captions file (JSONL or CSV/TSV, image paths relative
  to the file) or class folders (captions from templates). One sample per unique image (a caption
  drawn per epoch from its captions) or one per (image, caption) row.
* `ShardStream`, an iterable over WebDataset tar shards, read as a stream with the standard
  library: members grouped by key (`dir/name.jpg` + `dir/name.txt`), shards split across ranks, a
  seeded shuffle buffer, exact resume at a sample position.

`make_loader` gives one epoch of batches for one rank, in DataLoader worker processes;
`TrainLoader` gives epoch after epoch from one set of worker processes that never idle at an
epoch boundary (what the trainer uses). Everything
random is stateless: sample i of epoch e draws its caption and crop from
`np.random.default_rng((seed, epoch, i))`, and the order of an epoch is a function of
(seed, epoch). A resumed run therefore sees exactly the samples and crops of the uninterrupted
one, and the number of workers never changes a batch.
"""

from __future__ import annotations

import copy
import csv
import glob
import json
import os
import re
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, get_worker_info

from polymodal.errors import InvalidInputError, MediaError
from polymodal.media import load_image
from polymodal.train.augment import _transform, center_view, random_resized_crop
from polymodal.train.config import CROP_SCALE, check_crop_scale

__all__ = ["BadSampleWarning", "EpochLoader", "IMAGE_SUFFIXES", "Pair", "PairDataset", "ShardStream", "TrainLoader",
           "expand_shards", "make_loader"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
CAPTION_MODES = ("random", "all")
IMAGE_KEYS = ("image", "filepath", "file")  # JSON keys / CSV columns naming the image, first found wins
CAPTION_KEYS = ("caption", "text", "title")  # "title": open_clip's CSV default column
SHARD_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")  # WebDataset members holding the image, in preference order
_MAX_REPLACEMENTS = 32  # tries to find a decodable stand-in for a bad image before giving up
_BUFFER_TAG = 0x5348  # makes the shuffle buffer's seed differ from every per-sample seed (seed, epoch, i)


class BadSampleWarning(UserWarning):
    """A sample was unusable (image missing or corrupt, no caption) and was replaced or skipped."""


_reported: set[str] = set()  # per process: what has been warned about (a path, a shard)
_bad_images: set[str] = set()  # per process: images known not to decode, not tried again


def _warn_once(key: str, message: str) -> None:
    if key not in _reported:
        _reported.add(key)
        warnings.warn(message, BadSampleWarning, stacklevel=3)


# ----------------------------------------------------------------------------------------------
# Pairs from files and folders


@dataclass(frozen=True)
class Pair:
    """One sample: an image path and the captions it may be shown with (one is drawn per epoch)."""

    image: str
    captions: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"image": self.image, "captions": list(self.captions)}


class PairDataset(Dataset):
    """(image, caption) pairs; item i is a `Pair`.

    pairs: (image path, caption) in file order; an image may come several times.
    captions: "random" gives one sample per unique image (first-appearance order) whose caption the
        loader draws per (seed, epoch, index); "all" gives one sample per pair, in the given order.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]], *, captions: str = "random", source: str = "<pairs>"):
        if captions not in CAPTION_MODES:
            raise InvalidInputError(f"captions={captions!r} is not one of {CAPTION_MODES}")
        self.mode = captions
        self.source = source
        index: dict[str, int] = {}
        self.images: list[str] = []
        per_image: list[list[str]] = []
        rows: list[tuple[int, int]] = []  # (image, caption number) per pair, in the given order
        for image, caption in pairs:
            i = index.setdefault(image, len(self.images))
            if i == len(self.images):
                self.images.append(image)
                per_image.append([])
            rows.append((i, len(per_image[i])))
            per_image[i].append(caption)
        if not rows:
            raise InvalidInputError(f"{source}: no (image, caption) pairs to train on")
        self.captions: list[tuple[str, ...]] = [tuple(c) for c in per_image]
        self._rows = np.asarray(rows, dtype=np.int64)  # (pairs, 2)
        self.classes: list[str] | None = None  # set by from_class_folders
        self.labels: list[int] | None = None  # class index per unique image, likewise

    def __len__(self) -> int:
        return len(self.images) if self.mode == "random" else len(self._rows)

    def __getitem__(self, i: int) -> Pair:
        if self.mode == "random":
            return Pair(self.images[i], self.captions[i])
        image, k = (int(v) for v in self._rows[i])
        return Pair(self.images[image], (self.captions[image][k],))

    def __repr__(self) -> str:
        return (f"PairDataset({self.source!r}, {len(self.images)} images, {len(self._rows)} captions, "
                f"captions={self.mode!r})")

    @classmethod
    def from_file(cls, path: str | Path, images: slice | None = None, captions: str = "random") -> PairDataset:
        """A captions file: JSONL lines `{"image": path, "caption": text}` (or keys `file`/`text`),
        or CSV/TSV with a header naming an `image`/`filepath` and a `caption`/`text` column. Image
        paths are relative to the file's folder. `images` keeps a slice of the unique images in
        file order (as `polymodal eval retrieval --images 600:800` does)."""
        path = Path(path)
        if not path.is_file():
            raise InvalidInputError(f"captions file {str(path)!r} does not exist or is not a file")
        if images is not None and not isinstance(images, slice):
            raise InvalidInputError(f"images must be a slice of the unique images (e.g. slice(0, 600)), got {images!r}")
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            rows = _read_jsonl(path)
        elif suffix in (".csv", ".tsv"):
            rows = _read_csv(path)
        else:
            raise InvalidInputError(f"{path}: unknown captions file type {suffix!r}; use .jsonl, .csv or .tsv")
        pairs = [(str(path.parent / name), caption) for name, caption in rows]
        if images is not None:
            order = list(dict.fromkeys(name for name, _ in pairs))
            chosen = set(order[images])
            if not chosen:
                raise InvalidInputError(f"{path}: the slice {images.start}:{images.stop} of its {len(order)} "
                                        f"unique images is empty")
            pairs = [p for p in pairs if p[0] in chosen]
        return cls(pairs, captions=captions, source=str(path))

    @classmethod
    def from_class_folders(cls, root: str | Path, templates: Sequence[str] = ("a photo of a {}.",),
                           captions: str = "random") -> PairDataset:
        """root/CLASS/*.jpg -> pairs (image, template.format(class name)); underscores in folder
        names become spaces. With several templates, "random" draws one per sample and epoch."""
        root = Path(root)
        if not root.is_dir():
            raise InvalidInputError(f"{str(root)!r} is not a folder of class folders")
        if isinstance(templates, str) or not templates:
            raise InvalidInputError(f"templates must be a non-empty list of strings with a '{{}}', got {templates!r}")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise InvalidInputError(f"{root} holds no class folders (root/CLASS/image.jpg)")
        pairs, labels = [], []
        for c, name in enumerate(classes):
            texts = [_fill(t, name.replace("_", " ")) for t in templates]
            files = sorted(p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            for p in files:
                labels.append(c)
                pairs.extend((str(p), text) for text in texts)
        if not pairs:
            raise InvalidInputError(f"{root}: its class folders hold no images ({', '.join(IMAGE_SUFFIXES)})")
        data = cls(pairs, captions=captions, source=str(root))
        data.classes, data.labels = classes, labels
        return data


def _fill(template: str, label: str) -> str:
    if not isinstance(template, str) or "{}" not in template:
        raise InvalidInputError(f"template {template!r} has no '{{}}' for the class name")
    try:
        return template.format(label)
    except (IndexError, KeyError, ValueError) as exc:
        raise InvalidInputError(f"template {template!r} cannot be filled ({exc}); use one '{{}}'") from None


def _checked_row(path: Path, line: int, image, caption) -> tuple[str, str]:
    if not isinstance(image, str) or not image.strip():
        raise InvalidInputError(f"{path}:{line}: the image path is missing or empty (got {image!r}); "
                                f"give it as {'/'.join(IMAGE_KEYS)}")
    if not isinstance(caption, str) or not caption.strip():
        raise InvalidInputError(f"{path}:{line}: the caption is missing or empty (got {caption!r}); "
                                f"give it as {'/'.join(CAPTION_KEYS)}")
    return image, caption


def _read_jsonl(path: Path) -> list[tuple[str, str]]:
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidInputError(f"{path}:{line_no}: not valid JSON ({exc.msg}); each line must be "
                                            f'an object like {{"image": "images/a.jpg", "caption": "..."}}') from None
                if not isinstance(row, dict):
                    raise InvalidInputError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
                image = next((row[k] for k in IMAGE_KEYS if k in row), None)
                caption = next((row[k] for k in CAPTION_KEYS if k in row), None)
                rows.append(_checked_row(path, line_no, image, caption))
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return rows


def _read_csv(path: Path) -> list[tuple[str, str]]:
    rows = []
    try:
        with open(path, encoding="utf-8", newline="") as f:
            header = f.readline()
            f.seek(0)
            # Tab-separated files often carry a .csv name (open_clip's default), so the header decides.
            reader = csv.DictReader(f, delimiter="\t" if "\t" in header else ",")
            fields = reader.fieldnames or []
            lower = {name.strip().lower(): name for name in fields}
            image_col = next((lower[k] for k in IMAGE_KEYS if k in lower), None)
            caption_col = next((lower[k] for k in CAPTION_KEYS if k in lower), None)
            if image_col is None or caption_col is None:
                raise InvalidInputError(
                    f"{path}: the header {fields} needs an image column ({'/'.join(IMAGE_KEYS)}) and a caption "
                    f"column ({'/'.join(CAPTION_KEYS)})")
            for row in reader:
                rows.append(_checked_row(path, reader.line_num, row.get(image_col), row.get(caption_col)))
    except csv.Error as exc:
        raise InvalidInputError(f"{path}: not readable as CSV ({exc})") from None
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return rows


# ----------------------------------------------------------------------------------------------
# WebDataset shards


_BRACE = re.compile(r"\{([^{}]*)\}")


def _braces(text: str) -> list[str]:
    """Shell-style brace expansion: `a-{000..002}.tar` -> a-000.tar, a-001.tar, a-002.tar;
    `{x,y}` -> x, y. Braces that are neither stay literal."""
    m = _BRACE.search(text)
    if m is None:
        return [text]
    head, body, tail = text[: m.start()], m.group(1), text[m.end():]
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        lo, hi = numeric.groups()
        padded = any(len(v) > 1 and v.startswith("0") for v in (lo, hi))
        width = max(len(lo), len(hi)) if padded else 0
        step = 1 if int(hi) >= int(lo) else -1
        items = [str(v).zfill(width) for v in range(int(lo), int(hi) + step, step)]
    elif "," in body:
        items = body.split(",")
    else:
        return [head + "{" + body + "}" + rest for rest in _braces(tail)]
    return [out for item in items for out in _braces(head + item + tail)]


def expand_shards(spec) -> list[str]:
    """Shard paths from a brace pattern (`data-{000..009}.tar`), a glob, a folder (its *.tar,
    sorted), a single file, or a list of any of these."""
    if isinstance(spec, (list, tuple)):
        out = [path for item in spec for path in expand_shards(item)]
        if not out:
            raise InvalidInputError("the list of shards is empty")
        return out
    if not isinstance(spec, (str, os.PathLike)):
        raise InvalidInputError(f"shards must be a path, a pattern or a list of them, got {type(spec).__name__}")
    text = os.fspath(spec)
    if os.path.isdir(text):
        found = sorted(p for p in glob.glob(os.path.join(glob.escape(text), "*")) if p.endswith((".tar", ".tar.gz", ".tgz")))
        if not found:
            raise InvalidInputError(f"the folder {text!r} holds no .tar shards")
        return found
    out = []
    for pattern in _braces(text):
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise InvalidInputError(f"no shard matches {pattern!r}")
            out.extend(matches)
        elif os.path.isfile(pattern):
            out.append(pattern)
        else:
            raise InvalidInputError(f"shard {pattern!r} does not exist" + (f" (from {text!r})" if pattern != text else ""))
    return out


def _split_name(name: str) -> tuple[str, str] | None:
    """WebDataset's key/extension split: `dir/abc.seg.png` -> ("dir/abc", "seg.png")."""
    folder, _, base = name.rpartition("/")
    dot = base.find(".")
    if dot <= 0:
        return None  # no extension, or a hidden file: not part of a sample
    return (folder + "/" if folder else "") + base[:dot], base[dot + 1:].lower()


def _tar_groups(path: str, read_images: bool) -> Iterator[tuple[str, dict[str, bytes | None]]]:
    """(key, {ext: data}) for each run of consecutive members sharing a key. Read as a stream
    ("r|*": one member in memory at a time); without `read_images` the file is read at random
    access ("r:*") and image members are skipped over, which is what counting needs."""
    try:
        with tarfile.open(path, "r|*" if read_images else "r:*") as tf:
            key, parts = None, {}
            for member in tf:
                split = _split_name(member.name) if member.isfile() else None
                if split is None:
                    continue
                if split[0] != key:
                    if key is not None:
                        yield key, parts
                    key, parts = split[0], {}
                wanted = read_images or split[1] in ("txt", "json")
                parts[split[1]] = tf.extractfile(member).read() if wanted else None
            if key is not None:
                yield key, parts
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        _warn_once(f"shard:{path}", f"{path}: the shard is unreadable or cut short ({exc}); "
                                    f"the samples after this point are skipped")


def _caption_of(parts: dict) -> str | None:
    try:
        if parts.get("txt") is not None:
            text = parts["txt"].decode("utf-8").strip()
        elif parts.get("json") is not None:
            meta = json.loads(parts["json"])
            text = meta.get("caption") if isinstance(meta, dict) else None
            text = text.strip() if isinstance(text, str) else None
        else:
            return None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return text or None


def _shard_samples(path: str, read_images: bool) -> Iterator[tuple[str, str, bytes | None, str]]:
    """(key, image ext, image bytes or None, caption) of the complete samples of one shard; samples
    without an image or a caption are skipped (warned once per shard)."""
    skipped, first = 0, ""
    for key, parts in _tar_groups(path, read_images):
        ext = next((e for e in SHARD_IMAGE_EXTS if e in parts), None)
        caption = _caption_of(parts)
        if ext is None or caption is None:
            skipped += 1
            first = first or (f"{key}: no image member ({'/'.join(SHARD_IMAGE_EXTS)})" if ext is None
                              else f"{key}: no caption (.txt, or .json with a 'caption')")
            continue
        yield key, ext, parts[ext], caption
    if skipped:
        _warn_once(f"skipped:{path}", f"{path}: {skipped} incomplete samples skipped, the first {first}")


_counts: dict[tuple[str, int, int], int] = {}  # per process: (path, mtime_ns, size) -> complete samples


def shard_length(path: str) -> int:
    """Complete samples in a shard: from a `sizes.json` beside it (`{"name.tar": count}`, the
    WebDataset convention) if it lists the shard, else by reading the tar headers and captions."""
    st = os.stat(path)
    cache_key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    if cache_key not in _counts:
        sizes = Path(path).parent / "sizes.json"
        listed = None
        if sizes.is_file():
            try:
                listed = json.loads(sizes.read_text(encoding="utf-8")).get(os.path.basename(path))
            except (json.JSONDecodeError, AttributeError, OSError):
                listed = None
        _counts[cache_key] = int(listed) if isinstance(listed, int) else sum(1 for _ in _shard_samples(path, False))
    return _counts[cache_key]


class ShardStream(IterableDataset):
    """Samples from WebDataset tar shards: dicts with key, shard, image (encoded bytes), ext,
    caption, position (in this rank's epoch stream) and index (unique in the epoch:
    position * world_size + rank).

    Order of an epoch: the shard list is permuted by (seed, epoch), rank r reads shards
    r, r + world_size, ... of it in turn, and a shuffle buffer of `shuffle_buffer` samples seeded
    by (seed, epoch, rank) mixes them (memory: that many encoded samples). `start_sample` resumes
    at a position: the samples before it are read again but not yielded (nor decoded).

    Shards are split across ranks; within a rank, DataLoader workers split the samples, not the
    shards: each worker reads all of the rank's shards and keeps its share (worker w of W yields
    positions start + w, start + w + W, ...). Reading a member costs little next to decoding
    it, and this keeps the order independent of the number of workers and the resume exact
    (with shards per worker, the interleaving would depend on W and on where each worker runs dry).
    """

    def __init__(self, shards, *, seed: int = 0, epoch: int = 0, rank: int = 0, world_size: int = 1,
                 start_sample: int = 0, shuffle_buffer: int = 1000, shuffle_shards: bool = True):
        self.shards = expand_shards(shards)
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.start_sample, self.shuffle_buffer, self.shuffle_shards = start_sample, shuffle_buffer, shuffle_shards
        self._check()

    def _check(self) -> None:
        for name in ("seed", "epoch", "start_sample", "shuffle_buffer"):
            _check_int(name, getattr(self, name), 0)
        _check_int("world_size", self.world_size, 1)
        _check_int("rank", self.rank, 0)
        if self.rank >= self.world_size:
            raise InvalidInputError(f"rank {self.rank} is not below world_size {self.world_size}")
        if len(self.shards) < self.world_size:
            raise InvalidInputError(f"{len(self.shards)} shards cannot be split over {self.world_size} ranks: "
                                    f"write at least one shard per rank (several per rank mix better)")

    def with_options(self, **changes) -> ShardStream:
        """A copy with other seed/epoch/rank/world_size/start_sample/shuffle settings."""
        other = copy.copy(self)
        for name, value in changes.items():
            if name not in ("seed", "epoch", "rank", "world_size", "start_sample", "shuffle_buffer", "shuffle_shards"):
                raise InvalidInputError(f"ShardStream has no option {name!r}")
            setattr(other, name, value)
        other._check()
        return other

    def rank_shards(self, rank: int | None = None) -> list[str]:
        """The shards rank `rank` (default: this stream's) reads this epoch, in reading order."""
        order = list(self.shards)
        if self.shuffle_shards:
            perm = np.random.default_rng((self.seed, self.epoch)).permutation(len(order))
            order = [order[k] for k in perm]
        return order[(self.rank if rank is None else rank)::self.world_size]

    def rank_lengths(self) -> list[int]:
        """Samples each rank streams this epoch (counted once per shard and process, see shard_length)."""
        return [sum(shard_length(s) for s in self.rank_shards(r)) for r in range(self.world_size)]

    def __len__(self) -> int:
        return self.rank_lengths()[self.rank]

    def _read(self) -> Iterator[dict]:
        for shard in self.rank_shards():
            for key, ext, data, caption in _shard_samples(shard, True):
                yield {"key": key, "shard": shard, "image": data, "ext": ext, "caption": caption}

    def _shuffled(self, items: Iterator[dict]) -> Iterator[dict]:
        size = self.shuffle_buffer
        if size <= 1:
            yield from items
            return
        rng = np.random.default_rng((self.seed, self.epoch, self.rank, _BUFFER_TAG))
        buffer: list[dict] = []
        for item in items:
            if len(buffer) < size:
                buffer.append(item)
                continue
            k = int(rng.integers(size))  # emit a random resident, the newcomer takes its place
            yield buffer[k]
            buffer[k] = item
        for k in rng.permutation(len(buffer)):
            yield buffer[k]

    def samples(self, start: int | None = None, worker: int = 0, workers: int = 1, block: int = 1) -> Iterator[dict]:
        """The positions p >= start (default start_sample) whose block ((p - start) // block) falls
        to `worker` of `workers` round-robin; make_loader uses a block per batch."""
        start = self.start_sample if start is None else start
        for position, item in enumerate(self._shuffled(self._read())):
            if position < start or ((position - start) // block) % workers != worker:
                continue
            item["position"] = position
            item["index"] = position * self.world_size + self.rank
            yield item

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.samples(self.start_sample, worker, workers, 1)


# ----------------------------------------------------------------------------------------------
# Views and batches


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class _Views:
    """Turns one sample into its view: decode (JPEG draft at 2S), crop, caption choice."""

    def __init__(self, size: int, interpolation: str, seed: int, augment: bool, crop_scale: float = CROP_SCALE):
        self.size, self.interpolation, self.seed, self.augment = size, interpolation, seed, augment
        self.scale = (crop_scale, 1.0)  # area fraction range of the random resized crop

    def view(self, item, name: str, captions: Sequence[str], epoch: int, index: int) -> dict:
        """Raises MediaError when the image does not decode."""
        rng = np.random.default_rng((self.seed, epoch, index))
        caption = captions[int(rng.integers(len(captions)))] if len(captions) > 1 else captions[0]
        s = self.size
        # The JPEG draft only halves (quarters, ...) while both sides stay >= 2S, so the size
        # reported is the file's own whenever a side is under 4S, and >= 2S otherwise: what the
        # embedders see at inference, which decode the same way (lite's low-resolution flag
        # looks for sides under 64).
        image = load_image(item, draft_size=(2 * s, 2 * s), source=name)
        if self.augment:
            pixels = random_resized_crop(image, s, rng, scale=self.scale, interpolation=self.interpolation)
        else:
            pixels = center_view(image, s, self.interpolation)
        return {"pixels": pixels, "size": image.size, "caption": caption, "index": index}


def _collate(samples: list[dict]) -> dict:
    return {
        "pixels": torch.from_numpy(np.stack([s["pixels"] for s in samples])),  # (B, S, S, 3) uint8
        "sizes": torch.tensor([s["size"] for s in samples], dtype=torch.int64).reshape(-1, 2),  # (B, 2) w, h
        "captions": [s["caption"] for s in samples],
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.int64),  # (B,)
    }


def _passthrough(batch):
    return batch


class _PairViews(Dataset):
    """Map-style views of a PairDataset, keyed by (epoch, index) so one worker pool could serve
    any epoch. A bad image is replaced by a sample drawn from (seed, epoch, index, attempt)."""

    def __init__(self, pairs: PairDataset, views: _Views):
        self.pairs, self.views = pairs, views

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, i = key
        j = i
        for attempt in range(1, _MAX_REPLACEMENTS + 2):
            pair = self.pairs[j]
            if pair.image not in _bad_images:
                try:
                    return self.views.view(pair.image, pair.image, pair.captions, epoch, j)
                except MediaError as exc:
                    _bad_images.add(pair.image)
                    _warn_once(pair.image, f"{pair.image}: {exc.reason}: {exc.detail}; the sample is replaced by "
                                           f"another one (reported once)")
            j = int(np.random.default_rng((self.views.seed, epoch, i, attempt)).integers(len(self.pairs)))
        raise InvalidInputError(f"{self.pairs.source}: {_MAX_REPLACEMENTS + 1} images in a row did not decode "
                                f"(the last {self.pairs[j].image}); check that the image paths are right")


class _RankBatches(Sampler):
    """This rank's batches of (epoch, index) keys, from batch `start` of epoch `epoch` on.

    The epoch's order is a permutation seeded by (seed, epoch), the same on every rank; global
    batch j holds rows [j*G, (j+1)*G) of it (G = batch_size * world_size) and rank r takes rows
    [r*B, (r+1)*B) of each, so the ranks' batches together are the one-process batch of size G.
    Without drop_last the last, partial global batch is split into near-equal contiguous parts; a
    remainder smaller than world_size is dropped so that every rank runs the same number of steps.
    `endless` runs on into epoch + 1, epoch + 2, ... (each from its batch 0): what TrainLoader's
    one pipeline across epochs iterates.
    """

    def __init__(self, n: int, batch_size: int, world_size: int, rank: int, seed: int, epoch: int,
                 drop_last: bool, start: int, endless: bool = False):
        self.n, self.b, self.world, self.rank = n, batch_size, world_size, rank
        self.seed, self.epoch, self.start, self.endless = seed, epoch, start, endless
        g = batch_size * world_size
        self.full = n // g
        rest = n - self.full * g
        self.batches = self.full + (1 if not drop_last and rest >= world_size else 0)

    def __len__(self) -> int:
        if self.endless:
            raise TypeError("an endless run of epochs has no length")
        return self.batches - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        # epoch and start are read now, not at the first next(): TrainLoader moves them between runs
        return self._keys(self.epoch, self.start)

    def _keys(self, first_epoch: int, start: int) -> Iterator[list[tuple[int, int]]]:
        g = self.b * self.world
        epoch = first_epoch
        while True:
            order = np.random.default_rng((self.seed, epoch)).permutation(self.n)
            for j in range(start if epoch == first_epoch else 0, self.batches):
                if j < self.full:
                    rows = order[j * g + self.rank * self.b: j * g + (self.rank + 1) * self.b]
                else:
                    rows = np.array_split(order[self.full * g:], self.world)[self.rank]
                yield [(epoch, int(i)) for i in rows]
            if not self.endless:
                return
            epoch += 1


class _StreamBatches(IterableDataset):
    """Decoded batches of a ShardStream for one rank. Worker w of W decodes batches j with
    j % W == w (each worker reads the rank's shards, but decodes only its own batches), and the
    DataLoader takes one batch from each worker in turn, so the batches come in stream order
    whatever W is. A bad image is replaced by the next decodable sample of its batch."""

    def __init__(self, stream: ShardStream, views: _Views, batch_size: int, start: int, batches: int):
        self.stream, self.views, self.b, self.start, self.batches = stream, views, batch_size, start, batches

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        first = self.start * self.b
        pending: list[dict] = []
        for sample in self.stream.samples(first, worker, workers, self.b):
            if self.start + (sample["position"] - first) // self.b >= self.batches:
                break
            pending.append(sample)
            if len(pending) == self.b:
                yield self._decode(pending)
                pending = []
        if pending:
            yield self._decode(pending)

    def _decode(self, samples: list[dict]) -> dict:
        epoch = self.stream.epoch
        views: list[dict | None] = []
        for s in samples:
            name = f"{s['shard']}:{s['key']}.{s['ext']}"
            try:
                views.append(self.views.view(s["image"], name, (s["caption"],), epoch, s["index"]))
            except MediaError as exc:
                _warn_once(name, f"{name}: {exc.reason}: {exc.detail}; the sample is replaced by another "
                                 f"one of its batch")
                views.append(None)
        good = [k for k, v in enumerate(views) if v is not None]
        if not good:
            raise InvalidInputError(f"no image of a batch of {len(samples)} from {samples[0]['shard']} decodes")
        # each bad one takes the next good one (cyclically): deterministic, no extra decoding
        out = [v if v is not None else views[next((g for g in good if g > k), good[0])] for k, v in enumerate(views)]
        return _collate(out)


class EpochLoader:
    """One epoch of batches for one rank: iterate it; `len()` is the number of batches in the
    whole epoch (a loader started at `start_batch` yields `len() - start_batch` of them)."""

    def __init__(self, source: Iterable[dict], batches: int, start_batch: int, epoch: int):
        self.source, self.batches, self.start_batch, self.epoch = source, batches, start_batch, epoch

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[dict]:
        return iter(self.source)


def _checked_settings(batch_size, image_size, interpolation, seed, rank, world_size, workers, augment,
                      crop_scale=CROP_SCALE) -> dict:
    """make_loader's and TrainLoader's common arguments, checked here so that a bad one fails in
    the caller's process, not in a worker."""
    _transform(image_size, interpolation)
    settings = {"batch_size": _check_int("batch_size", batch_size, 1), "image_size": image_size,
                "interpolation": interpolation, "seed": _check_int("seed", seed, 0),
                "rank": _check_int("rank", rank, 0), "world_size": _check_int("world_size", world_size, 1),
                "workers": _check_int("workers", workers, 0), "augment": bool(augment),
                "crop_scale": check_crop_scale(crop_scale)}
    if settings["rank"] >= settings["world_size"]:
        raise InvalidInputError(f"rank {rank} is not below world_size {world_size}")
    return settings


def make_loader(dataset, *, batch_size: int, image_size: int, interpolation: str = "bicubic", seed: int,
                epoch: int, start_batch: int = 0, rank: int = 0, world_size: int = 1, workers: int = 2,
                augment: bool = True, crop_scale: float = CROP_SCALE, drop_last: bool = True) -> EpochLoader:
    """Epoch `epoch` of `dataset` (a PairDataset or a ShardStream) for rank `rank`, from batch
    `start_batch` on. Each batch: {"pixels": (B, S, S, 3) uint8, "sizes": (B, 2) int64 (w, h)
    of the decoded image before cropping (see _Views.view), "captions": list of B str, "index": (B,) int64 sample indices}.

    Views are random resized crops (area `crop_scale`-1; 0.9-1 is open_clip's default) when `augment`, else the
    eval view. For a ShardStream every rank gets the smallest rank's number of batches, so that
    distributed steps stay in step. The worker processes live for this one epoch; a training
    loop over many epochs wants `TrainLoader`, whose workers stay busy across epochs."""
    cfg = _checked_settings(batch_size, image_size, interpolation, seed, rank, world_size, workers, augment,
                            crop_scale)
    b, seed, rank, world = cfg["batch_size"], cfg["seed"], cfg["rank"], cfg["world_size"]
    epoch, start = _check_int("epoch", epoch, 0), _check_int("start_batch", start_batch, 0)
    views = _Views(image_size, interpolation, seed, cfg["augment"], cfg["crop_scale"])
    options = {"num_workers": cfg["workers"], "pin_memory": False}
    if isinstance(dataset, ShardStream):
        stream = dataset.with_options(seed=seed, epoch=epoch, rank=rank, world_size=world, start_sample=0)
        lengths = stream.rank_lengths()
        batches = min(n // b if drop_last else -(-n // b) for n in lengths)
        _check_start(start, batches)
        source = _StreamBatches(stream, views, b, start, batches)
        loader = DataLoader(source, batch_size=None, collate_fn=_passthrough, **options)
    elif isinstance(dataset, PairDataset):
        sampler = _RankBatches(len(dataset), b, world, rank, seed, epoch, bool(drop_last), 0)
        batches = sampler.batches
        _check_start(start, batches)
        sampler.start = start
        loader = DataLoader(_PairViews(dataset, views), batch_sampler=sampler, collate_fn=_collate, **options)
    else:
        raise InvalidInputError(f"make_loader takes a PairDataset or a ShardStream, got {type(dataset).__name__}")
    return EpochLoader(loader, batches, start, epoch)


class TrainLoader:
    """A rank's batches epoch after epoch, from one pipeline of worker processes: what a
    training loop over many epochs uses. `loader.epoch(e, start_batch)` gives the same batches as
    `make_loader(..., epoch=e, start_batch=start_batch)`; `close()` (or `with`) ends the workers.

    Why: `make_loader`'s workers start with the epoch and stop at its end, so every epoch opens
    with an empty pipeline: the model waits for the processes to start (a fork of the training
    process) and for one of them to decode a whole batch. That matters when epochs are short
    (Flickr 800 / 64 = 12 batches) and steps are quick. Here one DataLoader with persistent workers iterates an endless batch sampler
    that runs on from epoch to epoch. The keys carry their epoch ((epoch, index), see
    _PairViews), so the workers hold no epoch state, and epoch e + 1's first batches decode while
    epoch e's last ones train.

    Asked for a batch at the pipeline's position (the common case) it continues; a few batches
    ahead (those the caller skipped, e.g. a partial accumulation group at the end of an epoch,
    already in flight) it drops the ones in between; anywhere else (a resume, a repeat) it
    restarts the pipeline there with the same worker processes. The batch at a position does not
    depend on how it was reached.

    A ShardStream is read by each worker from its own copy, whose epoch fixes the shard order, so
    its epochs come from make_loader, with fresh workers each.
    """

    def __init__(self, dataset, *, batch_size: int, image_size: int, interpolation: str = "bicubic", seed: int,
                 rank: int = 0, world_size: int = 1, workers: int = 2, augment: bool = True,
                 crop_scale: float = CROP_SCALE, drop_last: bool = True):
        self.settings = _checked_settings(batch_size, image_size, interpolation, seed, rank, world_size, workers,
                                          augment, crop_scale)
        self.settings["drop_last"] = bool(drop_last)
        self.dataset = dataset
        if isinstance(dataset, ShardStream):
            return
        if not isinstance(dataset, PairDataset):
            raise InvalidInputError(f"TrainLoader takes a PairDataset or a ShardStream, got {type(dataset).__name__}")
        cfg = self.settings
        self._sampler = _RankBatches(len(dataset), cfg["batch_size"], cfg["world_size"], cfg["rank"], cfg["seed"],
                                     0, cfg["drop_last"], 0, endless=True)
        self.batches = self._sampler.batches
        _check_start(0, self.batches)
        self._views = _PairViews(dataset, _Views(image_size, interpolation, cfg["seed"], cfg["augment"],
                                                        cfg["crop_scale"]))
        # DataLoader's default prefetch: 2 batches per worker in flight, all of them skippable at no extra cost
        self._in_flight = 2 * cfg["workers"]
        self._loader: DataLoader | None = None
        self._it: Iterator[dict] | None = None
        self._next = 0  # position (epoch * batches + batch) of the batch self._it yields next

    def epoch(self, epoch: int, start_batch: int = 0) -> EpochLoader:
        """The batches of epoch `epoch` from `start_batch` on; no work starts before the first is asked for."""
        epoch, start = _check_int("epoch", epoch, 0), _check_int("start_batch", start_batch, 0)
        if isinstance(self.dataset, ShardStream):
            return make_loader(self.dataset, epoch=epoch, start_batch=start, **self.settings)
        _check_start(start, self.batches)
        return EpochLoader(_EpochRun(self, epoch, start), self.batches, start, epoch)

    def _batch(self, position: int) -> dict:
        ahead = position - self._next
        if self._it is None or not 0 <= ahead <= self._in_flight:
            if self._loader is None:
                self._loader = DataLoader(self._views, batch_sampler=self._sampler, collate_fn=_collate,
                                          num_workers=self.settings["workers"], pin_memory=False,
                                          persistent_workers=self.settings["workers"] > 0)
            # with persistent workers, iter() restarts the same processes from the sampler's new start
            self._sampler.epoch, self._sampler.start = divmod(position, self.batches)
            self._it, self._next, ahead = iter(self._loader), position, 0
        for _ in range(ahead):
            next(self._it)
        self._next = position + 1
        return next(self._it)

    def close(self) -> None:
        """Stop the worker processes (the next batch asked for starts new ones)."""
        it, self._it, self._loader = getattr(self, "_it", None), None, None
        shutdown = getattr(it, "_shutdown_workers", None)  # DataLoader's own clean exit of its workers
        if shutdown is not None:
            shutdown()

    def __enter__(self) -> TrainLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _EpochRun:
    """The batches of one epoch, from a TrainLoader's pipeline; each iteration starts at start_batch."""

    def __init__(self, owner: TrainLoader, epoch: int, start: int):
        self.owner, self.epoch, self.start = owner, epoch, start

    def __iter__(self) -> Iterator[dict]:
        first = self.epoch * self.owner.batches
        for j in range(self.start, self.owner.batches):
            yield self.owner._batch(first + j)


def _check_start(start: int, batches: int) -> None:
    if start > batches:
        raise InvalidInputError(f"start_batch {start} is past the end of the epoch ({batches} batches)")
    if batches == 0:
        raise InvalidInputError("the data set is smaller than one batch per rank: lower the batch size or add data")
