"""`polymodal train`: contrastive training and fine-tuning of dual encoders (polymodal.train)."""

from __future__ import annotations

import argparse
import json
import sys

EXIT_OK = 0


def register(sub) -> None:
    from polymodal.train.config import TrainConfig

    d = TrainConfig(data="", out="")
    p = sub.add_parser(
        "train", help="train or fine-tune a dual encoder with the CLIP or SigLIP objective",
        description="Trains a dual encoder on image-caption pairs: from scratch (--model scratch:small) or by "
                    "fine-tuning a model (--mode full, lit, projection or lora). Runs on one process, or on many "
                    "under torchrun (torchrun --nproc-per-node 2 -m polymodal train ...). Writes checkpoints, "
                    "metrics.csv and TensorBoard logs to --out, resumes from the newest checkpoint there, and "
                    "exports the result as a model that classify, index and search accept. See docs/train.md.")
    p.add_argument("data", help="training pairs: a captions .jsonl/.csv/.tsv (image and caption columns), a folder "
                                "of class folders, or WebDataset .tar shards (a folder, glob or data-{000..009}.tar)")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory (checkpoints, logs, the final model)")
    p.add_argument("--model", default=d.model,
                   help=f"model to start from: a model name or path, or scratch:ARCH for random weights of an "
                        f"architecture (default {d.model})")
    p.add_argument("--mode", default=d.mode, choices=["full", "lit", "projection", "lora"],
                   help="what is trained: everything; the text side with the image tower locked (LiT); only the "
                        "projections; or LoRA adapters (default full)")
    p.add_argument("--objective", default=d.objective, choices=["clip", "siglip"],
                   help="contrastive softmax (CLIP) or pairwise sigmoid (SigLIP) loss (default clip)")
    p.add_argument("--images", metavar="START:STOP", default=None,
                   help="train on this slice of the unique images in file order, e.g. 0:600 (default all)")
    p.add_argument("--captions", default=d.captions, choices=["random", "all"],
                   help="random: one sample per image with a caption drawn each epoch; all: every pair is a sample")
    p.add_argument("--val-data", metavar="FILE", default=None, help="captions file for held-out retrieval R@K")
    p.add_argument("--val-images", metavar="START:STOP", default=None, help="slice of --val-data's images")
    p.add_argument("--zeroshot", metavar="DIR", default=None,
                   help="folder of class folders: zero-shot accuracy during training")
    p.add_argument("--zeroshot-per-class", type=int, default=d.zeroshot_per_class, metavar="N",
                   help=f"images per class for that accuracy (default {d.zeroshot_per_class})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"passes over the data (default {d.epochs})")
    p.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="stop after N optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, metavar="N",
                   help=f"pairs per micro-batch and rank (default {d.batch_size})")
    p.add_argument("--accum-steps", type=int, default=d.accum_steps, metavar="N",
                   help="micro-batches per optimizer step (default 1)")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"AdamW decay (default {d.weight_decay})")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps, metavar="N",
                   help=f"linear warm-up steps before the cosine decay (default {d.warmup_steps})")
    p.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio, metavar="R",
                   help="the cosine ends at lr * R (default 0)")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, metavar="NORM",
                   help=f"clip the gradients' global norm (default {d.grad_clip}; 0 turns it off)")
    p.add_argument("--precision", default=d.precision, choices=["fp32", "bf16"],
                   help="bf16 autocast on the CPU (faster on CPUs with bf16 units) or fp32 (default)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for weights, order and augmentation (default 0)")
    p.add_argument("--workers", type=int, default=d.workers, metavar="N",
                   help=f"data loading processes (default {d.workers}; 0 loads in the training process)")
    p.add_argument("--no-augment", action="store_true", help="centre crops instead of random resized crops")
    p.add_argument("--crop-scale", type=float, default=d.crop_scale, metavar="MIN",
                   help=f"random resized crops keep MIN..1 of the image's area (default {d.crop_scale}, open_clip's); "
                        f"lower is stronger augmentation, e.g. 0.35 for a few hundred images")
    p.add_argument("--log-every", type=int, default=d.log_every, metavar="N", help="steps between log lines")
    p.add_argument("--eval-every", type=int, default=None, metavar="N", help="steps between evaluations (default: each epoch)")
    p.add_argument("--save-every", type=int, default=None, metavar="N", help="steps between checkpoints (default: each epoch)")
    p.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, metavar="N",
                   help=f"newest checkpoints kept (default {d.keep_checkpoints})")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if --out holds checkpoints")
    p.add_argument("--export-name", metavar="NAME", default=None,
                   help="register the trained model under NAME, so --model NAME works everywhere")
    p.add_argument("--lora-rank", type=int, default=d.lora_rank, help=f"LoRA rank (default {d.lora_rank})")
    p.add_argument("--lora-alpha", type=int, default=d.lora_alpha, help=f"LoRA alpha (default {d.lora_alpha})")
    p.add_argument("--no-tensorboard", action="store_true", help="write metrics.csv only")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_train)


def config_from_args(args: argparse.Namespace):
    from polymodal.train.config import TrainConfig

    return TrainConfig(
        data=args.data, out=args.out, model=args.model, mode=args.mode, objective=args.objective, images=args.images,
        captions=args.captions, val_data=args.val_data, val_images=args.val_images, zeroshot=args.zeroshot,
        zeroshot_per_class=args.zeroshot_per_class, epochs=args.epochs, max_steps=args.max_steps,
        batch_size=args.batch_size, accum_steps=args.accum_steps, lr=args.lr, weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps, min_lr_ratio=args.min_lr_ratio,
        grad_clip=args.grad_clip if args.grad_clip else None, precision=args.precision, seed=args.seed,
        workers=args.workers, augment=not args.no_augment, crop_scale=args.crop_scale, log_every=args.log_every,
        eval_every=args.eval_every,
        save_every=args.save_every, keep_checkpoints=args.keep_checkpoints, resume=not args.no_resume,
        export_name=args.export_name, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
        tensorboard=not args.no_tensorboard)


def cmd_train(args: argparse.Namespace) -> int:
    from polymodal.train.trainer import train

    result = train(config_from_args(args), progress=None if not args.json else False)
    if result is None:
        return EXIT_OK
    d = result.to_dict()
    from polymodal.train.distributed import init_world

    if not init_world().main:
        return EXIT_OK
    if args.json:
        print(json.dumps(d, indent=2))
        return EXIT_OK
    if d["resumed_from"]:
        print(f"resumed at step {d['resumed_from']}", file=sys.stderr)
    sps = f", {d['samples_per_second']:.1f} samples/s" if d["samples_per_second"] else ""
    loss = f", loss {d['loss']:.4f}" if d["loss"] is not None else ""
    print(f"trained {d['steps']} steps ({d['epochs_done']:g} epochs){loss}{sps}")
    for ev in d["evaluations"][-1:]:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in ev.items() if k != "step")
        print(f"evaluation at step {ev['step']}: {shown}")
    print(f"model: {d['model_dir']}" + (f" (use --model {d['model_name']})" if args.export_name else
                                         f" (use --model {d['model_dir']})"))
    return EXIT_OK
