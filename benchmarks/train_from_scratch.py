"""Training from scratch learns: held-out retrieval of a small CLIP rises above chance in minutes.

Runs the recipe of docs/train.md through the real command, in a subprocess:

    polymodal train TRAIN.jsonl --model scratch:mini --val-data flickr8k-subset/captions.jsonl
        --val-images 600:800 --eval-every N ...

Training split: flickr8k-subset images 0-599 plus all 80 coco-mini images (written as one captions
file with absolute image paths). Held out: flickr8k-subset images 600-799, 200 images with one
caption each, which training never sees; chance text-to-image R@K is K/200 (R@5: 2.5%).

Prints R@1/5/10 in both directions at every evaluation, with the wall time since the command
started (read from the run's metrics.csv as the rows appear), the chance levels, the machine and
its load (other processes share the cores; timings under load are pessimistic).

    python benchmarks/train_from_scratch.py [--steps 120] [--eval-every 15] [--batch-size 256]
        [--lr 1e-3] [--weight-decay 0.5] [--warmup-steps 20] [--threads 1] [--keep DIR] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import machine  # noqa: E402
from finetune_forgetting import FLICKR, COCO, write_training_split  # noqa: E402

HELD_OUT_IMAGES = 200
METRICS = ("text_to_image_R@1", "text_to_image_R@5", "text_to_image_R@10",
           "image_to_text_R@1", "image_to_text_R@5", "image_to_text_R@10")


def command(data: Path, out: Path, args) -> list[str]:
    return ["polymodal", "train", str(data), "--out", str(out), "--model", args.model,
            "--val-data", str(FLICKR), "--val-images", "600:800", "--max-steps", str(args.steps),
            "--eval-every", str(args.eval_every), "--batch-size", str(args.batch_size), "--lr", f"{args.lr:g}",
            "--weight-decay", f"{args.weight_decay:g}", "--warmup-steps", str(args.warmup_steps),
            "--workers", str(args.workers), "--seed", str(args.seed), "--no-resume", "--no-tensorboard", "--json"]


def read_evaluations(path: Path) -> dict[int, dict[str, float]]:
    """step -> {metric: value} for the val/ rows of a metrics.csv written so far."""
    found: dict[int, dict[str, float]] = {}
    if not path.is_file():
        return found
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("metric", "").startswith("val/") and row.get("value"):
                found.setdefault(int(row["step"]), {})[row["metric"].removeprefix("val/")] = float(row["value"])
    return found


def run(cmd: list[str], out: Path, threads: int | None, on_eval) -> tuple[dict, float]:
    """Start the command, report each complete evaluation as metrics.csv gains it, and return
    the command's JSON result and its wall time."""
    env = dict(os.environ)
    if threads:
        # On a shared 2-core machine two OpenMP threads that wait for each other lose badly to
        # one when other processes are busy; the data-loading workers need the other core.
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    seen: set[int] = set()
    with tempfile.TemporaryFile(mode="w+") as stdout, tempfile.TemporaryFile(mode="w+") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "polymodal", *cmd[1:]], stdout=stdout, stderr=stderr, env=env)
        while True:
            finished = proc.poll() is not None
            for step, metrics in sorted(read_evaluations(out / "metrics.csv").items()):
                if step not in seen and all(m in metrics for m in METRICS):
                    seen.add(step)
                    on_eval(step, time.perf_counter() - start, metrics)
            if finished:
                break
            time.sleep(0.5)
        wall = time.perf_counter() - start
        stdout.seek(0)
        stderr.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"polymodal train failed ({proc.returncode}):\n{stderr.read()[-3000:]}")
        return json.loads(stdout.read()), wall


def untrained(model: str, seed: int) -> dict[str, float]:
    """R@K of the run's starting point (the same seeded random weights): the measured chance level."""
    from polymodal.eval.retrieval import evaluate_retrieval, read_captions
    from polymodal.train.trainable import build_trainable

    trainable = build_trainable(model, seed=seed).eval()
    result = evaluate_retrieval(trainable.embedder(), read_captions(FLICKR, slice(600, 800)))
    return {f"{d}_{k}": v for d in ("text_to_image", "image_to_text") for k, v in result[d].items()}


def chance_tail(rate: float, k: int) -> float:
    """P(a random ranking scores at least `rate` R@k on the held-out queries): the binomial tail
    with one query per held-out image, each a hit with probability k / images."""
    n, p = HELD_OUT_IMAGES, k / HELD_OUT_IMAGES
    hits = round(rate * n)
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(hits, n + 1))


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="scratch:mini", help="scratch:ARCH (default scratch:mini)")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--eval-every", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.5)
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for the run (0: leave torch's default)")
    p.add_argument("--keep", metavar="DIR", default=None, help="keep the run here (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    args = p.parse_args(argv)

    missing = [str(x) for x in (FLICKR, COCO) if not x.exists()]
    if missing:
        print(f"missing shared data: {', '.join(missing)} (expected beside the repository in ../shared/data)",
              file=sys.stderr)
        return 2
    chance = {k: k / HELD_OUT_IMAGES for k in (1, 5, 10)}
    rows = []
    quiet = args.json

    def on_eval(step, elapsed, m):
        rows.append({"step": step, "seconds": round(elapsed, 1), **m})
        if not quiet:
            print(f"{step:5d} {elapsed:7.0f}   " + "  ".join(f"{100 * m[k]:5.1f}" for k in METRICS), flush=True)

    with tempfile.TemporaryDirectory(prefix="train-from-scratch-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "train.jsonl"
        split = write_training_split(data)
        cmd = command(data, work / "run", args)
        load_before = load_average()
        m = machine()
        if not quiet:
            print(f"machine: {m['cpu']}, {m['usable_cpus']} usable cores, {m['memory_gib']} GiB; python {m['python']}; "
                  f"load average before {load_before}")
            print(f"training split: flickr8k-subset 0-599 + coco-mini, {sum(s['images'] for s in split.values())} "
                  f"images; held out: flickr8k-subset 600-799 ({HELD_OUT_IMAGES} images, one caption each)")
            print(f"$ {'OMP_NUM_THREADS=' + str(args.threads) + ' ' if args.threads else ''}" + " ".join(cmd))
            print(f"chance: R@1 {100 * chance[1]:.1f}%, R@5 {100 * chance[5]:.1f}%, R@10 {100 * chance[10]:.1f}%")
            print(" step       s   t2i R@1   R@5  R@10  i2t R@1   R@5  R@10")
        start = untrained(args.model, args.seed)
        if not quiet:
            print(f"{0:5d} {'-':>7}   " + "  ".join(f"{100 * start[k]:5.1f}" for k in METRICS) + "   (untrained)")
        result, wall = run(cmd, work / "run", args.threads, on_eval)
    load_after = load_average()
    best = max(rows, key=lambda r: r["text_to_image_R@5"]) if rows else None
    report = {"machine": m, "load_average": {"before": load_before, "after": load_after}, "command": cmd,
              "threads": args.threads, "training_split": split, "chance": chance, "untrained": start,
              "evaluations": rows,
              "wall_seconds": wall, "steps": result["steps"], "epochs": result["epochs_done"],
              "final_loss": result["loss"], "samples_per_second": result["samples_per_second"]}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{result['steps']} steps ({result['epochs_done']:g} epochs) in {wall / 60:.1f} min wall, "
          f"{result['samples_per_second']:.0f} training samples/s, final loss {result['loss']:.3f}; "
          f"load average after {load_after}")
    if best:
        print(f"best text-to-image R@5 {100 * best['text_to_image_R@5']:.1f}% at step {best['step']} "
              f"({best['text_to_image_R@5'] / chance[5]:.1f}x chance); last "
              f"{100 * rows[-1]['text_to_image_R@5']:.1f}% ({rows[-1]['text_to_image_R@5'] / chance[5]:.1f}x; a random "
              f"ranking does as well with probability {chance_tail(rows[-1]['text_to_image_R@5'], 5):.1g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
