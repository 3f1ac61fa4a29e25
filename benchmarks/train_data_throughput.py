"""Training-data throughput: polymodal's loaders against a plain PIL loop.

    python benchmarks/train_data_throughput.py                      # flickr8k-subset, S=64 and 224, workers 0/1/2
    python benchmarks/train_data_throughput.py --data coco-mini     # full-size COCO photos: JPEG drafts show
    python benchmarks/train_data_throughput.py --json

Both sides turn the JPEG files of a captions file into uint8 batches of 32 views of S x S pixels,
`--epochs` epochs in a row. The baseline is the loop a user writes with PIL alone, in one
thread: open, convert to RGB, crop the largest centred square, resize it to S x S (bicubic),
stack. polymodal is `PairDataset.from_file` (random resized crops, JPEG draft decoding at 2S,
the caption drawn per sample) with `workers` DataLoader processes (0: in this process), read
two ways: `make_loader` once per epoch (workers start and stop with each epoch) and one
`TrainLoader` for all the epochs (the trainer's: the same workers run on across epoch
boundaries; closed inside the timed run).

Each configuration runs `--repeats` times, alternating with the baseline of its S, and keeps its
best run (the machine is shared: absolute rates drift, the ratio within one run holds). "other
cores" is how many cores other processes kept busy during the kept run (/proc/stat minus this
process and its children).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
BATCH = 32


def busy_seconds() -> float:
    """CPU seconds all cores of the machine have been busy since boot (/proc/stat)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds of this process and its finished children (the loader's workers)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def timed(fn) -> tuple[float, float, int]:
    """(wall seconds, other processes' busy cores, images) of one call of fn (which returns images)."""
    busy0, own0, start = busy_seconds(), own_seconds(), time.perf_counter()
    images = fn()
    wall = time.perf_counter() - start
    other = max(0.0, (busy_seconds() - busy0) - (own_seconds() - own0)) / wall
    return wall, other, images


def baseline_epochs(paths: list[str], size: int, epochs: int) -> int:
    from PIL import Image

    n = 0
    for _ in range(epochs):
        for start in range(0, len(paths) - BATCH + 1, BATCH):
            views = []
            for path in paths[start: start + BATCH]:
                with Image.open(path) as im:
                    im = im.convert("RGB")
                side = min(im.size)
                left, top = (im.width - side) // 2, (im.height - side) // 2
                views.append(np.asarray(im.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)))
            n += len(np.stack(views))
    return n


def loader_epochs(data, size: int, workers: int, epochs: int, kind: str) -> int:
    from polymodal.train.data import TrainLoader, make_loader

    args = {"batch_size": BATCH, "image_size": size, "seed": 0, "workers": workers}
    if kind == "make_loader":
        return sum(len(batch["captions"]) for e in range(epochs) for batch in make_loader(data, epoch=e, **args))
    with TrainLoader(data, **args) as loader:
        return sum(len(batch["captions"]) for e in range(epochs) for batch in loader.epoch(e))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="flickr8k-subset", help="a folder of ../shared/data with captions.jsonl")
    parser.add_argument("--sizes", default="64,224", help="view sizes S, comma-separated")
    parser.add_argument("--workers", default="0,1,2", help="DataLoader worker counts, comma-separated")
    parser.add_argument("--loaders", default="make_loader,TrainLoader", help="polymodal loaders, comma-separated")
    parser.add_argument("--epochs", type=int, default=3, help="epochs in a row per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration; the best is kept")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    args = parser.parse_args(argv)

    captions = DATA / args.data / "captions.jsonl"
    if not captions.is_file():
        print(f"missing {captions}: the shared data sets live beside the repository", file=sys.stderr)
        return 1
    from polymodal.train.data import PairDataset

    data = PairDataset.from_file(captions)
    paths = data.images
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        base = None
        for workers in (int(w) for w in args.workers.split(",")):
            for kind in args.loaders.split(","):
                best = None
                for _ in range(args.repeats):
                    b = timed(lambda: baseline_epochs(paths, size, args.epochs))
                    base = b if base is None or b[0] < base[0] else base
                    r = timed(lambda: loader_epochs(data, size, workers, args.epochs, kind))
                    best = r if best is None or r[0] < best[0] else best
                rows.append({"size": size, "workers": workers, "loader": kind, "images": best[2],
                             "images_per_s": round(best[2] / best[0], 1), "other_cores": round(best[1], 2),
                             "baseline_images_per_s": round(base[2] / base[0], 1),
                             "baseline_other_cores": round(base[1], 2),
                             "ratio": round((best[2] / best[0]) / (base[2] / base[0]), 2)})
    report = {"data": args.data, "images": len(paths), "batch": BATCH, "cpus": os.cpu_count(),
              "epochs": args.epochs, "repeats": args.repeats, "rows": rows}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.data}: {len(paths)} images, batches of {BATCH}, {os.cpu_count()} cpus, {args.epochs} epochs "
          f"per run, best of {args.repeats} runs")
    print(f"{'S':>4} {'workers':>7} {'loader':>12} {'img/s':>8} {'baseline img/s':>15} {'ratio':>6} {'other cores':>12}")
    for r in rows:
        print(f"{r['size']:>4} {r['workers']:>7} {r['loader']:>12} {r['images_per_s']:>8} {r['baseline_images_per_s']:>15} "
              f"{r['ratio']:>6} {r['other_cores']:>5} / {r['baseline_other_cores']:<5}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
