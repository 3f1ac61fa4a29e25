"""Checkpoint conversion: the key layouts people actually have, mapped onto clip.ClipModel.

Three layouts exist in the wild for the same architecture:
- Hugging Face `CLIPModel` (config.json + model.safetensors): separate q/k/v projections,
  `pre_layrnorm`, projections stored as Linear weights (D, C).
- OpenAI's original state dicts (a TorchScript archive or a plain state dict): fused
  `in_proj_weight`, `c_fc`/`c_proj` MLP names, projections stored as matrices (C, D) used as x @ P,
  plus three integer entries (input_resolution, context_length, vocab_size).
- open_clip checkpoints: OpenAI's key names (open_clip reproduced them), an optional `logit_bias`,
  and the architecture in `open_clip_config.json`.

Each function returns (ClipConfig, state dict with polymodal's names) ready for load_checked.
"""

from __future__ import annotations

import math
import re

import torch

from polymodal.errors import CheckpointError
from polymodal.models.clip import ClipConfig, PreprocessConfig, TextConfig, VisionConfig

def _rename_flat(key: str, table: dict[str, str], layout: str) -> str:
    """A key outside the transformer blocks: renamed whole, or by its module with the same
    parameter suffix (`...ln_pre.weight` -> `visual.ln_pre.weight`)."""
    if key in table:
        return table[key]
    base, _, kind = key.rpartition(".")
    if base in table:
        return f"{table[base]}.{kind}"
    raise CheckpointError(f"unexpected {layout} key {key!r}")


# ----------------------------------------------------------------------------------------------
# Hugging Face CLIPModel

_HF_BLOCK = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out",
    "mlp.fc1": "mlp.fc",
    "mlp.fc2": "mlp.proj",
}
_HF_FLAT = {
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.patch_embed.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm": "visual.ln_pre",
    "vision_model.post_layernorm": "visual.ln_post",
    "visual_projection.weight": "visual.proj.weight",
    "text_model.embeddings.token_embedding.weight": "textual.token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "textual.positional_embedding",
    "text_model.final_layer_norm": "textual.ln_final",
    "text_projection.weight": "textual.proj.weight",
    "logit_scale": "logit_scale",
}
_HF_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL's integer codes


def config_from_hf(config: dict, preprocessor: dict | None = None) -> ClipConfig:
    """ClipConfig from a Hugging Face CLIPConfig dict (and its preprocessor_config.json)."""
    v, t = config.get("vision_config", {}), config.get("text_config", {})
    # transformers' own defaults, for configs that omit a field
    v_width, t_width = v.get("hidden_size", 768), t.get("hidden_size", 512)
    eos = t.get("eos_token_id", 49407)
    vocab = t.get("vocab_size", 49408)
    if eos == 2:  # legacy configs: transformers then pools at argmax(ids), the highest id: the eot
        eos = vocab - 1
    acts = {v.get("hidden_act", "quick_gelu"), t.get("hidden_act", "quick_gelu")}
    if len(acts) != 1 or not acts <= {"quick_gelu", "gelu"}:
        raise CheckpointError(f"unsupported activations {sorted(acts)} (native CLIP takes quick_gelu or gelu)")
    pre = preprocessor or {}
    size = pre.get("crop_size", v.get("image_size", 224))
    size = size["height"] if isinstance(size, dict) else size
    shortest = pre.get("size", {"shortest_edge": size})
    shortest = shortest.get("shortest_edge", size) if isinstance(shortest, dict) else shortest
    if shortest != size:
        raise CheckpointError(f"preprocessing resizes to {shortest} but crops {size}; only resize == crop is supported")
    defaults = PreprocessConfig()
    return ClipConfig(
        embed_dim=config.get("projection_dim", 512),
        vision=VisionConfig(
            image_size=v.get("image_size", 224), patch_size=v.get("patch_size", 32), width=v_width,
            layers=v.get("num_hidden_layers", 12), heads=v.get("num_attention_heads", 12),
            mlp_ratio=v.get("intermediate_size", 4 * v_width) / v_width,
        ),
        text=TextConfig(
            context_length=t.get("max_position_embeddings", 77), vocab_size=vocab, width=t_width,
            layers=t.get("num_hidden_layers", 12), heads=t.get("num_attention_heads", 8),
            mlp_ratio=t.get("intermediate_size", 4 * t_width) / t_width, eot_token_id=eos,
        ),
        preprocess=PreprocessConfig(
            size=size,
            mean=tuple(pre.get("image_mean", defaults.mean)),
            std=tuple(pre.get("image_std", defaults.std)),
            interpolation=_HF_RESAMPLE.get(pre.get("resample", 3), "bicubic"),
        ),
        act=acts.pop(),
        layer_norm_eps=v.get("layer_norm_eps", 1e-5),
        logit_scale_init=config.get("logit_scale_init_value", math.log(1 / 0.07)),
    )


def from_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a transformers CLIPModel state dict; q, k and v are fused into one projection."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    block = re.compile(r"(vision|text)_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue  # a buffer of transformers', not a weight
        m = block.match(key)
        if m:
            tower, i, name, kind = m.groups()
            prefix = f"{'visual' if tower == 'vision' else 'textual'}.blocks.{i}"
            if name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                qkv.setdefault(f"{prefix}.attn.qkv.{kind}", {})[name[-6]] = value
                continue
            if name not in _HF_BLOCK:
                raise CheckpointError(f"unexpected Hugging Face CLIP key {key!r}")
            out[f"{prefix}.{_HF_BLOCK[name]}.{kind}"] = value
            continue
        out[_rename_flat(key, _HF_FLAT, "Hugging Face CLIP")] = value
    for key, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"incomplete q/k/v projections for {key}")
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


# ----------------------------------------------------------------------------------------------
# OpenAI and open_clip

_OPENAI_META = ("input_resolution", "context_length", "vocab_size")
_OC_BLOCK = {
    "ln_1": "ln_1",
    "ln_2": "ln_2",
    "attn.in_proj": "attn.qkv",
    "attn.out_proj": "attn.out",
    "mlp.c_fc": "mlp.fc",
    "mlp.c_proj": "mlp.proj",
}
_OC_FLAT = {
    "visual.conv1.weight": "visual.patch_embed.weight",
    "visual.class_embedding": "visual.class_embedding",
    "visual.positional_embedding": "visual.positional_embedding",
    "visual.ln_pre": "visual.ln_pre",
    "visual.ln_post": "visual.ln_post",
    "token_embedding.weight": "textual.token_embedding.weight",
    "positional_embedding": "textual.positional_embedding",
    "ln_final": "textual.ln_final",
    "logit_scale": "logit_scale",
    "logit_bias": "logit_bias",
}


def is_openclip_layout(state: dict) -> bool:
    return "visual.conv1.weight" in state and "token_embedding.weight" in state


def from_openclip_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an OpenAI or open_clip state dict (a `module.` prefix from DDP is dropped)."""
    out: dict[str, torch.Tensor] = {}
    block = re.compile(r"(visual\.)?transformer\.resblocks\.(\d+)\.(.+?)(?:_|\.)(weight|bias)$")
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key in _OPENAI_META or key == "attn_mask":
            continue
        if key == "visual.proj":  # (C, D) applied as x @ P; a Linear stores P^T
            out["visual.proj.weight"] = value.t()
            continue
        if key == "text_projection":
            out["textual.proj.weight"] = value.t()
            continue
        m = block.match(key)
        if m:
            visual, i, name, kind = m.groups()
            if name not in _OC_BLOCK:
                raise CheckpointError(
                    f"unsupported open_clip key {key!r}: this variant (layer scale, extra norms, ...) "
                    f"is not implemented natively; load it through open_clip instead"
                )
            out[f"{'visual' if visual else 'textual'}.blocks.{i}.{_OC_BLOCK[name]}.{kind}"] = value
            continue
        out[_rename_flat(key, _OC_FLAT, "open_clip/OpenAI")] = value
    return out


def config_from_openclip_state_dict(state: dict[str, torch.Tensor], act: str = "quick_gelu",
                                    head_width: int = 64) -> ClipConfig:
    """Infer the architecture from tensor shapes, as OpenAI's own loader does. Head counts are
    not visible in the weights: OpenAI and open_clip use 64-wide heads."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    needed = ["visual.conv1.weight", "visual.positional_embedding", "ln_final.weight", "text_projection",
              "positional_embedding", "token_embedding.weight", "visual.transformer.resblocks.0.mlp.c_fc.weight",
              "transformer.resblocks.0.mlp.c_fc.weight"]
    missing = [k for k in needed if k not in state]
    if missing:
        raise CheckpointError(f"the state dict lacks {missing}: it is not a complete OpenAI/open_clip CLIP")

    def count(prefix: str) -> int:
        pat = re.compile(re.escape(prefix) + r"(\d+)\.")
        return len({m.group(1) for k in state if (m := pat.match(k))})

    conv = state["visual.conv1.weight"]  # (C, 3, p, p)
    v_width, patch = conv.shape[0], conv.shape[-1]
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    t_width = state["ln_final.weight"].shape[0]
    v_mlp = state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    t_mlp = state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    return ClipConfig(
        embed_dim=state["text_projection"].shape[1],
        vision=VisionConfig(image_size=patch * grid, patch_size=patch, width=v_width,
                            layers=count("visual.transformer.resblocks."),
                            heads=max(1, v_width // head_width), mlp_ratio=v_mlp / v_width),
        text=TextConfig(context_length=state["positional_embedding"].shape[0],
                        vocab_size=state["token_embedding.weight"].shape[0], width=t_width,
                        layers=count("transformer.resblocks."), heads=max(1, t_width // head_width),
                        mlp_ratio=t_mlp / t_width),
        preprocess=PreprocessConfig(size=patch * grid),
        act=act,
        logit_bias_init=float(state["logit_bias"]) if "logit_bias" in state else None,
    )


def config_from_openclip_json(data: dict) -> ClipConfig:
    """ClipConfig from an `open_clip_config.json` (model_cfg + preprocess_cfg)."""
    cfg = data.get("model_cfg", data)
    v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    supported_v = {"image_size", "layers", "width", "patch_size", "head_width", "mlp_ratio"}
    supported_t = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}
    extra = sorted(set(v) - supported_v) + sorted(set(t) - supported_t)
    if extra:
        raise CheckpointError(f"open_clip options {extra} are not implemented natively; load this model with open_clip")
    v_width = v.get("width", 768)
    image_size = v.get("image_size", 224)
    image_size = image_size[0] if isinstance(image_size, (list, tuple)) else image_size
    pre = data.get("preprocess_cfg", {})
    defaults = PreprocessConfig()
    return ClipConfig(
        embed_dim=cfg["embed_dim"],
        vision=VisionConfig(image_size=image_size, patch_size=v.get("patch_size", 16), width=v_width,
                            layers=v.get("layers", 12), heads=v_width // v.get("head_width", 64),
                            mlp_ratio=v.get("mlp_ratio", 4.0)),
        text=TextConfig(context_length=t.get("context_length", 77), vocab_size=t.get("vocab_size", 49408),
                        width=t.get("width", 512), layers=t.get("layers", 12), heads=t.get("heads", 8),
                        mlp_ratio=t.get("mlp_ratio", 4.0)),
        preprocess=PreprocessConfig(size=image_size, mean=tuple(pre.get("mean", defaults.mean)),
                                    std=tuple(pre.get("std", defaults.std)),
                                    interpolation=pre.get("interpolation", "bicubic")),
        act="quick_gelu" if cfg.get("quick_gelu", False) else "gelu",
        logit_bias_init=cfg.get("init_logit_bias"),
    )
