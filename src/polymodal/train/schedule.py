"""Learning-rate schedule and optimizer set-up for contrastive training.

The schedule is a pure function of the step (linear warm-up, then a half cosine down to a floor),
so a resumed run needs nothing but the step number to continue exactly where it stopped.
"""

from __future__ import annotations

import math

import torch

from polymodal.errors import InvalidInputError


def lr_at(step: int, *, base_lr: float, total_steps: int, warmup_steps: int, min_lr_ratio: float = 0.0) -> float:
    """The learning rate for optimizer step `step` (0-based).

    Warm-up: base_lr * (step + 1) / warmup_steps for the first `warmup_steps` steps (open_clip's
    convention: the first step already moves). Then cosine from base_lr to base_lr * min_lr_ratio
    over the remaining steps; at and after `total_steps` it stays at the floor."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    floor = base_lr * min_lr_ratio
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return floor + 0.5 * (base_lr - floor) * (1.0 + math.cos(math.pi * progress))


def decays(name: str, param: torch.nn.Parameter) -> bool:
    """Weight decay applies to matrices only: not to biases, norm gains, embeddings' scalars or
    the temperature/bias of the loss (CLIP and open_clip exclude the same: decaying a gain or the
    temperature pulls it towards 0, which no one wants)."""
    return param.ndim >= 2 and "logit_" not in name


def make_optimizer(model: torch.nn.Module, *, lr: float, weight_decay: float, betas=(0.9, 0.98),
                   eps: float = 1e-6) -> torch.optim.AdamW:
    """AdamW over the parameters that require gradients, in two groups (decayed, not decayed).

    betas (0.9, 0.98) and eps 1e-6 are CLIP's (Radford et al. 2021, table 2) settings for
    contrastive training, which is more stable than the default 0.999 with large batches."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise InvalidInputError("the model has no trainable parameters in this mode; choose another --mode")
    if lr <= 0 or not math.isfinite(lr):
        raise InvalidInputError(f"learning rate must be a positive number, got {lr!r}")
    if weight_decay < 0:
        raise InvalidInputError(f"weight decay must be >= 0, got {weight_decay!r}")
    groups = [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas, eps=eps)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
