"""Vector search latency and recall@10 of a collection's approximate index, against exact search.

    python benchmarks/search_latency.py                       # 100k and 1M clustered vectors, dim 512
    python benchmarks/search_latency.py --sizes 100000 --queries 100      # a quicker run
    python benchmarks/search_latency.py --data uniform        # the hard case: no structure to exploit
    python benchmarks/search_latency.py --json                # the same figures as one JSON document

Target from the issue: recall@10 >= 0.95 with a p50 under 20 ms at 1M vectors of dim 512.

For each size N, in one run and on the same vectors:

* the collection is created through polymodal's store (`polymodal.store.open_db(...).create(...)`,
  `Collection.add`, `Collection.build_index`, `Collection.optimize`, `Collection.search`), so the
  index and query settings measured are the store's own (`ann_index_params`, `ANN_QUERY` in
  polymodal/store/collection.py). `--backend lancedb` runs raw
  LanceDB with RECOMMENDED_INDEX / RECOMMENDED_QUERY below instead;
* the index is built, then `optimize()` runs once, as the store does after an ingest (Lance may
  re-partition the index there: the partition counts before and after are reported), and the
  approximate search is measured after that, in the state users query;
* baselines, exact: `numpy` = one query at a time, `X @ q` + argpartition over the (N, dim) float32
  matrix held in memory; `flat` = the same collection searched with the index bypassed (LanceDB's
  flat scan, `Collection.search(..., exact=True)`). Ground truth = numpy's exact top-10, computed
  for all queries at once in chunks of 100k rows;
* `ann` = the collection's search through its approximate index, one query at a time, after
  --warmup untimed queries (the index and the raw vectors that refine_factor re-reads are then in
  memory, as in a long-lived server); `lancedb` = the same index and query settings called on the
  LanceDB table directly, asking only for the id (so ann - lancedb = the store's own overhead);
* recall@10 = |ANN top-10 ∩ exact top-10| / 10, averaged over the queries; latencies are p50/p95
  of single-query wall times in ms; build = wall time of `build_index()` (optimize() reported apart).

Synthetic data (--data clustered, the default), embedding-like: unit vectors drawn from a mixture of
2048 Gaussian clusters with a decaying spectrum, as real embeddings are clustered and anisotropic
rather than uniform on the sphere:

    Q         random orthogonal (dim, dim) basis
    lambda_i  = 1 / i, i = 1..dim (power-law variance spectrum, participation ratio ~ 28 at dim 512)
    centres   mu_k = Q diag(sqrt(lambda)) g_k,       g_k ~ N(0, I), k = 1..2048
    weights   p_k ~ lognormal (exp N(0, 1)), normalised: cluster sizes vary ~10x
    rows      x = normalise(mu_k + 0.6 Q diag(sqrt(lambda)) h),   k ~ p, h ~ N(0, I)

At 1M rows the median cosine of a query to its 1st / 10th / 100th neighbour is about 0.85 / 0.82 /
0.79, and to a random row about 0.0. --data uniform draws x = normalise(N(0, I)) instead (neighbour
cosines ~0.21 / 0.19 / 0.16: every row is nearly as far as every other, which defeats any
partitioning index; reported for honesty, not a target). Rows come in chunks of 65536, each from
its own generator seeded (seed, 1, chunk), so the first 100k rows of the 1M table are the 100k
table; queries come from the same distribution with their own generator (seed, 2) and are not rows
of any table. The vectors are cached in --workdir (2 GiB per million rows of dim 512).

The machine is shared and has 2 cores: CPU time used by other processes during each timed phase is
read from /proc/stat and reported (`others`, in busy cores); figures taken while others kept a core
busy are noisy (ratios hold better than absolute times).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("LANCE_LOG", "error")  # Lance's Rust deprecation warnings, once per query otherwise

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import _cpu_seconds, _other_cores, cpu_busy_seconds, machine  # noqa: E402  (shared machine description)

K = 10  # recall@K
CHUNK = 65536  # rows per generator chunk (fixes which random numbers make which row)
GT_CHUNK = 100_000  # rows per matmul when computing exact top-K for all queries at once
WRITE_BATCH = 50_000  # rows per Collection.add commit

# What the store should use (measured with this script and its data at 100k and 1M x 512 on a 2-core
# machine; `--backend lancedb` runs exactly these, and is the fallback when the store cannot build an
# index). The old-style call is the same thing:
#   table.create_index(vector_column_name="vector", metric="cosine", index_type="IVF_SQ", target_partition_size=1000)
# Give `target_partition_size`, never `num_partitions`: with lancedb 0.40 / pylance 14, `table.optimize()`
# re-partitions an index built with num_partitions to Lance's own default size (~25-32k rows per
# partition: 316 -> 4 partitions at 100k, 1000 -> 31 at 1M, even with no rows added), so nprobes then
# scans most of the collection (IVF_PQ, nprobes 20: recall@10 0.79 and p50 37 ms at 1M); an index built
# with target_partition_size keeps its size through optimize (1000 -> ~975 partitions at 1M). IVF_SQ
# rather than IVF_PQ: the same recall and latency here, but PQ's codebook training costs ~100 s more on
# 2 cores whatever the size (100k: 13 s against 149 s).
RECOMMENDED_INDEX = {"target_partition_size": 1000}  # lancedb.index.IvfSq(distance_type="cosine", **this)
RECOMMENDED_QUERY = {"nprobes": 40, "refine_factor": 5}


# ----------------------------------------------------------------------------------------------
# Data


class Synthetic:
    """Unit vectors of one kind, reproducible chunk by chunk (see the module docstring)."""

    def __init__(self, kind: str, dim: int, seed: int, clusters: int = 2048, spread: float = 0.6):
        self.kind, self.dim, self.seed, self.spread = kind, dim, seed, spread
        if kind == "clustered":
            rng = np.random.default_rng([seed, 0])
            q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
            # Rows of `basis` are Q's columns scaled by sqrt(lambda_i): z @ basis ~ N(0, Q diag(lambda) Q^T).
            self.basis = (np.sqrt(1.0 / np.arange(1, dim + 1))[:, None] * q.T).astype(np.float32)
            self.centres = rng.standard_normal((clusters, dim)).astype(np.float32) @ self.basis  # (clusters, dim)
            weights = np.exp(rng.standard_normal(clusters))
            self.weights = weights / weights.sum()

    def _draw(self, rng: np.random.Generator, rows: int) -> np.ndarray:
        if self.kind == "uniform":
            x = rng.standard_normal((rows, self.dim), dtype=np.float32)
        else:
            labels = rng.choice(len(self.centres), size=rows, p=self.weights)
            x = self.centres[labels] + self.spread * (rng.standard_normal((rows, self.dim), dtype=np.float32) @ self.basis)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x  # (rows, dim) float32, unit rows

    def chunk(self, index: int) -> np.ndarray:
        return self._draw(np.random.default_rng([self.seed, 1, index]), CHUNK)

    def queries(self, count: int) -> np.ndarray:
        return self._draw(np.random.default_rng([self.seed, 2]), count)


def vectors_file(data: Synthetic, rows: int, workdir: Path) -> np.ndarray:
    """(rows, dim) float32 memmap of the first `rows` vectors, generated once per workdir."""
    path = workdir / f"vectors-{data.kind}-d{data.dim}-s{data.seed}-{rows}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    tmp = path.with_suffix(".partial.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(rows, data.dim))
    for index, start in enumerate(range(0, rows, CHUNK)):
        stop = min(rows, start + CHUNK)
        out[start:stop] = data.chunk(index)[: stop - start]
    out.flush()
    del out
    tmp.rename(path)
    return np.load(path, mmap_mode="r")


def exact_topk(x: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """(Q, k) row numbers of the k largest cosines (= dot products of unit vectors), best first,
    scanning x in chunks so that only a (Q, GT_CHUNK) score matrix is ever held."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(x), GT_CHUNK):
        scores = queries @ np.asarray(x[start:start + GT_CHUNK]).T  # (Q, chunk)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(scores, top, 1)], 1)
        best_i = np.concatenate([best_i, top + start], 1)
        keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    order = np.argsort(-best_s, axis=1)
    return np.take_along_axis(best_i, order, 1)


# ----------------------------------------------------------------------------------------------
# The collection under test: polymodal's store, or raw LanceDB with the recommended settings.
# Row i of the vectors gets id f"{i:016x}" (the store's 16-hex-char id format), so hits map back
# to row numbers without a lookup table.


class StoreTarget:
    name = "polymodal.store"

    def __init__(self, workdir: Path, table: str, dim: int):
        from polymodal.store import open_db
        from polymodal.store.collection import ANN_QUERY, ann_index_params

        self.db = open_db(workdir / "db")
        if self.db.exists(table):
            self.db.drop(table)
        self.coll = self.db.create(table, model="synthetic", dim=dim)
        self.table, self.dim = table, dim
        self._index_params, self.query_params = ann_index_params, dict(ANN_QUERY)
        self.index_params: dict = {}

    def add(self, start: int, vectors: np.ndarray) -> None:
        from polymodal.store.schema import records_to_table

        records = [{"id": f"{i:016x}", "uri": f"synthetic/{i}", "kind": "image"} for i in range(start, start + len(vectors))]
        self.coll.add(records_to_table(records, vectors, self.coll.meta))

    def build_index(self) -> None:
        self.index_params = self._index_params(self.coll.count(), self.dim)
        self.coll.build_index()

    def optimize(self) -> None:
        self.coll.optimize()  # what the store runs after writes (it also builds the index there)

    def search(self, q: np.ndarray, exact: bool = False) -> list[int]:
        return [int(hit["id"], 16) for hit in self.coll.search(q, k=K, exact=exact)]

    def lancedb_table(self):
        import lancedb

        return lancedb.connect(str(self.db.path)).open_table(self.table)


class LanceTarget:
    name = "lancedb (RECOMMENDED_INDEX / RECOMMENDED_QUERY)"

    def __init__(self, workdir: Path, table: str, dim: int):
        import lancedb
        import pyarrow as pa

        self.db = lancedb.connect(str(workdir / "lancedb"))
        self.schema = pa.schema([pa.field("id", pa.string()), pa.field("vector", pa.list_(pa.float32(), dim))])
        self.tbl = self.db.create_table(table, schema=self.schema, mode="overwrite")
        self.dim, self.query_params, self.index_params = dim, dict(RECOMMENDED_QUERY), {}

    def add(self, start: int, vectors: np.ndarray) -> None:
        import pyarrow as pa

        ids = pa.array([f"{i:016x}" for i in range(start, start + len(vectors))])
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
        self.tbl.add(pa.Table.from_arrays([ids, pa.FixedSizeListArray.from_arrays(flat, self.dim)], schema=self.schema))

    def build_index(self) -> None:
        from lancedb.index import IvfSq

        self.index_params = {"index_type": "IVF_SQ", "distance_type": "cosine", **RECOMMENDED_INDEX}
        self.tbl.create_index("vector", config=IvfSq(distance_type="cosine", **RECOMMENDED_INDEX), replace=True)

    def optimize(self) -> None:
        self.tbl.optimize()

    def search(self, q: np.ndarray, exact: bool = False) -> list[int]:
        return raw_search(self.tbl, q, None if exact else self.query_params)

    def lancedb_table(self):
        return self.tbl


def partitions(tbl) -> list[int]:
    """IVF partitions of each segment of the table's vector index."""
    for index in tbl.list_indices():
        if index.columns == ["vector"]:
            stats = tbl.to_lance().stats.index_stats(index.name)
            return [int(seg.get("num_partitions", 0)) for seg in stats.get("indices", [])]
    return []


def raw_search(tbl, q: np.ndarray, params: dict | None) -> list[int]:
    """Top-K row numbers straight from LanceDB: index with `params`, or a flat scan when None."""
    query = tbl.search(q, vector_column_name="vector").distance_type("cosine").limit(K).select(["id", "_distance"])
    if params is None:
        query = query.bypass_vector_index()
    else:
        query = query.nprobes(params["nprobes"]).refine_factor(params["refine_factor"])
    return [int(i, 16) for i in query.to_arrow()["id"].to_pylist()]


# ----------------------------------------------------------------------------------------------
# Timing


def timed_queries(fn, queries: np.ndarray, warmup: np.ndarray) -> dict:
    """Run fn(q) for each query one at a time (after the untimed warm-up queries): latencies in ms
    (p50, p95), the results, and the busy cores other processes used meanwhile."""
    for q in warmup:
        fn(q)
    busy0, own0, start = cpu_busy_seconds(), _cpu_seconds(), time.perf_counter()
    times, results = [], []
    for q in queries:
        t0 = time.perf_counter()
        results.append(fn(q))
        times.append((time.perf_counter() - t0) * 1000)
    wall = time.perf_counter() - start
    return {"p50_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95)), "results": results,
            "others": round(_other_cores(busy0, own0, wall), 2)}


def recall(results: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(r[:K]) & set(t[:K].tolist())) / K for r, t in zip(results, truth)]))


def numpy_exact(x: np.ndarray):
    def search(q: np.ndarray) -> list[int]:
        scores = x @ q  # (N,) cosines
        top = np.argpartition(-scores, K - 1)[:K]
        return top[np.argsort(-scores[top])].tolist()
    return search


def run_size(args, data: Synthetic, vectors: np.ndarray, n: int, queries: np.ndarray, warmup: np.ndarray, log) -> dict:
    x = np.ascontiguousarray(vectors[:n])  # (n, dim) float32 in memory: the numpy baseline's matrix
    truth = exact_topk(x, queries)  # (Q, K) ground truth for every query
    n_exact = min(args.exact_queries, len(queries))

    target_cls = LanceTarget if args.backend == "lancedb" else StoreTarget
    target = target_cls(args.workdir, f"bench-{data.kind}-{n}", data.dim)
    log(f"[{n}] writing {n} rows through {target.name}")
    t0 = time.perf_counter()
    for start in range(0, n, WRITE_BATCH):
        target.add(start, x[start:start + WRITE_BATCH])
    write_s = time.perf_counter() - t0

    log(f"[{n}] exact baselines on {n_exact} queries (numpy in memory, LanceDB flat scan)")
    numpy_row = timed_queries(numpy_exact(x), queries[:n_exact], warmup[:2])
    flat = timed_queries(lambda q: target.search(q, exact=True), queries[:n_exact], warmup[:2])

    log(f"[{n}] building the index, then optimize()")
    tbl = target.lancedb_table()
    t0 = time.perf_counter()
    target.build_index()
    build_s = time.perf_counter() - t0
    tbl.checkout_latest()
    built_partitions = partitions(tbl)
    t0 = time.perf_counter()
    target.optimize()  # as the store does after every ingest; it may re-partition the index
    optimize_s = time.perf_counter() - t0
    tbl.checkout_latest()

    log(f"[{n}] approximate search on {len(queries)} queries")
    ann = timed_queries(target.search, queries, warmup)
    raw = timed_queries(lambda q: raw_search(tbl, q, target.query_params), queries, warmup)
    del x
    return {
        "rows": n, "data": data.kind, "dim": data.dim, "backend": target.name,
        "index_params": target.index_params, "query_params": target.query_params,
        "write_s": round(write_s, 1), "build_s": round(build_s, 1), "optimize_s": round(optimize_s, 1),
        "partitions_built": built_partitions, "partitions_after_optimize": partitions(tbl),
        "queries": len(queries), "exact_queries": n_exact,
        "numpy": _summary(numpy_row, truth[:n_exact]), "flat": _summary(flat, truth[:n_exact]),
        "ann": _summary(ann, truth), "lancedb": _summary(raw, truth),
    }


def _summary(timing: dict, truth: np.ndarray) -> dict:
    return {"p50_ms": round(timing["p50_ms"], 2), "p95_ms": round(timing["p95_ms"], 2),
            "recall_at_10": round(recall(timing["results"], truth), 4), "others": timing["others"]}


# ----------------------------------------------------------------------------------------------
# Report


def render(report: dict) -> str:
    head = (f"{'rows':>9} {'data':>9} {'build s':>8} {'numpy p50':>10} {'flat p50':>9} {'ANN p50':>8} {'ANN p95':>8} "
            f"{'recall@10':>9} {'lancedb p50':>11} {'x flat':>7} {'x numpy':>8} {'others':>7}")
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        ann = r["ann"]
        lines.append(
            f"{r['rows']:>9} {r['data']:>9} {r['build_s']:>8.1f} {r['numpy']['p50_ms']:>8.1f}ms {r['flat']['p50_ms']:>7.1f}ms "
            f"{ann['p50_ms']:>6.2f}ms {ann['p95_ms']:>6.2f}ms {ann['recall_at_10']:>9.3f} {r['lancedb']['p50_ms']:>9.2f}ms "
            f"{r['flat']['p50_ms'] / ann['p50_ms']:>6.0f}x {r['numpy']['p50_ms'] / ann['p50_ms']:>7.1f}x {ann['others']:>7.2f}")
    lines.append("")
    lines.append("x flat / x numpy: exact p50 / ANN p50 (how many times faster the index is than each exact baseline).")
    lines.append("lancedb p50: the same index and settings on the LanceDB table directly (ids only); others: busy cores")
    exact = ", ".join(f"{r['rows']}: {r['numpy']['recall_at_10']:.3f} / {r['flat']['recall_at_10']:.3f}" for r in report["rows"])
    lines.append(f"used by other processes while ANN was timed. numpy / flat recall (should be 1.0): {exact}")
    for r in report["rows"]:
        lines.append(f"{r['rows']} rows: write {r['write_s']} s, index {r['index_params']}, query {r['query_params']}; "
                     f"partitions {r['partitions_built']} built, {r['partitions_after_optimize']} after optimize() "
                     f"({r['optimize_s']} s); {r['queries']} ANN queries, {r['exact_queries']} exact")
    target = report["target"]
    for r in report["rows"]:
        if r["rows"] == target["rows"]:
            ok = r["ann"]["recall_at_10"] >= target["recall_at_10"] and r["ann"]["p50_ms"] < target["p50_ms"]
            lines.append(f"target at {r['rows']} rows ({r['data']}): recall@10 >= {target['recall_at_10']} and "
                         f"p50 < {target['p50_ms']} ms: {'met' if ok else 'NOT met'}")
    m = report["machine"]
    lines.append(f"machine: {m['cpu']}, {m['usable_cpus']} usable of {m['logical_cpus']} CPUs, {m['memory_gib']} GiB, "
                 f"Python {m['python']}, lancedb {report['versions']['lancedb']}, pylance {report['versions']['pylance']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="rows per collection")
    parser.add_argument("--queries", type=int, default=200, help="timed ANN queries (recall is over these too)")
    parser.add_argument("--exact-queries", type=int, default=20, help="timed exact queries (a flat scan of 1M takes seconds)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed queries before each timed series")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--data", choices=["clustered", "uniform"], default="clustered")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=["store", "lancedb"], default="store",
                        help="store: polymodal.store's Collection (falls back to lancedb when it cannot build an index)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/polymodal-search-bench"),
                        help="vectors and tables go here (about 4.5 GiB per million rows of dim 512)")
    parser.add_argument("--keep", action="store_true", help="keep the tables in --workdir afterwards")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731


    import lance
    import lancedb

    data = Synthetic(args.data, args.dim, args.seed)
    log(f"generating {max(args.sizes)} {args.data} vectors of dim {args.dim} (cached in {args.workdir})")
    vectors = vectors_file(data, max(args.sizes), args.workdir)
    all_queries = data.queries(args.queries + args.warmup)
    queries, warmup = all_queries[:args.queries], all_queries[args.queries:]

    report = {"machine": machine(), "versions": {"lancedb": lancedb.__version__, "pylance": lance.__version__},
              "target": {"rows": 1_000_000, "recall_at_10": 0.95, "p50_ms": 20.0}, "rows": []}
    try:
        for n in sorted(args.sizes):
            report["rows"].append(run_size(args, data, vectors, n, queries, warmup, log))
    finally:
        if not args.keep:
            for sub in ("db", "lancedb"):
                shutil.rmtree(args.workdir / sub, ignore_errors=True)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
