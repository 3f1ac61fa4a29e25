"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds what training changes (the trainable weights, not the frozen towers), the
optimizer's moments, the step, the position in the data (epoch and batches consumed), the random
generators' states and the run's settings. The data's own randomness (caption choice, crops) is a
function of (seed, epoch, sample index), so position and seed are all the data needs.

Files are written to a temporary name and renamed, so a run killed while saving leaves the
previous checkpoint intact. Only rank 0 writes; every rank reads.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polymodal.errors import CheckpointError

PATTERN = re.compile(r"step-(\d+)\.pt$")


@dataclass
class Position:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch the next batch comes from
    batch: int = 0  # micro-batches of that epoch already consumed

    def to_dict(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "batch": self.batch}


def checkpoint_dir(out: Path) -> Path:
    return Path(out) / "checkpoints"


def list_checkpoints(out: Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    folder = checkpoint_dir(out)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := PATTERN.search(p.name))]
    return [p for _, p in sorted(found)]


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(out: Path, *, model_state: dict, optimizer_state: dict, position: Position, settings: dict,
                    keep: int = 2) -> Path:
    """Write checkpoints/step-NNNNNNNN.pt and delete all but the newest `keep`."""
    folder = checkpoint_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{position.step:08d}.pt"
    payload = {"format": 1, "model": {k: v.detach().cpu() for k, v in model_state.items()},
               "optimizer": optimizer_state, "position": position.to_dict(), "rng": rng_state(),
               "settings": settings}
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    for old in list_checkpoints(out)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict:
    try:
        # numpy's RNG state holds an ndarray and Python's a tuple: not in torch's weights-only
        # allow-list. Checkpoints are the run's own files, so a full load is what is wanted.
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}. Delete it to resume from the one before.") from exc
    if not isinstance(payload, dict) or payload.get("format") != 1:
        raise CheckpointError(f"{path} is not a polymodal training checkpoint")
    payload["position"] = Position(**payload["position"])
    return payload


# Settings that must match for a resumed run to be the same run; others (logging, evaluation,
# checkpoint frequency, max steps or epochs) may change between runs.
MUST_MATCH = ("model", "mode", "objective", "data", "images", "batch_size", "world_size", "accum_steps", "seed",
              "lora_rank", "lora_alpha", "captions")


def check_resumable(saved: dict, current: dict, path: Path) -> None:
    diffs = [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in MUST_MATCH if saved.get(k) != current.get(k)]
    if diffs:
        raise CheckpointError(
            f"the checkpoint {path} was written by a run with other settings ({'; '.join(diffs)}). "
            f"Use the same settings to resume, or pass --no-resume (or another --out) to start afresh."
        )
