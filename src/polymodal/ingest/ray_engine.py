"""The Ray engine: the ingestion pipeline on Ray Data, for collections too large for one machine.

`index_paths(..., engine="ray")` plans on the driver exactly as the local engine does
(polymodal.ingest.plan), holds the collection's writer lock, and calls `run_ray` for the work:

    driver                                   Ray Data actors (each loads the model once)
    ------                                   --------------------------------------------
    plan.work -> blocks of files ---------->  read + hash + decide (read_source), decode,
      (path, size, mtime, stored hashes)      embed images and texts (the Embedder's streams),
                                              write the batch's rows as Lance data files
    per-file outcomes + fragment list <-----  straight into the collection's dataset
    commit: Append(fragments), then delete the old rows of changed files,
            touch stats, copies (reused vectors), progress, report

Where the work is split. Every file is read exactly once, by a worker; nothing is read on the
driver. `read_source` needs two things from the plan: the stored rows of the file itself (for
"touched": same hash, new mtime) and `plan.by_hash` (for "copied": content stored under another
path). The first travels with the file in its block (a list of stored hashes, tiny). The second can
be the whole collection, so it goes once into Ray's object store as a sorted array of hex hashes,
shared zero-copy by the workers of a node; a worker only learns "this content is stored elsewhere"
and the driver, which holds `plan.by_hash`, resolves where and copies the stored rows and vectors
(from the dataset version the run started at, so a file rewritten during the run never lends its
new vectors). Touched files are a stats update on the driver. Everything needing a model runs on
the workers.

Where rows are written. Workers write their rows as Lance data files directly into the
collection's dataset (`store.collection.write_fragments`, on the same Lance primitive Ray Data's
`Dataset.write_lance` uses); only the fragments' metadata (a few hundred bytes) travels back. The
driver, the only committer, commits them with `LanceOperation.Append`. We do not call
`write_lance` itself because it is a terminal sink with one commit at the very end: it cannot
hand back per-file outcomes (skipped files and reasons, touches, copies, which changed files to
clean up), gives no progress, and a run killed after hours would keep nothing. Here the driver
commits every few seconds / few thousand rows (as the local engine does), so a killed run keeps
whole files and the next run resumes; fragments written but never committed are only unreferenced
files.

Changed files. Their new rows are appended beside the old ones (same ids); right after the commit
the driver deletes the old versions by their exact (id, indexed_at) from the plan. A crash between
the two leaves twins, which the next run's plan finds (`plan.duplicate_rows`) and `finalize`
removes, keeping the newest.

The collection's schema (with the b"polymodal" record) is the dataset's own: workers build rows
with `records_to_table(..., collection.meta)`, an Append never changes the schema, and every
worker checks that the model it loaded is the one the collection was filled with.

Needs on a cluster: the same polymodal and model on every node, the files and the database on
storage every node sees at the same path (see docs/ray.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import platform
import time
import warnings
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from polymodal.errors import ModelMismatchError, PolymodalError, require
from polymodal.ingest.pipeline import (
    COMMIT_ROWS,
    COMMIT_SECONDS,
    IndexReport,
    Read,
    SkippedFile,
    _copied_rows,
    _first_reason,
    item_record,
    read_source,
)
from polymodal.ingest.plan import Plan, SourceFile
from polymodal.store.collection import write_fragments
from polymodal.store.schema import CollectionMeta, records_to_table

BATCH_FILES_ENV = "POLYMODAL_RAY_BATCH_FILES"
WORKERS_ENV = "POLYMODAL_RAY_WORKERS"
CPUS_ENV = "POLYMODAL_RAY_CPUS_PER_WORKER"
#: Files per Ray task: one Lance fragment each, and the unit of progress and of retry.
DEFAULT_BATCH_FILES = 64
#: Files read and hashed ahead of a worker's embedder (several workers share a node's memory).
READ_AHEAD = 16
#: Environment forwarded to the workers (a cluster's nodes do not share the driver's environment).
_FORWARD_PREFIXES = ("POLYMODAL_",)
_FORWARD_NAMES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_ELSEWHERE = "\x00stored-under-another-path"  # never a path: read_source then reports "copy"


# ----------------------------------------------------------------------------------------------
# Driver


def run_ray(collection, plan: Plan, report: IndexReport, *, metadata: dict | None, progress,
            address: str | None) -> None:
    """Embed and write `plan.work` on Ray Data (see the module docstring); updates `report`."""
    if not plan.work:
        return
    ray = require("ray", "ray", "The Ray ingestion engine")
    require("ray.data", "ray", "The Ray ingestion engine")
    require("lance", "ray", "The Ray ingestion engine")
    _ensure_ray(ray, address)

    uri = collection.uri
    batch_files = max(1, int(os.environ.get(BATCH_FILES_ENV, DEFAULT_BATCH_FILES)))
    cpus = float(os.environ.get(CPUS_ENV, 1))
    batches = [plan.work[i:i + batch_files] for i in range(0, len(plan.work), batch_files)]
    workers = int(os.environ.get(WORKERS_ENV, 0)) or max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus, 1e-3)))
    workers = max(1, min(workers, len(batches)))

    known = ray.put(np.array(sorted(plan.by_hash), dtype="S32"))  # content hashes, 32 hex chars
    blocks = [_work_table(part, plan) for part in batches]
    import ray.data

    env = {k: v for k, v in os.environ.items() if k.startswith(_FORWARD_PREFIXES) or k in _FORWARD_NAMES}
    with _quiet_ray_data():
        ds = ray.data.from_arrow(blocks)
        ds.context.enable_progress_bars = False  # polymodal's own bar counts files
        ds.context.enable_operator_progress_bars = False
        ds.context.print_on_execution_start = False
        ds.context.enable_auto_log_stats = False
        ds = ds.map_batches(
            EmbedFiles,
            fn_constructor_kwargs={"meta": collection.meta, "uri": uri, "known": [known], "metadata": metadata},
            batch_size=batch_files, batch_format="pyarrow", zero_copy_batch=True,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers), num_cpus=cpus,
            runtime_env={"env_vars": env} if env else None,
        )
        committer = _Committer(collection, plan, report, metadata)
        try:
            for out in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                for fragments, files, error in zip(out.column("fragments").to_pylist(), out.column("files").to_pylist(),
                                                   out.column("error").to_pylist()):
                    if error:
                        raise _worker_error(*json.loads(error))
                    done = committer.take(pickle.loads(fragments), json.loads(files))
                    progress.step(done)
                committer.maybe_commit()
        finally:
            committer.commit()  # whatever finished is kept, even when a worker failed


def _ensure_ray(ray, address: str | None) -> None:
    """Connect to `address` (or $RAY_ADDRESS), else start a quiet local instance for this process
    (it stops when the process exits; later runs in the same process reuse it)."""
    if ray.is_initialized():
        return
    kwargs = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False
    with warnings.catch_warnings():  # "lance is not fork-safe": Ray forks only to exec its own processes
        warnings.simplefilter("ignore")
        ray.init(address=address, **kwargs)


@contextlib.contextmanager
def _quiet_ray_data():
    """Ray Data logs each execution at INFO (and a warning that its bars are off): not for a CLI."""
    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


def _worker_error(name: str, message: str) -> Exception:
    """A worker's PolymodalError, raised again on the driver with its class and message (the
    classes' own constructors take other arguments, so they do not pickle through Ray)."""
    import polymodal.errors as errors

    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, PolymodalError)):
        cls = PolymodalError
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error


def _work_table(files: list[SourceFile], plan: Plan):
    import pyarrow as pa

    return pa.table({
        "path": pa.array([f.path for f in files], pa.string()),
        "size": pa.array([f.size for f in files], pa.int64()),
        "mtime": pa.array([f.mtime for f in files], pa.float64()),
        "stored": pa.array([[r["content_hash"] for r in plan.stored.get(f.path, [])] for f in files],
                           pa.list_(pa.string())),
    })


class _Committer:
    """Turns the workers' outcomes into commits, the report and progress; the only writer."""

    def __init__(self, collection, plan: Plan, report: IndexReport, metadata: dict | None):
        self.collection, self.plan, self.report, self.metadata = collection, plan, report, metadata
        self.files = {f.path: f for f in plan.work}
        self.fragments: list = []
        self.rows = 0
        self.copies: list[tuple[list[dict], np.ndarray]] = []
        self.stale: list[tuple[str, float]] = []  # (id, indexed_at) of replaced rows
        self.touch: list[tuple[str, int, float]] = []
        self.last = time.monotonic()

    def take(self, fragments: list, files: list[dict]) -> int:
        """One task's result: its fragments and its files' outcomes; the number of files."""
        report = self.report
        self.fragments += fragments
        for out in files:
            path, action = out["path"], out["action"]
            old = self.plan.stored.get(path, [])
            if action == "skip":
                report.skipped.append(SkippedFile(path, out["reason"], out["message"]))
                continue
            if action == "touch":
                f = self.files[path]
                self.touch += [(r["id"], f.size, f.mtime) for r in old]
                report.touched += 1
                continue
            if action == "copy":
                source = self.plan.by_hash.get(out["hash"])
                if source is None or source == path:  # cannot happen: the workers' hash set is by_hash's keys
                    raise RuntimeError(f"internal error: no stored source for the content of {path}")
                read = Read(self.files[path], hash=out["hash"], action="copy", copy_from=source)
                records, vectors = _copied_rows(self.collection, read, self.metadata, self.plan.version)
                self.copies.append((records, vectors))
                self.rows += len(records)
                report.copied += 1
            else:  # embedded
                if out.get("reason"):  # some items of the file failed; the others are stored
                    report.skipped.append(SkippedFile(path, out["reason"], out["message"]))
                self.rows += out["rows"]
                report.items_embedded += out["rows"]
                if old:
                    report.changed += 1
                else:
                    report.new += 1
            self.stale += [(r["id"], r["indexed_at"]) for r in old]
        return len(files)

    def maybe_commit(self) -> None:
        pending = self.rows + len(self.touch)
        if pending >= COMMIT_ROWS or (pending and time.monotonic() - self.last >= COMMIT_SECONDS):
            self.commit()

    def commit(self) -> None:
        start = time.perf_counter()
        if self.copies:
            records = [r for recs, _ in self.copies for r in recs]
            if records:
                table = records_to_table(records, np.concatenate([v for _, v in self.copies]), self.collection.meta)
                self.fragments += write_fragments(self.collection.uri, table)
        self.collection.commit_fragments(self.fragments)
        for where in _stale_predicates(self.stale):
            self.collection.delete_where(where)
        if self.touch:
            self.collection.update_stats(self.touch)
        self.report.write_seconds += time.perf_counter() - start
        self.fragments, self.copies, self.stale, self.touch, self.rows = [], [], [], [], 0
        self.last = time.monotonic()


def _stale_predicates(pairs: list[tuple[str, float]], chunk: int = 2048):
    """SQL deleting exactly the rows (id, indexed_at): the replaced versions, never the new rows
    (which share the ids). Rows written in one commit share indexed_at, so the groups are few."""
    groups: dict[float, list[str]] = defaultdict(list)
    for row_id, indexed_at in pairs:
        groups[indexed_at].append(row_id)
    parts, size = [], 0
    for indexed_at, ids in groups.items():
        for i in range(0, len(ids), chunk):
            part = ids[i:i + chunk]
            quoted = ", ".join("'" + x.replace("'", "''") + "'" for x in part)
            parts.append(f"(indexed_at = {indexed_at!r} AND id IN ({quoted}))")
            size += len(part)
            if size >= chunk:
                yield " OR ".join(parts)
                parts, size = [], 0
    if parts:
        yield " OR ".join(parts)


# ----------------------------------------------------------------------------------------------
# Workers


class _KnownHashes:
    """`plan.by_hash` as a worker sees it, for one file: `get(h)` says whether content `h` is
    stored under another path (the driver knows which); a sorted array of hashes shared zero-copy."""

    def __init__(self, known: np.ndarray, own: set[str]):
        self.known, self.own = known, own

    def get(self, content_hash: str, default=None):
        if content_hash in self.own:  # stored under this very path: not a copy
            return default
        key = content_hash.encode("ascii")
        i = int(np.searchsorted(self.known, key))
        return _ELSEWHERE if i < len(self.known) and self.known[i] == key else default


class _FileView:
    """What `read_source` asks of a Plan, for one file."""

    def __init__(self, path: str, stored: list[str], known: np.ndarray):
        self.stored = {path: [{"content_hash": h} for h in stored]} if stored else {}
        self.by_hash = _KnownHashes(known, set(stored))


class EmbedFiles:
    """Ray Data actor: reads, embeds and writes blocks of files (see the module docstring)."""

    def __init__(self, meta: CollectionMeta, uri: str, known: list, metadata: dict | None):
        import ray

        from polymodal.embed.resolve import load_embedder

        self.meta, self.uri, self.metadata = meta, uri, metadata
        self.error: list[str] | None = None  # [class name, message] of a PolymodalError, for the driver
        self.known = ray.get(known[0])
        try:
            self.embedder = load_embedder(meta.model)
            if self.embedder.dim != meta.dim or self.embedder.name not in (meta.model, meta.model_name):
                raise ModelMismatchError(
                    f"a Ray worker on {platform.node()} loaded {meta.model!r} as {self.embedder.name!r} (dim "
                    f"{self.embedder.dim}), but the collection holds vectors of {meta.model_name or meta.model!r} "
                    f"(dim {meta.dim}): install the same model at the same path on every node")
        except PolymodalError as exc:  # reported by the first task instead of a dying actor Ray would restart
            self.error = [type(exc).__name__, f"{exc} (on Ray worker {platform.node()})"]

    def __call__(self, batch):
        import pyarrow as pa

        outcomes, fragments = [], []
        if self.error is None:
            files = [SourceFile(p, s, m) for p, s, m in zip(batch.column("path").to_pylist(),
                                                             batch.column("size").to_pylist(),
                                                             batch.column("mtime").to_pylist())]
            stored = dict(zip(batch.column("path").to_pylist(), batch.column("stored").to_pylist()))
            try:
                outcomes, records, vectors = self._run(files, stored)
            except PolymodalError as exc:
                self.error = [type(exc).__name__, f"{exc} (on Ray worker {platform.node()})"]
            else:
                if records:
                    table = records_to_table(records, np.stack(vectors), self.meta)
                    fragments = write_fragments(self.uri, table)
        return pa.table({"fragments": pa.array([pickle.dumps(fragments)], pa.binary()),
                         "files": pa.array([json.dumps(outcomes)], pa.string()),
                         "error": pa.array([json.dumps(self.error) if self.error else None], pa.string())})

    def _run(self, files: list[SourceFile], stored: dict[str, list[str]]):
        """The local engine's routing for one block: (outcomes, records, vectors)."""
        embedder = self.embedder
        outcomes: list[dict] = []
        records: list[dict] = []
        vectors: list[np.ndarray] = []
        states: list[tuple[Read, dict, list]] = []  # (read, item index -> vector, failure reasons)
        slots: deque = deque()  # (state, item index) per image streamed, in order
        texts: list[tuple[tuple, int]] = []

        def read(f: SourceFile) -> Read:
            return read_source(f, _FileView(f.path, stored.get(f.path) or [], self.known))

        def flush_texts() -> None:
            if not texts:
                return
            with warnings.catch_warnings():  # truncation is expected for long files
                warnings.simplefilter("ignore")
                result = embedder.embed_texts([state[0].items[i].payload for state, i in texts])
            got = dict(zip(result.kept, result.vectors))
            why = {f.index: f"{f.reason}: {f.message}" for f in result.failures}
            for j, (state, i) in enumerate(texts):
                if j in got:
                    state[1][i] = got[j]
                else:
                    state[2].append(why.get(j, "corrupt: embedding failed"))
            texts.clear()

        def image_stream():
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="polymodal-read") as pool:
                ahead: deque = deque(pool.submit(read, f) for f in files[:READ_AHEAD])
                rest = iter(files[READ_AHEAD:])
                while ahead:
                    r = ahead.popleft().result()
                    nxt = next(rest, None)
                    if nxt is not None:
                        ahead.append(pool.submit(read, nxt))
                    if r.action != "embed":
                        out = {"path": r.file.path, "action": r.action, "hash": r.hash}
                        if r.skipped is not None:
                            out.update(reason=r.skipped.reason, message=r.skipped.message)
                        outcomes.append(out)
                        continue
                    state = (r, {}, [])
                    states.append(state)
                    for index, item in enumerate(r.items):
                        if item.kind == "image":
                            slots.append((state, index))
                            payload, item.payload = item.payload, None  # the embedder holds it now
                            yield payload
                        elif item.kind == "text":
                            texts.append((state, index))
                            if len(texts) >= embedder.text_batch_size:
                                flush_texts()
                        else:
                            state[2].append(f"unsupported: no tower embeds items of kind {item.kind!r}")

        for part in embedder.iter_image_batches(image_stream()):
            outcome = {index: (part.vectors[row], None) for row, index in enumerate(part.kept)}
            for failure in part.failures:
                outcome[failure.index] = (None, f"{failure.reason}: {failure.message}")
            for index in sorted(outcome):
                (state, item_index), (vector, why) = slots.popleft(), outcome[index]
                if vector is not None:
                    state[1][item_index] = vector
                else:
                    state[2].append(why)
        flush_texts()

        for r, got, failed in states:
            out = {"path": r.file.path, "action": "embed", "hash": r.hash, "rows": len(got)}
            if failed:
                out["reason"], out["message"] = _first_reason(failed)
            elif not got:
                out["reason"], out["message"] = "empty", "the file holds nothing to embed"
            if not got:
                out["action"] = "skip"
            else:
                for i in sorted(got):
                    records.append(item_record(r, r.items[i], self.metadata))
                    vectors.append(got[i])
            outcomes.append(out)
        return outcomes, records, vectors
