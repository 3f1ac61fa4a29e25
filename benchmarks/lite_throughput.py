"""Throughput of the offline default model `lite`, end to end, against a plain baseline.

    python benchmarks/lite_throughput.py [--quick] [--json]

Images: JPEG files on disk -> unit vectors, through `LiteEmbedder.encode_images` (batched,
decoding and resizing in worker threads one batch ahead of the model, JPEG draft decoding)
against the plain loop a user would write first with the same model: open, decode at full size,
preprocess and encode one image at a time. Texts: captions -> unit vectors, batched, against one
caption at a time. The text rows' cosine compares the default path (bf16 on CPUs with bf16 units) with fp32.
Both sides run in this process on the same files; the ratio is what to read
(these machines are noisy: absolute rates drift, ratios hold). Targets from the issue: at least
100 images/s and 500 texts/s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import machine  # noqa: E402  (one description of the machine for every benchmark)

DATA = REPO.parent / "shared" / "data"


def rate(count: int, fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return count / (time.perf_counter() - start), out


def baseline_images(model, paths):
    from PIL import Image

    out = []
    with torch.inference_mode():
        for p in paths:
            with Image.open(p) as im:
                image = im.convert("RGB")
            crop = model.transform.crop_uint8(image)
            pixels = model.transform.normalize(crop[None])
            out.append(model.tower(pixels, torch.tensor([min(image.size) < 64])).numpy()[0])
    return np.stack(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer files, for a smoke run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        sys.exit(f"{DATA} is missing: the benchmark reads ../shared/data beside the repository")
    import polymodal

    model = polymodal.load("lite")
    sets = {"flickr8k-subset (~200x150)": sorted((DATA / "flickr8k-subset/images").glob("*.jpg")),
            "coco-mini (full-size COCO)": sorted((DATA / "coco-mini/images").glob("*.jpg"))}
    limit = 64 if args.quick else 400
    captions = [json.loads(line)["caption"] for line in (DATA / "flickr8k-subset/captions.jsonl").read_text().splitlines()]
    captions = captions[: 128 if args.quick else 800]

    model.encode_images([str(p) for p in sets["flickr8k-subset (~200x150)"][:32]])  # warm-up, not timed
    model.encode_texts(captions[:32])
    rows = []
    for name, files in sets.items():
        paths = [str(p) for p in files[:limit]]
        base_rate, base = rate(len(paths), lambda: baseline_images(model, paths))
        ours_rate, ours = rate(len(paths), lambda: model.encode_images(paths))
        cos = float((base * ours).sum(axis=1).min())
        rows.append({"what": f"images: {name}", "n": len(paths), "baseline_per_s": base_rate,
                     "polymodal_per_s": ours_rate, "ratio": ours_rate / base_rate, "min_cosine_to_baseline": cos})
    base_rate, base = rate(len(captions), lambda: np.concatenate([model.text([c])[0] for c in captions]))  # fp32
    ours_rate, ours = rate(len(captions), lambda: model.encode_texts(captions))
    rows.append({"what": "texts: flickr captions", "n": len(captions), "baseline_per_s": base_rate,
                 "polymodal_per_s": ours_rate, "ratio": ours_rate / base_rate,
                 "min_cosine_to_baseline": float((base * ours).sum(axis=1).min())})
    report = {"machine": {**machine(), "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
              "rows": rows}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['usable_cpus']} cores, bf16 units {m['bf16_units']}, torch {m['torch']} "
          f"({m['torch_threads']} threads)")
    print(f"{'what':<42} {'n':>5} {'baseline/s':>11} {'polymodal/s':>12} {'ratio':>6} {'min cos':>8}")
    for r in rows:
        print(f"{r['what']:<42} {r['n']:>5} {r['baseline_per_s']:>11.1f} {r['polymodal_per_s']:>12.1f} "
              f"{r['ratio']:>6.2f} {r['min_cosine_to_baseline']:>8.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
