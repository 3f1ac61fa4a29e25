"""Training throughput: polymodal's loop against a minimal hand-written PyTorch loop.

Same model (a fresh `scratch:small` CLIP, seed 0), same data (the 800 Flickr photos and captions
of ../shared/data/flickr8k-subset), same batch size, same number of optimizer steps, same number
of data-loading worker processes, in the same run. The baseline is what a competent user writes
in twenty lines: a Dataset that opens each image with PIL and centre-crops it, a DataLoader with
the same workers and `persistent_workers=True` (epochs are 12 batches here, so re-starting the
workers every epoch would cost the baseline), and forward -> clip_loss -> backward -> AdamW.step.
polymodal's loop adds random resized crops, draft decoding, gradient clipping, the schedule,
logging and checkpoint bookkeeping; the target is to stay within 10% of the baseline (data
loading must not starve the model).

Both are timed from the first batch request to the last optimizer step (loader start-up
included for both), after one untimed warm-up run of each. The runs alternate in ABBA order
(plain, polymodal, polymodal, plain, ...) so that a steady drift of the shared machine's load
cancels in the median. Per run it also reports:
  wait   the share of the wall time the loop spent waiting for its next batch (data starvation)
  cpu/s  CPU seconds of the process and its workers per 64 samples (work done, whatever the load)
  other  cores kept busy by other processes meanwhile (/proc/stat minus this process tree)

    python benchmarks/train_throughput.py [--steps 30] [--batch-size 64] [--workers 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import machine  # noqa: E402
from train_data_throughput import busy_seconds, own_seconds  # noqa: E402

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


class Meter:
    """Wall time, waiting time, own CPU time and other processes' load of one timed run."""

    def __init__(self):
        self.wait = 0.0

    def start(self) -> None:
        self.busy0, self.own0, self.t0 = busy_seconds(), own_seconds(), time.perf_counter()

    def batches(self, loader):
        """Iterate `loader`, adding the time spent in next() to self.wait."""
        it = iter(loader)
        while True:
            tick = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self.wait += time.perf_counter() - tick
            yield batch

    def result(self, samples: int, wall: float | None = None) -> dict:
        end = time.perf_counter()
        wall = end - self.t0 if wall is None else wall
        own = own_seconds() - self.own0
        other = max(0.0, (busy_seconds() - self.busy0) - own) / (end - self.t0)
        return {"samples_per_s": samples / wall, "wait": self.wait / wall, "cpu_per_64": own / samples * 64,
                "other_cores": other}


def plain_loop(steps: int, batch_size: int, workers: int, lr: float) -> dict:
    """The hand-written loop's figures (see Meter)."""
    from polymodal.models.losses import clip_loss
    from polymodal.train.trainable import build_trainable

    torch.manual_seed(0)
    model = build_trainable("scratch:small", seed=0).train()
    data = PlainPairs(DATA, model.image_size)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         collate_fn=collate, drop_last=True, persistent_workers=workers > 0,
                                         generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.1)
    meter = Meter()
    done = 0
    meter.start()
    while done < steps:
        for pixels, sizes, captions in meter.batches(loader):
            image_features, text_features, scale, _ = model(model.image_inputs(pixels, sizes), model.text_inputs(captions))
            loss = clip_loss(image_features, text_features, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    wall = time.perf_counter() - meter.t0
    del loader  # joins the persistent workers, so that their CPU time is counted
    return meter.result(steps * batch_size, wall)


class _Counted:
    """An EpochLoader whose batches go through a Meter (len() passes through)."""

    def __init__(self, loader, meter: Meter):
        self.loader, self.meter = loader, meter

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return self.meter.batches(self.loader)


def polymodal_loop(steps: int, batch_size: int, workers: int, lr: float) -> dict:
    """polymodal.train's figures: samples/s is the trainer's own (optimizer steps only, evaluation
    and checkpoints excluded); the waiting time is measured on the batches the trainer gets."""
    from polymodal.train.config import TrainConfig
    from polymodal.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(data=str(DATA), out=out, model="scratch:small", batch_size=batch_size, max_steps=steps,
                          lr=lr, warmup_steps=5, workers=workers, log_every=steps, save_every=10**9,
                          tensorboard=False, seed=0)
        trainer = Trainer(cfg, progress=False)
        meter = Meter()
        epoch_loader = trainer._loader
        trainer._loader = lambda epoch, start: _Counted(epoch_loader(epoch, start), meter)
        export, figures = trainer._export, {}

        def measured_export():  # the loop is over (its workers joined): what follows is not training
            figures.update(meter.result(steps * batch_size))
            return export()

        trainer._export = measured_export
        meter.start()
        result = trainer.run()
    wall = steps * batch_size / result.samples_per_second
    return figures | {"samples_per_s": result.samples_per_second, "wait": meter.wait / wall}


def show(name: str, r: dict) -> str:
    return (f"{name} {r['samples_per_s']:6.1f} samples/s (wait {r['wait']:5.1%}, cpu {r['cpu_per_64']:5.2f} s/64, "
            f"other {r['other_cores']:.2f} cores)")


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
    print(f"load average before: {os.getloadavg()}")
    plain_loop(3, args.batch_size, args.workers, args.lr)  # warm-up: first-touch allocations, kernels
    polymodal_loop(3, args.batch_size, args.workers, args.lr)
    plain, ours = [], []
    for k in range(args.repeat):
        order = (("plain", plain_loop, plain), ("polymodal", polymodal_loop, ours))
        for name, loop, results in (order if k % 2 == 0 else order[::-1]):  # ABBA: a steady drift cancels
            results.append(loop(args.steps, args.batch_size, args.workers, args.lr))
            print("  " + show(f"{name:>9}", results[-1]) + f"  load {os.getloadavg()[0]:.1f}", flush=True)
    p = statistics.median(r["samples_per_s"] for r in plain)
    o = statistics.median(r["samples_per_s"] for r in ours)
    wait_p, wait_o = (statistics.median(r["wait"] for r in rs) for rs in (plain, ours))
    cpu_p, cpu_o = (statistics.median(r["cpu_per_64"] for r in rs) for rs in (plain, ours))
    print(f"median: plain loop {p:.1f} samples/s, polymodal {o:.1f} samples/s, ratio polymodal/plain {o / p:.3f}")
    print(f"median waiting for data: plain {wait_p:.1%}, polymodal {wait_o:.1%}; "
          f"CPU s per 64 samples: plain {cpu_p:.2f}, polymodal {cpu_o:.2f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
