"""Training from scratch learns: held-out retrieval of a small CLIP rises above chance in minutes.

Runs the recipe of docs/train.md through the real command, in a subprocess, once per seed:

    polymodal train TRAIN.jsonl --model scratch:mini-conv --val-data flickr8k-subset/captions.jsonl
        --val-images 600:800 --eval-every 20 --max-steps 120 --batch-size 256 --lr 1e-3 ...

scratch:mini-conv (models/configs/mini-conv.json) is a small ConvNet image tower and a bag-of-words
text tower (CLIP BPE token embeddings, mean-pooled): on 680 images it learns as well as the ViT
scratch:mini at about twice the speed (benchmarks/RESULTS.md has the comparison).

Training split: flickr8k-subset images 0-599 plus all 80 coco-mini images (written as one captions
file with absolute image paths). Held out: flickr8k-subset images 600-799, 200 images with one
caption each, which training never sees; chance text-to-image R@K is K/200 (R@5: 2.5%). The
recipe was chosen on 600-699 only; 700-799 informed no choice.

Prints R@1/5/10 in both directions at every evaluation (on 600-799), with the wall time since the
command started (read from the run's metrics.csv as the rows appear); then the last weights' R@K
(the exported model, loaded as a user would) on 600-699, 700-799 and 600-799; then a table over
the seeds with the machine's load (other processes share the cores; timings under load are
pessimistic).

    python benchmarks/train_from_scratch.py [--seeds 0,1,2] [--model scratch:mini-conv] [--steps 120]
        [--eval-every 20] [--batch-size 256] [--lr 1e-3] [--weight-decay 0.5] [--warmup-steps 20]
        [--threads 1] [--keep DIR] [--json]
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
# The recipe (chosen on Flickr 600-699; see benchmarks/RESULTS.md, "train · from scratch").
DEFAULTS = {"model": "scratch:mini-conv", "steps": 120, "eval_every": 20, "batch_size": 256, "lr": 1e-3,
            "weight_decay": 0.5, "warmup_steps": 20}
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


SPLITS = {"600:700": slice(600, 700), "700:800": slice(700, 800), "600:800": slice(600, 800)}


def final_splits(model_dir: str) -> dict[str, dict[str, float]]:
    """R@K of the run's last weights (its exported model, loaded as a user would) on each held-out
    split: 600-699 chose the recipe, 700-799 never informed a choice, 600-799 is the curve's split."""
    from polymodal.embed.resolve import load_embedder
    from polymodal.eval.retrieval import evaluate_retrieval, read_captions

    embedder = load_embedder(model_dir)
    found = {}
    for name, images in SPLITS.items():
        result = evaluate_retrieval(embedder, read_captions(FLICKR, images))
        found[name] = {f"{d}_{k}": v for d in ("text_to_image", "image_to_text") for k, v in result[d].items()}
    return found


def chance_tail(rate: float, k: int, images: int = HELD_OUT_IMAGES) -> float:
    """P(a random ranking scores at least `rate` R@k on the held-out queries): the binomial tail
    with one query per held-out image, each a hit with probability k / images."""
    n, p = images, k / images
    hits = round(rate * n)
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(hits, n + 1))


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def one_run(args, seed: int, work: Path, data: Path, quiet: bool) -> dict:
    """Train one seed through the real command: its curve, its last weights' figures on each
    split, and its timing."""
    args = argparse.Namespace(**{**vars(args), "seed": seed})
    rows = []

    def on_eval(step, elapsed, m):
        rows.append({"step": step, "seconds": round(elapsed, 1), **m})
        if not quiet:
            print(f"{step:5d} {elapsed:7.0f}   " + "  ".join(f"{100 * m[k]:5.1f}" for k in METRICS), flush=True)

    out = work / f"run-seed{seed}"
    cmd = command(data, out, args)
    load_before = load_average()
    if not quiet:
        print(f"\n$ {'OMP_NUM_THREADS=' + str(args.threads) + ' ' if args.threads else ''}" + " ".join(cmd))
        print(" step       s   t2i R@1   R@5  R@10  i2t R@1   R@5  R@10   (Flickr 600-799)")
    start = untrained(args.model, seed)
    if not quiet:
        print(f"{0:5d} {'-':>7}   " + "  ".join(f"{100 * start[k]:5.1f}" for k in METRICS) + "   (untrained)")
    result, wall = run(cmd, out, args.threads, on_eval)
    load_after = load_average()
    final = final_splits(result["model_dir"])
    best = max(rows, key=lambda r: r["text_to_image_R@5"]) if rows else None
    report = {"seed": seed, "command": cmd, "load_average": {"before": load_before, "after": load_after},
              "untrained": start, "evaluations": rows, "last": final,
              "best": best and {"step": best["step"], "text_to_image_R@5": best["text_to_image_R@5"]},
              "wall_seconds": wall, "steps": result["steps"], "epochs": result["epochs_done"],
              "final_loss": result["loss"], "samples_per_second": result["samples_per_second"]}
    if not quiet:
        print(f"{result['steps']} steps ({result['epochs_done']:g} epochs) in {wall / 60:.1f} min wall, "
              f"{result['samples_per_second']:.0f} training samples/s, final loss {result['loss']:.3f}; "
              f"load average after {load_after}")
        for name, m in final.items():
            n = SPLITS[name].stop - SPLITS[name].start
            r5 = m["text_to_image_R@5"]
            print(f"last weights on Flickr {name} ({n} images, chance R@5 {500 / n:.1f}%): t2i R@1/5/10 "
                  + "/".join(f"{100 * m[f'text_to_image_R@{k}']:.1f}" for k in (1, 5, 10))
                  + f"; R@5 is {r5 * n / 5:.1f}x chance (a random ranking does as well with p {chance_tail(r5, 5, n):.1g})")
    return report


def summary(runs: list[dict]) -> dict:
    """Per seed and averaged: text-to-image R@5 of the last weights on each split, the best R@5 on
    the curve (600-799, picked by looking at it: optimistic), wall minutes and samples/s."""
    per_seed = []
    for r in runs:
        row = {"seed": r["seed"], "best_R@5_600_800": r["best"]["text_to_image_R@5"] if r["best"] else 0.0,
               "best_step": r["best"]["step"] if r["best"] else 0}
        row.update({f"last_R@5_{k.replace(':', '_')}": r["last"][k]["text_to_image_R@5"] for k in SPLITS})
        row.update({"wall_minutes": r["wall_seconds"] / 60, "samples_per_second": r["samples_per_second"],
                    "load_average_after": r["load_average"]["after"]})
        per_seed.append(row)
    keys = [k for k in per_seed[0] if k.startswith(("best_R", "last_R", "wall", "samples"))]
    return {"per_seed": per_seed, "mean": {k: sum(row[k] for row in per_seed) / len(per_seed) for k in keys}}


def print_summary(table: dict) -> None:
    print("\nseed   best R@5 600-799 (step)   last R@5: 600-799  600-699  700-799   wall min  samples/s  load after")
    rows = [*table["per_seed"], {"seed": "mean", "best_step": "", "load_average_after": "", **table["mean"]}]
    for row in rows:
        step = f"({row['best_step']})" if row["best_step"] != "" else ""
        print(f"{row['seed']!s:>4}   {100 * row['best_R@5_600_800']:16.1f} {step:>6}   "
              f"{100 * row['last_R@5_600_800']:16.1f}  {100 * row['last_R@5_600_700']:7.1f}  "
              f"{100 * row['last_R@5_700_800']:7.1f}  {row['wall_minutes']:9.1f}  {row['samples_per_second']:9.0f}  "
              f"{row['load_average_after']}")
    mean = table["mean"]["last_R@5_600_800"]
    print(f"mean last-weight R@5 on 600-799: {100 * mean:.1f}% = {mean / (5 / HELD_OUT_IMAGES):.1f}x chance "
          f"(on the 100-image splits chance is 5.0%)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=DEFAULTS["model"], help=f"scratch:ARCH (default {DEFAULTS['model']})")
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    p.add_argument("--eval-every", type=int, default=DEFAULTS["eval_every"])
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--weight-decay", type=float, default=DEFAULTS["weight_decay"])
    p.add_argument("--warmup-steps", type=int, default=DEFAULTS["warmup_steps"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seeds", default="0", help="comma-separated seeds, one run each (default 0; the docs' figures: 0,1,2)")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for the run (0: leave torch's default)")
    p.add_argument("--keep", metavar="DIR", default=None, help="keep the runs here (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    args = p.parse_args(argv)
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        p.error(f"--seeds {args.seeds!r}: give whole numbers separated by commas, e.g. 0,1,2")

    missing = [str(x) for x in (FLICKR, COCO) if not x.exists()]
    if missing:
        print(f"missing shared data: {', '.join(missing)} (expected beside the repository in ../shared/data)",
              file=sys.stderr)
        return 2
    chance = {k: k / HELD_OUT_IMAGES for k in (1, 5, 10)}
    quiet = args.json
    with tempfile.TemporaryDirectory(prefix="train-from-scratch-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "train.jsonl"
        split = write_training_split(data)
        m = machine()
        if not quiet:
            print(f"machine: {m['cpu']}, {m['usable_cpus']} usable cores, {m['memory_gib']} GiB; python {m['python']}; "
                  f"load average {load_average()}")
            print(f"training split: flickr8k-subset 0-599 + coco-mini, {sum(s['images'] for s in split.values())} "
                  f"images; held out: flickr8k-subset 600-799 ({HELD_OUT_IMAGES} images, one caption each). "
                  f"The recipe was chosen on 600-699; 700-799 informed no choice.")
            print(f"chance on 600-799: R@1 {100 * chance[1]:.1f}%, R@5 {100 * chance[5]:.1f}%, "
                  f"R@10 {100 * chance[10]:.1f}%")
        runs = [one_run(args, seed, work, data, quiet) for seed in seeds]
    table = summary(runs)
    if args.json:
        print(json.dumps({"machine": m, "threads": args.threads, "training_split": split, "chance": chance,
                          "runs": runs, "summary": table}, indent=2))
    else:
        print_summary(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
