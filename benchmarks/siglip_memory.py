"""Per-rank memory of the chunked SigLIP loss: it grows with the local batch, not the global one.

For W ranks (gloo processes on this machine) with local batch n, each rank runs the loss forward
and backward on random unit features (n, D) and records the peak of the bytes held by tensors that
the loss creates (a dispatch mode counts every op output while it is alive; the inputs are not
counted). Two implementations, measured in the same run:

- ring:   polymodal's SigLipLoss(distributed="ring") (models/losses.py), blocks of n x n only;
- gather: the plain way, all_gather the texts with gradients and score the local images against
          all W*n texts (an n x W*n logits matrix and its backward).

Expected shape: ring's peak is flat in W for a fixed n; gather's grows linearly with W*n.

    python benchmarks/siglip_memory.py [--local 256 1024] [--worlds 1 2 4] [--dim 512]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import weakref
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import machine  # noqa: E402


class LiveBytes(TorchDispatchMode):
    """Peak bytes of live tensors produced by ops run under this mode (storage freed -> subtracted)."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self.seen: set[int] = set()

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key in self.seen or storage.nbytes() == 0:
            return  # a view of a storage already counted
        self.seen.add(key)
        size = storage.nbytes()
        self.live += size
        self.peak = max(self.peak, self.live)

        def release(key=key, size=size):
            self.live -= size
            self.seen.discard(key)

        weakref.finalize(t, release)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        n = grad.shape[0] // dist.get_world_size()
        r = dist.get_rank()
        return grad[r * n:(r + 1) * n]


def gather_siglip(image, text, scale, bias):
    """Local images against all gathered texts: the (n, W*n) logits a plain implementation forms."""
    world, rank = dist.get_world_size(), dist.get_rank()
    texts = _GatherWithGrad.apply(text) if world > 1 else text
    n = image.shape[0]
    logits = scale * image @ texts.T + bias  # (n, W*n)
    labels = -torch.ones_like(logits)
    labels[:, rank * n:(rank + 1) * n] += 2 * torch.eye(n)
    return -F.logsigmoid(labels * logits).sum() / n


def worker(rank: int, world: int, port: int, local: int, dim: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from polymodal.models.losses import SigLipLoss

    g = torch.Generator().manual_seed(rank)
    image = F.normalize(torch.randn(local, dim, generator=g), dim=-1).requires_grad_()
    text = F.normalize(torch.randn(local, dim, generator=g), dim=-1).requires_grad_()
    scale, bias = torch.tensor(10.0, requires_grad=True), torch.tensor(-10.0, requires_grad=True)
    ring = SigLipLoss(distributed="ring")
    result = {}
    for name, fn in (("ring", lambda: ring(image, text, scale, bias)), ("gather", lambda: gather_siglip(image, text, scale, bias))):
        fn().backward()  # warm-up: the first call allocates communication buffers
        image.grad = text.grad = scale.grad = bias.grad = None
        with LiveBytes() as meter:
            fn().backward()
        image.grad = text.grad = scale.grad = bias.grad = None
        result[name] = meter.peak
    Path(out, f"{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def measure(world: int, local: int, dim: int) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(world, port, local, dim, tmp), nprocs=world, join=True)
        rows = [json.loads(Path(tmp, f"{r}.json").read_text()) for r in range(world)]
    return {k: max(r[k] for r in rows) for k in rows[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--local", type=int, nargs="+", default=[128, 512], help="local batch sizes")
    ap.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4, 8], help="numbers of ranks")
    ap.add_argument("--dim", type=int, default=512)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"SigLIP loss forward+backward, D={args.dim}; peak MB of tensors the loss creates, max over ranks")
    print(f"{'local n':>8} {'ranks W':>8} {'global':>8} {'ring MB':>9} {'gather MB':>10} {'gather/ring':>12}")
    for local in args.local:
        base = None
        for world in args.worlds:
            m = measure(world, local, args.dim)
            ring, gather = m["ring"] / 2**20, m["gather"] / 2**20
            base = base or ring
            print(f"{local:>8} {world:>8} {local * world:>8} {ring:>9.2f} {gather:>10.2f} {gather / ring:>11.2f}x")
        print()


if __name__ == "__main__":
    main()
