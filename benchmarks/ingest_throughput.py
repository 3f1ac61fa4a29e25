"""Ingestion throughput: `polymodal index` of a folder against the plain loop, same model, same files.

    python benchmarks/ingest_throughput.py [--model lite] [--data DIR] [--repeat 2] [--json]

polymodal: `Collection.add([folder])` into a fresh collection (walk, read + hash ahead, decode
in worker threads a few batches ahead of the model, batched embedding, commits of 2048 rows in a
writer thread, then compaction).
baseline: the loop a user writes first: for each file, embed it (`encode_images([path])`), then
insert its row into the same kind of LanceDB table.

Both run in this process on the same files (../shared/data/flickr8k-subset/images by default),
alternating, `--repeat` times each; the page cache is warm for both (the files are read once
before timing). The ratio is what to read: these machines are noisy. Also printed: the share of
polymodal's time spent in storage writes (target < 10%).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import machine  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "flickr8k-subset" / "images"


def run_polymodal(embedder, spec: str, folder: Path, db_dir: str) -> dict:
    from polymodal.collections import Collection
    from polymodal.store import Database

    db = Database(db_dir)
    stored = db.create("bench", model=spec, dim=embedder.dim, model_name=embedder.name)
    start = time.perf_counter()
    report = Collection(stored, embedder).add([folder], progress=False)
    seconds = time.perf_counter() - start
    return {"files": report.new, "seconds": seconds, "write_seconds": report.write_seconds, "count": report.count}


def run_baseline(embedder, spec: str, files: list[Path], db_dir: str) -> dict:
    """Embed each file, then insert it: one model call and one table write per file."""
    from polymodal.store import Database
    from polymodal.store.schema import content_hash, records_to_table

    db = Database(db_dir)
    stored = db.create("bench", model=spec, dim=embedder.dim, model_name=embedder.name)
    start = time.perf_counter()
    for path in files:
        vector = embedder.encode_images([str(path)])
        data = path.read_bytes()
        record = {"uri": str(path), "kind": "image", "media_type": "image/jpeg", "content_hash": content_hash(data),
                  "size": len(data), "mtime": path.stat().st_mtime}
        stored.add(records_to_table([record], vector, stored.meta))
    seconds = time.perf_counter() - start
    return {"files": len(files), "seconds": seconds, "count": stored.count()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lite")
    parser.add_argument("--data", type=Path, default=DATA, help="a folder of images")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        sys.exit(f"{args.data} is missing: the benchmark reads ../shared/data beside the repository")
    import polymodal

    embedder = polymodal.load(args.model)
    files = sorted(p for p in args.data.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for p in files:  # warm the page cache for both sides
        p.read_bytes()
    embedder.encode_images([str(files[0])])  # model warm-up (ONNX export/session, threads)

    runs = {"polymodal": [], "baseline": []}
    for _ in range(args.repeat):
        for name in ("baseline", "polymodal"):
            with tempfile.TemporaryDirectory() as tmp:
                if name == "polymodal":
                    runs[name].append(run_polymodal(embedder, args.model, args.data, tmp))
                else:
                    runs[name].append(run_baseline(embedder, args.model, files, tmp))
            r = runs[name][-1]
            print(f"  {name:<10} {r['files'] / r['seconds']:7.1f} files/s ({r['seconds']:.1f} s)", file=sys.stderr)

    def best(name):
        return min(runs[name], key=lambda r: r["seconds"])

    poly, base = best("polymodal"), best("baseline")
    result = {
        "machine": machine(),
        "model": args.model,
        "files": len(files),
        "polymodal_files_per_s": round(poly["files"] / poly["seconds"], 1),
        "baseline_files_per_s": round(base["files"] / base["seconds"], 1),
        "ratio": round(base["seconds"] / poly["seconds"], 2),
        "write_share": round(poly["write_seconds"] / poly["seconds"], 4),
        "write_share_all_runs": [round(r["write_seconds"] / r["seconds"], 4) for r in runs["polymodal"]],
        "ratios_per_repeat": [round(b["seconds"] / p["seconds"], 2) for b, p in zip(runs["baseline"], runs["polymodal"])],
        "median_polymodal_s": round(statistics.median(r["seconds"] for r in runs["polymodal"]), 2),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        m = result["machine"]
        print(f"machine: {m['cpu']}, {m['usable_cpus']} cpus, {m['memory_gib']} GiB")
        print(f"{len(files)} files from {args.data}, model {args.model}")
        print(f"polymodal index : {result['polymodal_files_per_s']:8.1f} files/s  (storage writes {100 * result['write_share']:.1f}% of the time)")
        print(f"embed-then-insert loop: {result['baseline_files_per_s']:8.1f} files/s")
        print(f"ratio: {result['ratio']:.2f}x (per repeat: {result['ratios_per_repeat']}; target >= 1.5x, writes < 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
