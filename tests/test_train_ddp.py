"""Distributed training under torchrun (2 gloo processes on the CPU) equals one process.

Two ranks with a local batch of 8 see exactly the pairs one process sees with a batch of 16 (the
loader gives each rank its slice of every global batch), the losses score the global batch
(InfoNCE over gathered features; SigLIP's ring), and DDP averages the gradients: after several
AdamW steps the weights must agree within 1e-5. The run goes through the real command,
`torchrun -m polymodal train`.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from polymodal.train.trainer import train
from tests.test_train_loop import config, trained_state, write_pairs

COMMON = ["--model", "scratch:tiny-test", "--epochs", "2", "--lr", "2e-3", "--warmup-steps", "2", "--workers", "0",
          "--log-every", "1", "--no-tensorboard", "--json"]


def run_torchrun(data: str, out, objective: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "polymodal",
           "train", data, "--out", str(out), "--batch-size", "8", "--objective", objective, *COMMON]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("objective", ["clip", "siglip"])
def test_two_ranks_train_like_one_process_with_the_global_batch(tmp_path, clip_bpe, objective):
    data = write_pairs(tmp_path / "pairs", count=32)
    run_torchrun(data, tmp_path / "ddp", objective)
    single = train(config(data, tmp_path / "single", batch_size=16, epochs=2, objective=objective))
    assert single.steps == 4
    a, b = trained_state(tmp_path / "single"), trained_state(tmp_path / "ddp")
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5, worst
    # and training moved the weights, so the agreement is not that of two untouched models
    from polymodal.embed.resolve import build_random

    start = build_random("tiny-test", seed=0).model.state_dict()
    moved = max(float((a[k] - start[k]).abs().max()) for k in start if k in a)
    assert moved > 1e-3
    assert torch.isfinite(torch.stack([a[k].abs().max() for k in a])).all()
