"""torch.distributed set-up for training runs launched by `torchrun`.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in each process's
environment; a run without them is a single process and nothing here communicates. The backend is
gloo on CPUs and NCCL when the process has a CUDA device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from polymodal.errors import InvalidInputError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0 logs, evaluates, writes checkpoints and exports."""
        return self.rank == 0


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidInputError(f"${name}={raw!r} is not an integer; it is set by torchrun") from None


def init_world() -> World:
    """The process group from torchrun's environment (initialised once), or a single process."""
    size = _env_int("WORLD_SIZE") or 1
    if size <= 1:
        return World()
    rank, local_rank = _env_int("RANK") or 0, _env_int("LOCAL_RANK") or 0
    cuda = torch.cuda.is_available()
    device = f"cuda:{local_rank}" if cuda else "cpu"
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    return World(rank=rank, size=size, local_rank=local_rank, device=device)


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def mean_over_ranks(value: float, world: World) -> float:
    """The mean of a scalar over all ranks (each rank's loss share averages to the global loss)."""
    if not world.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / world.size


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
