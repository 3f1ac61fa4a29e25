"""Training throughput: polymodal's loop against a minimal hand-written PyTorch loop.

Same model (a fresh `scratch:small` CLIP, seed 0), same data (the 800 Flickr photos and captions
of ../shared/data/flickr8k-subset), same batch size, same number of optimizer steps, same number
of data-loading worker processes, in the same run. The baseline is what one writes in twenty
lines: a Dataset that opens each image with PIL and centre-crops it, a DataLoader, and
forward -> clip_loss -> backward -> AdamW.step. polymodal's loop adds random resized crops,
draft decoding, gradient clipping, the schedule, logging and checkpoint bookkeeping; the target is
to stay within 10% of the baseline (data loading must not starve the model).

Both are timed from the first batch request to the last optimizer step (loader start-up
included for both), after one untimed warm-up run of each; the runs alternate to spread the
machine's drift.

    python benchmarks/train_throughput.py [--steps 30] [--batch-size 64] [--workers 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import machine  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k-subset" / "captions.jsonl"


class PlainPairs(torch.utils.data.Dataset):
    """(uint8 crop, original size, caption) per image: PIL open, RGB, shortest side, centre crop."""

    def __init__(self, path: Path, size: int):
        from polymodal.models.clip import PreprocessConfig
        from polymodal.models.preprocess import ImageTransform

        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        self.items = [(str(path.parent / r["image"]), r["caption"]) for r in rows]
        self.transform = ImageTransform(PreprocessConfig(size=size))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image

        path, caption = self.items[i]
        with Image.open(path) as im:
            im = im.convert("RGB")
            size = im.size
            crop = self.transform.crop_uint8(im)
        return torch.from_numpy(crop.copy()), torch.tensor(size), caption


def collate(rows):
    return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]), [r[2] for r in rows]


def plain_loop(steps: int, batch_size: int, workers: int, lr: float) -> float:
    """samples/s of the hand-written loop."""
    from polymodal.models.losses import clip_loss
    from polymodal.train.trainable import build_trainable

    torch.manual_seed(0)
    model = build_trainable("scratch:small", seed=0).train()
    data = PlainPairs(DATA, model.image_size)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         collate_fn=collate, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.1)
    done = 0
    start = time.perf_counter()
    while done < steps:
        for pixels, sizes, captions in loader:
            image_features, text_features, scale, _ = model(model.image_inputs(pixels, sizes), model.text_inputs(captions))
            loss = clip_loss(image_features, text_features, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return steps * batch_size / (time.perf_counter() - start)


def polymodal_loop(steps: int, batch_size: int, workers: int, lr: float) -> float:
    """samples/s of polymodal.train (the trainer measures it: optimizer steps only, evaluation excluded)."""
    from polymodal.train.config import TrainConfig
    from polymodal.train.trainer import train

    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(data=str(DATA), out=out, model="scratch:small", batch_size=batch_size, max_steps=steps,
                          lr=lr, warmup_steps=5, workers=workers, log_every=steps, save_every=10**9,
                          tensorboard=False, seed=0)
        result = train(cfg, progress=False)
    return result.samples_per_second


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--lr", type=float, default=5e-4)
    args = ap.parse_args()
    if not DATA.is_file():
        sys.exit(f"{DATA} is missing: the shared data sets live beside the repository")
    print(f"machine: {machine()}, torch threads {torch.get_num_threads()}")
    print(f"model scratch:small, flickr8k-subset, batch {args.batch_size}, {args.steps} steps, {args.workers} workers")
    plain_loop(3, args.batch_size, args.workers, args.lr)  # warm-up: first-touch allocations, kernels
    polymodal_loop(3, args.batch_size, args.workers, args.lr)
    plain, ours = [], []
    for _ in range(args.repeat):
        plain.append(plain_loop(args.steps, args.batch_size, args.workers, args.lr))
        ours.append(polymodal_loop(args.steps, args.batch_size, args.workers, args.lr))
        print(f"  plain loop {plain[-1]:7.1f} samples/s   polymodal {ours[-1]:7.1f} samples/s")
    p, o = statistics.median(plain), statistics.median(ours)
    print(f"median: plain loop {p:.1f} samples/s, polymodal {o:.1f} samples/s, ratio polymodal/plain {o / p:.3f}")


if __name__ == "__main__":
    main()
