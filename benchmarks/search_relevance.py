"""Relevance of collection search on real captions, through the real CLI.

    python benchmarks/search_relevance.py [--model lite] [--json]

For each data set: the images are indexed with `polymodal index` into a fresh database, every
caption is searched with `polymodal search --queries FILE -k 10 --json`, and text-to-image
R@1/R@5/R@10 are computed from the results (a hit: the caption's own image in the top K).
Baselines in the same run: chance (K / number of images) and the in-memory exact evaluation
`polymodal eval retrieval` of the same model on the same images, which the collection must match
(same vectors, exact search below the approximate-index threshold).

Data: coco-mini (80 images, 400 captions; note that the default model's head was fitted on
coco-mini, see docs/models/lite.md, so its coco-mini figures are not held out) and Flickr
images 600-799 (held out from every shipped model's training).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import machine  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"coco-mini": (DATA / "coco-mini" / "captions.jsonl", None), "flickr-600-800": (DATA / "flickr8k-subset" / "captions.jsonl", (600, 800))}


def polymodal(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "polymodal", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"polymodal {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def measure(name: str, captions_file: Path, image_slice, model: str, work: Path) -> dict:
    rows = [json.loads(line) for line in captions_file.read_text().splitlines() if line.strip()]
    images = list(dict.fromkeys(r["image"] for r in rows))
    if image_slice:
        images = images[image_slice[0]:image_slice[1]]
    keep = set(images)
    pairs = [(r["caption"], os.path.realpath(captions_file.parent / r["image"])) for r in rows if r["image"] in keep]

    folder = work / name / "images"
    folder.mkdir(parents=True)
    for image in images:  # links: the walk resolves them, so results name the real files
        os.symlink(os.path.realpath(captions_file.parent / image), folder / Path(image).name)
    db = work / name / "db"
    polymodal("index", str(folder), "-c", name, "--db", str(db), "--model", model, "--json")
    queries = work / name / "queries.txt"
    queries.write_text("\n".join(" ".join(c.split()) for c, _ in pairs) + "\n")
    out = polymodal("search", "--queries", str(queries), "-c", name, "--db", str(db), "-k", "10")
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == len(pairs), (len(results), len(pairs))

    recall = {k: 0 for k in (1, 5, 10)}
    for (_, image), result in zip(pairs, results):
        sources = [h["source"] for h in result["hits"]]
        for k in recall:
            recall[k] += image in sources[:k]
    recall = {f"R@{k}": round(100 * v / len(pairs), 1) for k, v in recall.items()}

    eval_args = ["eval", "retrieval", str(captions_file), "--model", model, "--json"]
    if image_slice:
        eval_args += ["--images", f"{image_slice[0]}:{image_slice[1]}"]
    reference = json.loads(polymodal(*eval_args))
    return {"images": len(images), "captions": len(pairs), "collection_search": recall,
            "in_memory_eval": {k: round(100 * v, 1) for k, v in reference["text_to_image"].items()},
            "chance": {f"R@{k}": round(100 * k / len(images), 1) for k in (1, 5, 10)}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lite")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        sys.exit(f"{DATA} is missing: the benchmark reads ../shared/data beside the repository")
    result = {"machine": machine(), "model": args.model, "sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (captions, image_slice) in SETS.items():
            result["sets"][name] = measure(name, captions, image_slice, args.model, Path(tmp))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"machine: {result['machine']['cpu']}; model {args.model}; text-to-image, through `polymodal index` + `polymodal search`")
    for name, r in result["sets"].items():
        print(f"{name}: {r['images']} images, {r['captions']} captions")
        print(f"  collection search : {r['collection_search']}")
        print(f"  in-memory eval    : {r['in_memory_eval']}")
        print(f"  chance            : {r['chance']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
