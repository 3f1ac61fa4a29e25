"""Collections in an embedded LanceDB database: rows of items with their vectors.

This is the only module that touches storage. Every write is one Lance commit, which is atomic:
a process killed at any moment leaves the collection as it was after its last commit, never half
a batch. Ingestion relies on that (see polymodal.ingest.pipeline).

Search is exact (a flat scan) until a collection holds `index_min_rows` items; from then on an
approximate index is built and kept up to date by `optimize()` (rows added after the index was
built are still found: LanceDB scans them flat and merges the results).
"""

from __future__ import annotations

import contextlib
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

os.environ.setdefault("LANCE_LOG", "error")  # Lance's Rust warnings would flood the terminal

from polymodal.errors import (
    CollectionBusyError,
    CollectionNotFoundError,
    InvalidInputError,
    ModelMismatchError,
    require,
)
from polymodal.store.filters import Filter
from polymodal.store.schema import META_KEY, RECORD_COLUMNS, CollectionMeta, item_schema, row_to_record

DB_ENV = "POLYMODAL_DB"
INDEX_MIN_ROWS_ENV = "POLYMODAL_INDEX_MIN_ROWS"
#: Below this many rows a flat scan is fast enough (54 ms at 20k rows of dim 512 here, against
#: 7 ms through the index with recall@10 1.0: benchmarks/search_latency.py) and exact.
DEFAULT_INDEX_MIN_ROWS = 20_000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_INTERNAL_SUFFIX = ".lance"


def default_db_path() -> Path:
    """$POLYMODAL_DB, else $XDG_DATA_HOME/polymodal/db, else ~/.local/share/polymodal/db."""
    if os.environ.get(DB_ENV):
        return Path(os.environ[DB_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "polymodal" / "db"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(_INTERNAL_SUFFIX):
        raise InvalidInputError(
            f"invalid collection name {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit")
    return name


class Database:
    """A directory holding collections (one Lance dataset each)."""

    def __init__(self, path: str | os.PathLike | None = None):
        lancedb = require("lancedb", "store", "Collections")
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        if self.path.exists() and not self.path.is_dir():
            raise InvalidInputError(f"database path {self.path} is a file, not a directory: pass --db DIR")
        self.path.mkdir(parents=True, exist_ok=True)
        # Every read checks for newer commits (another process indexing, the server's jobs): cheap
        # (a manifest stat) and it keeps long-lived handles from going stale.
        self._db = lancedb.connect(str(self.path), read_consistency_interval=timedelta(0))

    def names(self) -> list[str]:
        tables = self._db.list_tables()
        names = getattr(tables, "tables", tables)
        return sorted(names)

    def exists(self, name: str) -> bool:
        return name in self.names()

    def open(self, name: str) -> "Collection":
        check_name(name)
        names = self.names()
        if name not in names:
            raise CollectionNotFoundError(name, names, str(self.path))
        return Collection(self, name, self._db.open_table(name))

    def create(self, name: str, *, model: str, dim: int, model_name: str = "", exist_ok: bool = False) -> "Collection":
        """A new empty collection for vectors of `model` (dimension `dim`). With `exist_ok`, an
        existing collection of the same model is returned; one of another model is refused."""
        check_name(name)
        if self.exists(name):
            if not exist_ok:
                raise InvalidInputError(f"collection {name!r} already exists in {self.path}; pick another name or drop it first")
            coll = self.open(name)
            coll.check_model(model, dim)
            return coll
        meta = CollectionMeta(model=model, dim=int(dim), model_name=model_name or model)
        table = self._db.create_table(name, schema=item_schema(meta))
        return Collection(self, name, table)

    def drop(self, name: str) -> None:
        self.open(name)  # raises with the known names if missing
        self._db.drop_table(name)
        with contextlib.suppress(FileNotFoundError):
            (self.path / f".{name}.lock").unlink()

    def list(self) -> list[dict]:
        """Every polymodal collection's summary (other tables in the directory are passed over)."""
        out = []
        for name in self.names():
            try:
                out.append(self.open(name).info(cheap=True))
            except InvalidInputError:
                continue
        return out


class Collection:
    """Rows and vectors of one collection; knows its model by name only (no model code here)."""

    def __init__(self, db: Database, name: str, table):
        self.db, self.name, self._table = db, name, table
        raw = (table.schema.metadata or {}).get(META_KEY)
        if raw is None:
            raise InvalidInputError(f"{name!r} in {db.path} is not a polymodal collection (no polymodal record in its schema)")
        self.meta = CollectionMeta.from_bytes(raw)
        self.index_min_rows = int(os.environ.get(INDEX_MIN_ROWS_ENV, DEFAULT_INDEX_MIN_ROWS))

    # -- identity --------------------------------------------------------------------------------

    @property
    def model(self) -> str:
        return self.meta.model

    @property
    def dim(self) -> int:
        return self.meta.dim

    def check_model(self, model: str, dim: int | None = None) -> None:
        """Refuse vectors from any model other than the one that filled the collection."""
        same = model == self.meta.model or (self.meta.model_name and model == self.meta.model_name)
        if not same or (dim is not None and int(dim) != self.meta.dim):
            raise ModelMismatchError(
                f"collection {self.name!r} holds vectors of model {self.meta.model!r} (dim {self.meta.dim}), "
                f"not {model!r}{f' (dim {dim})' if dim is not None else ''}: vectors of two models do not compare. "
                f"Use --model {self.meta.model} (or leave --model out), or re-embed into a new collection: "
                f"polymodal collections reembed {self.name} NEW_NAME --model {model}")

    # -- reading ---------------------------------------------------------------------------------

    def count(self, where: str | None = None) -> int:
        return int(self._table.count_rows(where) if where else self._table.count_rows())

    def info(self, cheap: bool = False) -> dict:
        out = {
            "name": self.name,
            "model": self.meta.model,
            "model_name": self.meta.model_name,
            "dim": self.meta.dim,
            "count": self.count(),
            "created": self.meta.created,
            "path": self.uri,
            "index": self.index_info(),
        }
        if not cheap:
            out["kinds"] = {kind: self.count(f"kind = '{kind}'") for kind in ("image", "text")}
        return out

    def has_index(self) -> bool:
        """Whether an approximate index answers searches (cheaper than `index_info`)."""
        return any(index.columns == ["vector"] for index in self._table.list_indices())

    def index_info(self) -> dict | None:
        """The approximate index, or None while search is exact."""
        for index in self._table.list_indices():
            if index.columns == ["vector"]:
                stats = self._table.index_stats(index.name)
                return {"name": index.name, "type": str(index.index_type),
                        "indexed_rows": int(getattr(stats, "num_indexed_rows", 0)),
                        "unindexed_rows": int(getattr(stats, "num_unindexed_rows", 0))}
        return None

    @property
    def uri(self) -> str:
        """Where the Lance dataset is (workers of a distributed engine write fragments there)."""
        return str(self.db.path / f"{self.name}{_INTERNAL_SUFFIX}")

    @property
    def version(self) -> int:
        return int(self._table.version)

    def scan(self, columns: list[str], where: str | None = None, batch_size: int = 8192,
             version: int | None = None) -> Iterator[dict]:
        """Every row (only `columns`), streamed in batches: memory stays bounded. `version` reads
        the collection as it was at that commit."""
        dataset = self._table.to_lance()
        if version is not None and version != dataset.version:
            dataset = dataset.checkout_version(version)
        scanner = dataset.scanner(columns=columns, filter=where, batch_size=batch_size)
        for batch in scanner.to_batches():
            yield from batch.to_pylist()

    def get(self, item_id: str, with_vector: bool = False) -> dict | None:
        if not re.fullmatch(r"[0-9a-f]{16}", item_id or ""):
            return None  # ids are 16 hex chars; anything else (a path, "../..") names no item
        columns = RECORD_COLUMNS + (["vector"] if with_vector else [])
        rows = list(self.scan(columns, where=f"id = '{item_id}'"))
        if not rows:
            return None
        record = row_to_record(rows[0])
        if with_vector:
            record["vector"] = np.asarray(rows[0]["vector"], dtype=np.float32)
        return record

    def get_many(self, item_ids: Iterable[str]) -> dict[str, dict]:
        """Records (no vectors) of many ids at once, by id; unknown ids are left out."""
        ids = [i for i in dict.fromkeys(item_ids) if re.fullmatch(r"[0-9a-f]{16}", i or "")]
        out = {}
        for start in range(0, len(ids), 1000):  # keeps each predicate a reasonable size
            where = "id IN (" + ", ".join(f"'{i}'" for i in ids[start:start + 1000]) + ")"
            out.update((row["id"], row_to_record(row)) for row in self.scan(RECORD_COLUMNS, where=where))
        return out

    def vectors(self, where: str | None = None, batch_size: int = 8192) -> Iterator[tuple[list[str], np.ndarray]]:
        """(ids, (B, dim) vectors) batches, for whole-collection passes such as duplicate finding."""
        dataset = self._table.to_lance()
        for batch in dataset.scanner(columns=["id", "vector"], filter=where, batch_size=batch_size).to_batches():
            flat = batch.column("vector").values.to_numpy(zero_copy_only=False)
            yield batch.column("id").to_pylist(), flat.reshape(len(batch), self.meta.dim)

    # -- search ----------------------------------------------------------------------------------

    def search(self, vector: np.ndarray, k: int = 10, *, filter: Filter | None = None,
               threshold: float | None = None, exact: bool = False) -> list[dict]:
        """The k items nearest to a unit `vector` (dim,), best first, each with `score` = cosine."""
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.meta.dim:
            raise ModelMismatchError(
                f"query vector has dimension {vector.shape[0]} but collection {self.name!r} holds dimension "
                f"{self.meta.dim} (model {self.meta.model!r}): embed the query with that model")
        if k < 1:
            raise InvalidInputError(f"k must be at least 1, not {k}")
        where = filter.to_sql() if filter else None
        if where and not exact and self.has_index():
            matches = self._count_where(where, filter)
            if matches <= EXACT_FILTER_SHARE * self.count():
                return self._search_rows(vector, k, where, threshold)
        query = self._table.search(vector, vector_column_name="vector").metric("cosine").limit(int(k))
        if where:
            query = query.where(where, prefilter=True)
        if exact:
            query = query.bypass_vector_index()
        elif self.has_index():
            query = query.nprobes(ANN_QUERY["nprobes"]).refine_factor(ANN_QUERY["refine_factor"])
        query = query.select(RECORD_COLUMNS + ["_distance"])
        try:
            rows = query.to_list()
        except Exception as exc:  # DataFusion's parse errors for a bad raw `where`
            if filter and filter.where:
                raise InvalidInputError(f"bad --where predicate {filter.where!r}: {exc}. Columns: {', '.join(RECORD_COLUMNS)}") from None
            raise
        hits = []
        for row in rows:
            score = 1.0 - float(row.pop("_distance"))
            if threshold is not None and score < threshold:
                continue
            hit = row_to_record(row)
            hit["score"] = score
            hits.append(hit)
        return hits

    def _count_where(self, where: str, filter: Filter) -> int:
        try:
            return self.count(where)
        except Exception as exc:  # DataFusion's parse errors for a bad raw `where`
            if filter.where:
                raise InvalidInputError(f"bad --where predicate {filter.where!r}: {exc}. Columns: {', '.join(RECORD_COLUMNS)}") from None
            raise

    def _search_rows(self, vector: np.ndarray, k: int, where: str, threshold: float | None) -> list[dict]:
        """Exact search among the rows matching `where`: stream their vectors, keep the best k."""
        best_ids: list[str] = []
        best_scores = np.zeros(0, np.float32)
        for ids, vectors in self.vectors(where=where):
            scores = vectors @ vector
            pool_ids = best_ids + ids
            pool = np.concatenate([best_scores, scores])
            top = np.argsort(-pool, kind="stable")[:k]
            best_ids, best_scores = [pool_ids[i] for i in top], pool[top]
        records = self.get_many(best_ids)
        hits = []
        for item_id, score in zip(best_ids, best_scores.tolist()):
            if (threshold is not None and score < threshold) or item_id not in records:
                continue
            hits.append({**records[item_id], "score": score})
        return hits

    # -- writing ---------------------------------------------------------------------------------

    def add(self, table) -> int:
        """Append rows (an Arrow table built by `schema.records_to_table`) in one commit."""
        self._check_table(table)
        if table.num_rows:
            self._table.add(table)
        return table.num_rows

    def upsert(self, table) -> int:
        """Insert rows, replacing stored rows with the same id, in one commit."""
        self._check_table(table)
        if table.num_rows:
            (self._table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(table))
        return table.num_rows

    def delete(self, ids: Iterable[str]) -> int:
        ids = [i for i in ids if re.fullmatch(r"[0-9a-f]{16}", i)]
        deleted = 0
        for start in range(0, len(ids), 1000):  # keeps each predicate a reasonable size
            chunk = ids[start:start + 1000]
            self._table.delete("id IN (" + ", ".join(f"'{i}'" for i in chunk) + ")")
            deleted += len(chunk)
        return deleted

    def commit_fragments(self, fragments: list) -> None:
        """Make fragments written by `write_fragments` (on any machine) part of the collection, in
        one commit."""
        import lance

        if fragments:
            lance.LanceDataset.commit(self.uri, lance.LanceOperation.Append(fragments), read_version=self.version)

    def update_stats(self, stats: list[tuple[str, int, float]]) -> int:
        """Set (size, mtime) of rows by id, in one commit: a touched file keeps its vector."""
        import pyarrow as pa

        if stats:
            ids, sizes, mtimes = zip(*stats)
            part = pa.table({"id": pa.array(ids, pa.string()), "size": pa.array(sizes, pa.int64()),
                             "mtime": pa.array(mtimes, pa.float64())})
            self._table.merge_insert("id").when_matched_update_all().execute(part)
        return len(stats)

    def delete_where(self, where: str) -> None:
        self._table.delete(where)

    def _check_table(self, table) -> None:
        field = table.schema.field("vector")
        dim = field.type.list_size
        if dim != self.meta.dim:
            raise ModelMismatchError(
                f"vectors of dimension {dim} cannot go into collection {self.name!r}, which holds dimension "
                f"{self.meta.dim} (model {self.meta.model!r})")

    # -- maintenance -----------------------------------------------------------------------------

    def optimize(self) -> None:
        """Merge small fragments, fold new rows into the index, build the index once the
        collection is large enough (and drop it if it shrank far below)."""
        count = self.count()
        if not self.has_index() and count >= self.index_min_rows:
            self.build_index()
        self._table.optimize()

    def build_index(self) -> None:
        count = self.count()
        if count < 256:
            raise InvalidInputError(f"collection {self.name!r} has {count} rows; an approximate index needs at least 256 (search is exact below that anyway)")
        self._table.create_index(vector_column_name="vector", replace=True, **ann_index_params(count, self.meta.dim))

    @contextlib.contextmanager
    def writer_lock(self):
        """One writer at a time per collection (an indexing run, a server job); readers are free."""
        import fcntl

        path = self.db.path / f".{self.name}.lock"
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                raise CollectionBusyError(
                    f"collection {self.name!r} is being written by {holder}; wait for it to finish (or stop it) and run again") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()}")
            fh.flush()
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def write_fragments(uri: str, table) -> list:
    """Write rows (from `schema.records_to_table`) as new Lance data files of the dataset at `uri`
    without committing them: the fragments' metadata goes back to the one process that commits
    (`Collection.commit_fragments`). Data files never committed are unreferenced and harmless."""
    import lance.fragment

    return lance.fragment.write_fragments(table, uri, schema=table.schema)


#: Query-time settings of the approximate index, measured in benchmarks/search_latency.py: at 1M
#: clustered vectors of dim 512, recall@10 0.997 at p50 11 ms (nprobes 20: 0.976 at 10 ms).
ANN_QUERY = {"nprobes": 40, "refine_factor": 5}
#: A filter matching at most this share of the rows is answered exactly (scan the matching rows,
#: rank them in numpy): the index's recall falls with selective filters (0.84 at 1% of 1M rows).
EXACT_FILTER_SHARE = 0.05


def ann_index_params(rows: int, dim: int) -> dict:
    """create_index arguments (see benchmarks/search_latency.py for the measurements).

    IVF_SQ: the same recall and latency as IVF_PQ with refinement here, and ten times cheaper to
    build (no codebook training: 131 s against 285 s at 1M on 2 cores). Partitions are sized by
    `target_partition_size`, never counted with `num_partitions`: LanceDB's optimize() re-partitions
    an index built with a count (1000 -> 31 partitions at 1M) and recall collapses."""
    return {"metric": "cosine", "index_type": "IVF_SQ", "target_partition_size": 1000}
