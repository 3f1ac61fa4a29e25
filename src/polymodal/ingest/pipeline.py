"""The ingestion pipeline: walk -> read + hash -> decode -> embed -> write, streaming.

Stages overlap: reader threads read, hash and probe files a bounded number ahead; the embedder
decodes pixels in its own threads a few batches ahead of the model (Embedder.iter_image_batches);
a writer thread commits finished rows while the model runs. Memory is bounded by those look-aheads,
never by the size of the collection or of the folder.

A file's rows are committed together, in one Lance commit, only once all its items are embedded;
so a process killed at any moment (kill -9 included) leaves only whole files behind, and the next
run's plan (polymodal.ingest.plan) finds exactly what is missing.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from polymodal.errors import MediaError
from polymodal.ingest.decoders import Item, decoder_for, known_suffixes
from polymodal.ingest.plan import Plan, SourceFile, make_plan, scan_under
from polymodal.store.schema import content_hash, item_id, records_to_table

MAX_FILE_BYTES_ENV = "POLYMODAL_MAX_FILE_BYTES"
DEFAULT_MAX_FILE_BYTES = 512 << 20
READ_AHEAD = 64  # files read and hashed ahead of the embedder
COMMIT_ROWS_ENV = "POLYMODAL_COMMIT_ROWS"
COMMIT_ROWS = 2048  # rows per commit: large commits keep fragments few (see benchmarks/ingest_throughput.py)
COMMIT_SECONDS = 5.0  # ... but never hold finished work longer than this (a kill loses at most this much)


@dataclass
class SkippedFile:
    source: str
    reason: str  # "corrupt", "unsupported", "too-large", "unreadable", "empty"
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class IndexReport:
    collection: str
    model: str
    roots: list[str]
    files_seen: int = 0
    unchanged: int = 0
    new: int = 0  # files embedded for the first time
    changed: int = 0  # files whose content changed, re-embedded
    copied: int = 0  # files whose content was already stored under another path (vector reused)
    touched: int = 0  # files with a new mtime and the same content (nothing re-embedded)
    moved: int = 0  # rows removed because their content now lives under another path
    removed: int = 0  # rows of deleted files removed (--prune)
    missing: int = 0  # rows of deleted files kept (no --prune)
    items_embedded: int = 0
    ignored: int = 0  # files of no known media type in walked folders
    skipped: list[SkippedFile] = field(default_factory=list)
    seconds: float = 0.0
    write_seconds: float = 0.0  # time spent in storage commits (writer thread)
    count: int = 0  # rows in the collection afterwards
    index: dict | None = None
    engine: str = "local"
    cancelled: bool = False  # stopped early by `should_stop`; the next run finishes the job
    guarded: bool = False  # images were scanned for prompt injections (--guard)
    flagged: list[str] = field(default_factory=list)  # with --guard: files carrying an injection

    @property
    def files_per_second(self) -> float:
        done = self.new + self.changed + self.copied
        return done / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["files_per_second"] = round(self.files_per_second, 2)
        out["seconds"] = round(self.seconds, 3)
        out["write_seconds"] = round(self.write_seconds, 3)
        return out


# ----------------------------------------------------------------------------------------------
# Reading one source (runs in reader threads; also used by the Ray engine)


@dataclass
class Read:
    file: SourceFile
    hash: str = ""
    action: str = ""  # "embed" | "touch" | "copy" | "skip"
    items: list[Item] = field(default_factory=list)
    copy_from: str | None = None
    skipped: SkippedFile | None = None


def max_file_bytes() -> int:
    return int(os.environ.get(MAX_FILE_BYTES_ENV, DEFAULT_MAX_FILE_BYTES))


def read_source(f: SourceFile, plan: Plan) -> Read:
    """Read, hash and decode one file, deciding what it needs (see polymodal.ingest.plan)."""
    out = Read(f)
    limit = max_file_bytes()
    if f.size > limit:
        out.action, out.skipped = "skip", SkippedFile(
            f.path, "too-large", f"{f.size:,} bytes exceeds the limit of {limit:,}; set {MAX_FILE_BYTES_ENV}=N to allow more")
        return out
    try:
        with open(f.path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        out.action, out.skipped = "skip", SkippedFile(f.path, "unreadable", exc.strerror or str(exc))
        return out
    out.hash = content_hash(data)
    rows = plan.stored.get(f.path)
    if rows and all(r["content_hash"] == out.hash for r in rows):
        out.action = "touch"
        return out
    other = plan.by_hash.get(out.hash)
    if other is not None and other != f.path:
        out.action, out.copy_from = "copy", other
        return out
    try:
        out.items = decoder_for(f.path).decode(f.path, data)
        out.action = "embed"
    except MediaError as exc:
        out.action, out.skipped = "skip", SkippedFile(f.path, exc.reason, exc.detail)
    return out


def guard_read(read: Read, report: IndexReport) -> Read:
    """Scan the images of a file about to be embedded for prompt injections (polymodal.guard) and
    record the verdict in each item's metadata under "guard"; flagged files are listed in the
    report. Runs in the reader threads, beside decoding."""
    if read.action != "embed":
        return read
    from polymodal.guard.scan import scan_images

    images = [item for item in read.items if item.kind == "image"]
    if not images:
        return read
    for item, scan in zip(images, scan_images([item.payload for item in images])):
        if scan.error:
            continue  # the embedder reports unreadable images itself
        item.metadata["guard"] = {
            "risk": round(scan.risk, 4), "flagged": scan.flagged, "hidden": scan.hidden_injection,
            "techniques": scan.techniques, "texts": [f.text[:200] for f in scan.findings if f.flagged][:3]}
    if any(item.metadata.get("guard", {}).get("flagged") for item in images):
        report.flagged.append(read.file.path)
    return read


def item_record(read: Read, item: Item, metadata: dict | None = None) -> dict:
    meta = dict(item.metadata)
    if metadata:
        meta.update(metadata)
    return {"id": item_id(item.uri), "uri": item.uri, "source": read.file.path, "content_hash": read.hash,
            "kind": item.kind, "media_type": item.media_type, "size": read.file.size, "mtime": read.file.mtime,
            "width": item.width, "height": item.height, "text": item.text, "metadata": meta}


# ----------------------------------------------------------------------------------------------
# Writer


class _Writer(threading.Thread):
    """Commits whole files' rows in large batches while the model keeps running."""

    def __init__(self, collection):
        super().__init__(daemon=True, name="polymodal-writer")
        self.collection = collection
        self.queue: queue.Queue = queue.Queue(maxsize=16)
        self.seconds = 0.0
        self.error: BaseException | None = None
        self.done_files = 0
        self._records: list[dict] = []
        self._vectors: list[np.ndarray] = []
        self._replace = False  # any row in the buffer may already be stored (upsert needed)
        self._drop_ids: list[str] = []  # rows of changed files that their new version no longer has
        self._touch: list[tuple[str, int, float]] = []
        self._last = time.monotonic()
        self.commit_rows = int(os.environ.get(COMMIT_ROWS_ENV, COMMIT_ROWS))

    def put(self, records: list[dict], vectors: np.ndarray, replace: bool, drop_ids=()) -> None:
        if self.error:
            raise self.error
        self.queue.put((records, vectors, replace, list(drop_ids)))

    def touch(self, stats: list[tuple[str, int, float]]) -> None:
        """New (size, mtime) for rows whose file was touched but not changed."""
        if self.error:
            raise self.error
        self.queue.put(("touch", stats))

    def close(self) -> None:
        self.queue.put(None)
        self.join()
        if self.error:
            raise self.error

    def run(self) -> None:
        try:
            while True:
                try:
                    job = self.queue.get(timeout=0.5)
                except queue.Empty:
                    job = False
                if job is None:
                    self._commit()
                    return
                if job and job[0] == "touch":
                    self._touch += job[1]
                elif job:
                    records, vectors, replace, drop = job
                    self._records += records
                    self._vectors.append(vectors)
                    self._replace |= replace
                    self._drop_ids += drop
                    self.done_files += 1
                pending = len(self._records) + len(self._touch)
                if pending >= self.commit_rows or (pending and time.monotonic() - self._last >= COMMIT_SECONDS):
                    self._commit()
        except BaseException as exc:  # surfaced to the main thread by put()/close()
            self.error = exc
            while True:  # unblock a producer waiting on a full queue
                try:
                    if self.queue.get_nowait() is None:
                        return
                except queue.Empty:
                    time.sleep(0.05)

    def _commit(self) -> None:
        start = time.perf_counter()
        if self._touch:
            self.collection.update_stats(self._touch)
            self._touch = []
        if self._records:
            table = records_to_table(self._records, np.concatenate(self._vectors), self.collection.meta)
            if self._replace:
                self.collection.upsert(table)
            else:
                self.collection.add(table)
            if self._drop_ids:
                self.collection.delete(self._drop_ids)
        self.seconds += time.perf_counter() - start
        self._records, self._vectors, self._replace, self._drop_ids = [], [], False, []
        self._last = time.monotonic()


# ----------------------------------------------------------------------------------------------
# The local engine


class _Progress:
    def __init__(self, total: int, show: bool, on_progress: Callable[[int, int], None] | None):
        self.total, self.done, self.on_progress = total, 0, on_progress
        self.bar = None
        if show and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="file", desc="indexing", dynamic_ncols=True, file=sys.stderr)
        if on_progress:
            on_progress(0, total)

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.bar:
            self.bar.update(n)
        if self.on_progress:
            self.on_progress(self.done, self.total)

    def close(self) -> None:
        if self.bar:
            self.bar.close()


class _FileState:
    """A file whose items are being embedded; its rows are written when the last one is done."""

    __slots__ = ("read", "vectors", "remaining", "failed")

    def __init__(self, read: Read):
        self.read = read
        self.vectors: dict[int, np.ndarray] = {}
        self.remaining = len(read.items)
        self.failed: list[str] = []


def run_local(collection, embedder, plan: Plan, report: IndexReport, *, metadata: dict | None,
              progress: _Progress, should_stop: Callable[[], bool] | None = None, guard: bool = False) -> None:
    def read_file(f: SourceFile) -> Read:
        read = read_source(f, plan)
        return guard_read(read, report) if guard else read

    writer = _Writer(collection)
    writer.start()
    texts: list[tuple[_FileState, int]] = []  # text items waiting for a batch
    image_slots: deque[tuple[_FileState, int]] = deque()  # (file, item index) per image streamed, in order

    def finish(state: _FileState) -> None:
        read = state.read
        good = [i for i in range(len(read.items)) if i in state.vectors]
        if not good:
            report.skipped.append(SkippedFile(read.file.path, *_first_reason(state.failed)))
        else:
            if state.failed:
                report.skipped.append(SkippedFile(read.file.path, *_first_reason(state.failed)))
            records = [item_record(read, read.items[i], metadata) for i in good]
            old = plan.stored.get(read.file.path, [])
            new_ids = {r["id"] for r in records}
            writer.put(records, np.stack([state.vectors[i] for i in good]), replace=bool(old),
                       drop_ids=[r["id"] for r in old if r["id"] not in new_ids])
            report.items_embedded += len(good)
            if old:
                report.changed += 1
            else:
                report.new += 1
        progress.step()

    def item_done(state: _FileState, index: int, vector: np.ndarray | None, failure: str | None = None) -> None:
        if vector is not None:
            state.vectors[index] = vector
        else:
            state.failed.append(failure or "corrupt: embedding failed")
        state.remaining -= 1
        if state.remaining == 0:
            finish(state)

    def flush_texts() -> None:
        if not texts:
            return
        batch = [state.read.items[i].payload for state, i in texts]
        with warnings.catch_warnings():  # truncation is expected for long files; the text tower's context is short
            warnings.simplefilter("ignore")
            result = embedder.embed_texts(batch)
        vectors = dict(zip(result.kept, result.vectors))
        reasons = {f.index: f"{f.reason}: {f.message}" for f in result.failures}
        for j, (state, i) in enumerate(texts):
            item_done(state, i, vectors.get(j), reasons.get(j))
        texts.clear()

    def handle(read: Read):
        """Route one read file; yields the image payloads the embedder must take."""
        if read.action == "skip":
            report.skipped.append(read.skipped)
            progress.step()
            return
        if read.action == "touch":
            writer.touch([(r["id"], read.file.size, read.file.mtime) for r in plan.stored[read.file.path]])
            report.touched += 1
            progress.step()
            return
        if read.action == "copy":
            records, vectors = _copied_rows(collection, read, metadata, plan.version)
            old = plan.stored.get(read.file.path, [])
            new_ids = {r["id"] for r in records}
            writer.put(records, vectors, replace=bool(old), drop_ids=[r["id"] for r in old if r["id"] not in new_ids])
            report.copied += 1
            progress.step()
            return
        state = _FileState(read)
        for index, item in enumerate(read.items):
            if item.kind == "image":
                image_slots.append((state, index))
                yield item.payload
            elif item.kind == "text":
                texts.append((state, index))
                if len(texts) >= embedder.text_batch_size:
                    flush_texts()
            else:
                item_done(state, index, None, f"unsupported: no tower embeds items of kind {item.kind!r}")

    def image_stream():
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="polymodal-read") as pool:
            ahead: deque = deque()
            files = iter(plan.work)
            for f in files:
                ahead.append(pool.submit(read_file, f))
                if len(ahead) >= READ_AHEAD:
                    break
            while ahead:
                read = ahead.popleft().result()
                if should_stop is not None and should_stop():
                    # Stop: files already handed to the model are written (whole); files read
                    # ahead are dropped, and the next run picks them up.
                    report.cancelled = True
                    for future in ahead:
                        future.cancel()
                    return
                nxt = next(files, None)
                if nxt is not None:
                    ahead.append(pool.submit(read_file, nxt))
                yield from handle(read)

    try:
        for part in embedder.iter_image_batches(image_stream()):
            # `kept` and failure indices count images in stream order; slots hold them in that order.
            outcome: dict[int, tuple[np.ndarray | None, str | None]] = {}
            for row, index in enumerate(part.kept):
                outcome[index] = (part.vectors[row], None)
            for failure in part.failures:
                outcome[failure.index] = (None, f"{failure.reason}: {failure.message}")
            for index in sorted(outcome):
                state, item_index = image_slots.popleft()
                vector, why = outcome[index]
                item_done(state, item_index, vector, why)
        flush_texts()
    finally:
        writer.close()
        report.write_seconds += writer.seconds


def _first_reason(failed: list[str]) -> tuple[str, str]:
    reason, _, message = failed[0].partition(": ")
    return reason, message


def _copied_rows(collection, read: Read, metadata: dict | None, version: int) -> tuple[list[dict], np.ndarray]:
    """Rows for a file whose content is stored under another path: same items, same vectors, read
    from the collection as the plan saw it (that path's file may have been rewritten since)."""
    from polymodal.ingest.plan import root_filter

    rows = list(collection.scan(["uri", "kind", "media_type", "width", "height", "text", "metadata", "vector"],
                                where=root_filter([read.copy_from]), version=version))
    records, vectors = [], []
    for row in rows:
        fragment = row["uri"][len(read.copy_from):]  # "" for whole files, "#page=3" for parts
        item = Item(uri=read.file.path + fragment, kind=row["kind"], payload=None, media_type=row["media_type"],
                    width=row["width"], height=row["height"], text=row["text"],
                    metadata=json.loads(row["metadata"] or "{}"))
        records.append(item_record(read, item, metadata))
        vectors.append(np.asarray(row["vector"], np.float32))
    return records, np.stack(vectors) if vectors else np.zeros((0, collection.dim), np.float32)


# ----------------------------------------------------------------------------------------------
# Entry point


def index_paths(collection, paths: list[str], embedder=None, *, prune: bool = False, rehash: bool = False,
                metadata: dict | None = None, progress: bool | None = None,
                on_progress: Callable[[int, int], None] | None = None, engine: str = "local",
                ray_address: str | None = None, should_stop: Callable[[], bool] | None = None,
                guard: bool = False) -> IndexReport:
    """Bring `collection` up to date with the files under `paths` (see the module docstring).

    embedder: the collection's model (loaded from `collection.model` when None).
    prune: remove rows of files that no longer exist (renamed files are always followed).
    rehash: read and hash every file, even those whose size and mtime are unchanged.
    progress: show a progress bar on stderr (default: when stderr is a terminal).
    on_progress: called with (files done, files to do) as work advances (the server's jobs use it).
    engine: "local" (threads in this process) or "ray" (Ray Data; `ray_address` or a local instance).
    should_stop: polled between files (local engine): when it returns True the run stops, writes
        the files already handed to the model, and returns a report with `cancelled` set.
    guard: scan each new or changed image for prompt injections (polymodal.guard, local engine);
        the verdict goes into the item's metadata under "guard", flagged files into the report.
    """
    from polymodal.errors import InvalidInputError

    if engine not in ("local", "ray"):
        raise InvalidInputError(f"unknown engine {engine!r}: use 'local' or 'ray'")
    if guard and engine == "ray":
        raise InvalidInputError("--guard scans images with the local engine only; drop --engine ray, or scan "
                                "afterwards with `polymodal guard scan`")
    if embedder is None and engine == "local":
        from polymodal.embed.resolve import load_embedder

        embedder = load_embedder(collection.model)
    if embedder is not None:
        collection.check_model(embedder.name, embedder.dim)
    if progress is None:
        progress = sys.stderr.isatty()
    start = time.perf_counter()
    with collection.writer_lock():
        plan = make_plan(collection, paths, rehash=rehash)
        report = IndexReport(collection=collection.name, model=collection.model, roots=plan.roots, engine=engine,
                             guarded=guard)
        report.files_seen = len(plan.work) + plan.unchanged
        report.unchanged = plan.unchanged
        report.ignored = len(plan.ignored)
        report.skipped += [SkippedFile(p, "unreadable", why) for p, why in plan.unreadable]
        report.skipped += [SkippedFile(p, "unsupported", f"no decoder reads this file type; indexable: {', '.join(known_suffixes())}")
                           for p in plan.unsupported]
        bar = _Progress(len(plan.work), progress, on_progress)
        try:
            if engine == "ray":
                from polymodal.ingest.ray_engine import run_ray

                run_ray(collection, plan, report, metadata=metadata, progress=bar, address=ray_address)
            else:
                run_local(collection, embedder, plan, report, metadata=metadata, progress=bar, should_stop=should_stop,
                          guard=guard)
        finally:
            bar.close()
        finalize(collection, plan, report, prune=prune)
    report.seconds = time.perf_counter() - start
    return report


def finalize(collection, plan: Plan, report: IndexReport, *, prune: bool) -> None:
    """After the new rows are in: drop twins, follow renames, prune, optimise (and index)."""
    for row_id, indexed_at in plan.duplicate_rows:
        collection.delete_where(f"id = '{row_id}' AND indexed_at = {indexed_at!r}")
    if plan.gone:
        # Which contents exist on disk now? Stored rows of files still present, and files read this run.
        present = set()
        gone = set(plan.gone)
        for row in scan_under(collection, plan.roots, ["source", "content_hash"]):
            if row["source"] not in gone:
                present.add(row["content_hash"])
        moved, missing = [], []
        for source in plan.gone:
            rows = plan.stored[source]
            (moved if all(r["content_hash"] in present for r in rows) else missing).append(source)
        drop = [r["id"] for s in moved for r in plan.stored[s]]
        report.moved = len(moved)
        if prune:
            drop += [r["id"] for s in missing for r in plan.stored[s]]
            report.removed = len(missing)
        else:
            report.missing = len(missing)
        collection.delete(drop)
    start = time.perf_counter()
    collection.optimize()
    report.write_seconds += time.perf_counter() - start
    report.count = collection.count()
    report.index = collection.index_info()

