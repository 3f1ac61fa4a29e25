"""Trained models out of training: LoRA folded into the weights, a model saved under a name the
resolver accepts, and weight-space ensembling of two checkpoints (WiSE-FT).

`export_named(trainable, "my-model")` writes `models_dir()/my-model` ($POLYMODAL_MODELS, default
~/.local/share/polymodal/models); from then on `load_embedder("my-model")`, `polymodal classify
--model my-model`, `index`, `search` accept the name. Registered names are looked up first, so an
export may not take one of them.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from polymodal.errors import CheckpointError, InvalidInputError
from polymodal.models.registry import REGISTRY, models_dir, user_models

__all__ = ["models_dir", "user_models", "check_export_name", "export_named", "merged_state_dict", "weight_average"]

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_export_name(name: str, *, overwrite: bool = False) -> Path:
    """The folder `export_named(..., name)` will write. Raises InvalidInputError for a name that
    cannot be used, so a training run can check it before spending minutes on the model."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidInputError(
            f"model name {name!r} cannot be exported: use letters, digits, '.', '_' and '-', "
            f"starting with a letter or digit (at most 100 characters)"
        )
    if name in REGISTRY:
        raise InvalidInputError(
            f"{name!r} is a registered model name, and registered names always resolve first: "
            f"export under another name, e.g. {name + '-ft'!r}"
        )
    target = models_dir() / name
    if target.exists() and not overwrite:
        raise InvalidInputError(
            f"an exported model {name!r} already exists at {target}: pass overwrite=True to replace it, "
            f"or choose another name"
        )
    return target


def export_named(trainable, name: str, *, overwrite: bool = False) -> Path:
    """Save `trainable` (polymodal.train.trainable.Trainable) as the named model `name`, offline
    loadable, and return its folder. The model is written beside the target and moved into place
    at the end, so a failed export never leaves a half-written model under the name."""
    target = check_export_name(name, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
        staged = trainable.export(Path(tmp) / name, name)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    return target


def merged_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of `module` with every peft LoRA adapter folded into its base layer,
    W' = W + (alpha / r) * B @ A, under the plain layer's key names (`x.base_layer.weight` ->
    `x.weight`, the `lora_*` entries dropped), so the architecture without adapters loads it.
    A module without adapters gives its ordinary state dict (copied)."""
    layers = {}
    if "peft" in sys.modules:  # no adapter can exist unless peft was imported to make it
        from peft.tuners.lora import LoraLayer

        layers = {name: m for name, m in module.named_modules() if isinstance(m, LoraLayer)}
    state = {}
    for key, value in module.state_dict().items():
        if ".lora_" not in key:
            state[key.replace(".base_layer.", ".")] = value.detach().clone()
    with torch.no_grad():
        for name, layer in layers.items():
            if layer.merged:
                raise CheckpointError(f"LoRA layer {name} is already merged into its weight; unmerge it before exporting")
            for adapter in layer.active_adapters:
                state[f"{name}.weight"] += layer.get_delta_weight(adapter).to(state[f"{name}.weight"].dtype)
    return state


def weight_average(state_a: dict[str, torch.Tensor], state_b: dict[str, torch.Tensor],
                   alpha: float) -> dict[str, torch.Tensor]:
    """WiSE-FT (Wortsman et al. 2022): (1 - alpha) * state_a + alpha * state_b, key by key.

    state_a is the model before fine-tuning, state_b after it; alpha 0 gives state_a and alpha 1
    state_b exactly. Both must hold the same keys and shapes (a LoRA model: average the states of
    its exports, which have the plain architecture's keys). Non-floating entries (counters, ids)
    must be equal in both and are copied."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise InvalidInputError(f"alpha must be a number in [0, 1] (0: the first state, 1: the second), got {alpha!r}")
    only_a, only_b = sorted(set(state_a) - set(state_b)), sorted(set(state_b) - set(state_a))
    if only_a or only_b:
        raise CheckpointError(
            f"the two states do not hold the same keys: only in the first {only_a[:8]}, only in the second "
            f"{only_b[:8]}; average states of the same architecture (for LoRA, of the exported models)"
        )
    out = {}
    for key, a in state_a.items():
        b = state_b[key]
        if a.shape != b.shape or a.dtype != b.dtype:
            raise CheckpointError(
                f"{key}: {tuple(a.shape)} {a.dtype} in the first state but {tuple(b.shape)} {b.dtype} in the second"
            )
        if not a.is_floating_point():
            if not torch.equal(a, b):
                raise CheckpointError(f"{key} is a non-floating tensor ({a.dtype}) that differs between the states")
            out[key] = a.clone()
        elif alpha == 0:
            out[key] = a.clone()
        elif alpha == 1:
            out[key] = b.clone()
        else:
            out[key] = (1.0 - alpha) * a + alpha * b
    return out
