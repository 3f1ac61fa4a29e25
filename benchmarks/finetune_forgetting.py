"""Fine-tuning lite and forgetting: held-out retrieval and zero-shot CIFAR-10, before and after.

Every variant fine-tunes the default model `lite` on the same training split, through the real
command (`polymodal train ... --model lite --mode M --lr LR`, a subprocess each), and the exported
model is measured on data no variant trains on:

* Flickr held-out retrieval: flickr8k-subset images 600-799 (200 images, 200 captions), R@1/5/10
  text-to-image and image-to-text (`polymodal eval retrieval ... --images 600:800`);
* CIFAR-10 zero-shot top-1 on all 2,000 cifar10-dev images with the default templates
  (`polymodal eval zeroshot ../shared/data/cifar10-dev`). CIFAR is only measured, never trained on.

Training split: flickr8k-subset images 0-599 plus all 80 coco-mini images (written as one captions
file with absolute image paths). lite's head was fitted on flickr 0-499 + coco-mini already
(docs/models/lite.md), so most of this split is not new to it.

Variants (the standard remedies against forgetting, next to the case that forgets):
  before      lite as shipped
  full-high   head, mix weights, scale and all of MiniLM at --lr-high (the forgetting case)
  full-low    the same at --lr-low
  projection  locked towers: only the head, mix weights and scale (--lr-projection, default 1e-3,
              the lr lite's head was fitted with in lab/lite/train_lite.py)
  lora        LoRA adapters (rank 8, alpha 16) on MiniLM + head, mix, scale (--lr-lora, default
              1e-3: LoRA is usually run at about 10x the full fine-tuning lr)
  wise-A      WiSE-FT (Wortsman et al. 2022): (1 - A) * before + A * full-high, weight by weight
              (polymodal.train.export.weight_average), for each A in --alphas

    python benchmarks/finetune_forgetting.py [--epochs 3] [--batch-size 64] [--lr-high 1e-4]
        [--lr-low 1e-5] [--lr-projection 1e-3] [--lr-lora 1e-3] [--alphas 0.25,0.5,0.75] [--variants full-high,full-low,projection,lora]
        [--cifar-per-class N] [--keep DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import machine  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FLICKR = DATA / "flickr8k-subset" / "captions.jsonl"
COCO = DATA / "coco-mini" / "captions.jsonl"
CIFAR = DATA / "cifar10-dev"
HELD_OUT = slice(600, 800)
TRAIN_FLICKR = slice(0, 600)

# name -> (mode, which --lr-* flag)
VARIANTS = {
    "full-high": ("full", "high"),
    "full-low": ("full", "low"),
    "projection": ("projection", "projection"),
    "lora": ("lora", "lora"),
}


def write_training_split(path: Path) -> dict:
    """flickr8k-subset images 0-599 + all of coco-mini as one captions JSONL, absolute image paths
    (a captions file's relative paths are read against its own folder, so absolute ones let two
    data sets share one file)."""
    rows, counts = [], {}
    for source, images in ((FLICKR, TRAIN_FLICKR), (COCO, slice(None))):
        lines = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
        chosen = set(list(dict.fromkeys(r["image"] for r in lines))[images])
        kept = [{"image": str(source.parent / r["image"]), "caption": r["caption"]} for r in lines if r["image"] in chosen]
        rows.extend(kept)
        counts[source.parent.name] = {"images": len(chosen), "captions": len(kept)}
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return counts


def train_variant(data: Path, out: Path, mode: str, lr: float, args) -> dict:
    """One `polymodal train` run in its own process; returns its JSON result and wall time."""
    cmd = [sys.executable, "-m", "polymodal", "train", str(data), "--out", str(out), "--model", "lite",
           "--mode", mode, "--lr", f"{lr:g}", "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--warmup-steps", str(args.warmup_steps), "--workers", str(args.workers), "--no-resume",
           "--no-tensorboard", "--json"]
    print("$ polymodal " + " ".join(cmd[3:]), file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"training failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    result["wall_seconds"] = time.perf_counter() - start
    return result


def wise_ft(before: str, after: str, alpha: float, out: Path) -> Path:
    """Average lite's trainable weights (head, mix weights, scale, MiniLM) of the model before and
    after fine-tuning, and export the result as a lite folder."""
    from polymodal.train.export import weight_average
    from polymodal.train.trainable import build_trainable

    old = build_trainable(before, mode="full")
    new = build_trainable(after, mode="full")
    state = weight_average(old.trainable_state_dict(), new.trainable_state_dict(), alpha)
    old.load_trainable_state_dict(state)
    return old.export(out, f"lite-wise-{alpha:g}")


def measure(model: str, cifar_per_class: int | None) -> dict:
    """Held-out Flickr retrieval and CIFAR-10 zero-shot accuracy of one model."""
    from polymodal.embed.resolve import load_embedder
    from polymodal.eval.retrieval import evaluate_retrieval, read_captions
    from polymodal.eval.zeroshot import evaluate_zeroshot

    embedder = load_embedder(model)
    start = time.perf_counter()
    retrieval = evaluate_retrieval(embedder, read_captions(FLICKR, HELD_OUT))
    zeroshot = evaluate_zeroshot(embedder, CIFAR, per_class=cifar_per_class)
    return {"t2i": retrieval["text_to_image"], "i2t": retrieval["image_to_text"],
            "cifar": zeroshot["accuracy"], "cifar_images": zeroshot["images"],
            "eval_seconds": time.perf_counter() - start}


def table(rows: list[dict]) -> str:
    head = (f"{'variant':<12} {'mode':<10} {'lr':>6} {'steps':>5} {'train s':>7}   "
            f"{'t2i R@1':>7} {'R@5':>5} {'R@10':>5}   {'i2t R@1':>7} {'R@5':>5} {'R@10':>5}   {'CIFAR-10':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        t, i = r["t2i"], r["i2t"]
        lr = f"{r['lr']:.0e}" if r.get("lr") else "-"
        steps = str(r["steps"]) if r.get("steps") is not None else "-"
        secs = f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "-"
        lines.append(f"{r['variant']:<12} {r['mode']:<10} {lr:>6} {steps:>5} {secs:>7}   "
                     f"{100 * t['R@1']:7.1f} {100 * t['R@5']:5.1f} {100 * t['R@10']:5.1f}   "
                     f"{100 * i['R@1']:7.1f} {100 * i['R@5']:5.1f} {100 * i['R@10']:5.1f}   {100 * r['cifar']:7.1f}%")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=3, help="epochs per fine-tuning run (default 3)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--warmup-steps", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--lr-high", type=float, default=1e-4, help="full-high's lr, the forgetting case (default 1e-4)")
    p.add_argument("--lr-low", type=float, default=1e-5, help="full-low's lr (default 1e-5)")
    p.add_argument("--lr-projection", type=float, default=1e-3, help="projection's lr (default 1e-3)")
    p.add_argument("--lr-lora", type=float, default=1e-3, help="lora's lr (default 1e-3)")
    p.add_argument("--alphas", default="0.25,0.5,0.75", help="WiSE-FT mixing weights of the full-high model")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    p.add_argument("--cifar-per-class", type=int, default=None, help="first N CIFAR images per class (default all 200)")
    p.add_argument("--keep", metavar="DIR", default=None, help="keep the runs and models here (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="print all figures as one JSON document")
    args = p.parse_args(argv)

    missing = [str(x) for x in (FLICKR, COCO, CIFAR) if not x.exists()]
    if missing:
        print(f"missing shared data: {', '.join(missing)} (expected beside the repository in ../shared/data)",
              file=sys.stderr)
        return 2
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    alphas = [float(a) for a in args.alphas.split(",") if a] if "full-high" in variants else []
    os.environ.setdefault("POLYMODAL_CLIP_BPE", str(DATA / "clip-bpe" / "bpe_simple_vocab_16e6.txt.gz"))

    with tempfile.TemporaryDirectory(prefix="finetune-forgetting-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "train.jsonl"
        split = write_training_split(data)
        started = time.perf_counter()
        rows = [{"variant": "before", "mode": "-", **measure("lite", args.cifar_per_class)}]
        print(f"before: measured in {rows[0]['eval_seconds']:.0f} s", file=sys.stderr, flush=True)
        models = {}
        for name in variants:
            mode, which = VARIANTS[name]
            lr = getattr(args, f"lr_{which}")
            result = train_variant(data, work / name, mode, lr, args)
            models[name] = result["model_dir"]
            rows.append({"variant": name, "mode": mode, "lr": lr, "steps": result["steps"],
                         "train_seconds": result["wall_seconds"], "final_loss": result["loss"],
                         **measure(result["model_dir"], args.cifar_per_class)})
            print(f"{name}: trained {result['steps']} steps in {result['wall_seconds']:.0f} s, loss {result['loss']:.3f}",
                  file=sys.stderr, flush=True)
        if alphas:
            for alpha in alphas:
                folder = wise_ft("lite", models["full-high"], alpha, work / f"wise-{alpha:g}")
                rows.append({"variant": f"wise-{alpha:g}", "mode": "average", "lr": None, "steps": None,
                             **measure(str(folder), args.cifar_per_class)})
        total = time.perf_counter() - started

    report = {"machine": machine(), "training_split": split, "held_out": "flickr8k-subset images 600-799",
              "settings": {k: getattr(args, k) for k in ("epochs", "batch_size", "warmup_steps", "lr_high", "lr_low",
                                                         "lr_projection", "lr_lora")},
              "rows": rows, "total_seconds": total}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['usable_cpus']} usable cores, {m['memory_gib']} GiB; python {m['python']}")
    print(f"training split: flickr8k-subset 0-599 ({split['flickr8k-subset']['captions']} captions) + coco-mini "
          f"({split['coco-mini']['captions']} captions); {args.epochs} epochs, batch {args.batch_size}, "
          f"warm-up {args.warmup_steps} steps, cosine to 0")
    print(f"measured on: Flickr 600-799 (200 images, 200 captions; chance R@5 2.5%), CIFAR-10 dev "
          f"({rows[0]['cifar_images']} images, 10 classes, default templates; chance 10%)")
    print(table(rows))
    print(f"total {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
