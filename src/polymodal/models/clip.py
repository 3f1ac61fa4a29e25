"""The CLIP family of dual encoders, natively in PyTorch, read top to bottom.

Blocks first (attention, MLP, residual block), then the towers (a ViT or a small ConvNet for
images, a causal transformer for text), then the model that projects both into one space. One
implementation covers OpenAI CLIP, open_clip's CLIP variants and Hugging Face CLIP checkpoints (see
convert.py for their key layouts) and, with `logit_bias` set, SigLIP-style sigmoid scoring. The
ConvNet tower and mean-pooled text exist for training from scratch on a few hundred images
(configs/mini-conv.json); no published checkpoint uses them.

Shapes: B batch, T tokens (text: context length; image: 1 + grid*grid), C width, D embed dim.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from polymodal.errors import CheckpointError, InvalidInputError

CONFIG_DIR = Path(__file__).with_name("configs")


# ----------------------------------------------------------------------------------------------
# Configuration: architectures are data (configs/*.json), read into these dataclasses.


@dataclass
class VisionConfig:
    image_size: int = 224  # input side in pixels that the positional embeddings were trained for
    patch_size: int = 32  # side of the square patches (the conv stride)
    width: int = 768  # C, the transformer's hidden size
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0  # hidden size of the MLP is width * mlp_ratio
    type: str = "vit"  # the tower's kind; configs without it are ViTs


@dataclass
class ConvVisionConfig:
    """A small VGG-style ConvNet image tower ("type": "conv"). Its locality and translation
    equivariance learn colour and texture cues from a few hundred images, where a ViT must first
    learn them from data."""

    image_size: int = 64  # input side in pixels (any size works: the features are pooled)
    widths: tuple[int, ...] = (32, 64, 128, 256)  # channels per stage; each later stage halves H and W
    depth: int = 1  # conv3x3-GroupNorm-activation units per stage
    stem_stride: int = 1  # stride of the very first conv: 2 quarters the cost of the first stage
    groups: int = 8  # GroupNorm groups (batch-independent, no running statistics to save)
    type: str = "conv"


@dataclass
class TextConfig:
    context_length: int = 77  # T, the number of token positions
    vocab_size: int = 49408
    width: int = 512
    layers: int = 12
    heads: int = 8
    mlp_ratio: float = 4.0
    eot_token_id: int = 49407  # the text is pooled at the first occurrence of this id
    pool: str = "eot"  # "eot": the end-of-text token's state (CLIP); "mean": the mean over the tokens
    # up to it (with layers=0, a bag of words: learns from a few hundred captions)


@dataclass
class PreprocessConfig:
    """How an image becomes the tensor the image tower takes (resize shortest side, centre crop)."""

    size: int = 224
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    interpolation: str = "bicubic"  # "bicubic" | "bilinear" | "nearest"


@dataclass
class ClipConfig:
    embed_dim: int = 512  # D, the shared embedding size
    vision: VisionConfig | ConvVisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    act: str = "quick_gelu"  # OpenAI's models use x*sigmoid(1.702x); open_clip's own use "gelu"
    layer_norm_eps: float = 1e-5
    logit_scale_init: float = math.log(1 / 0.07)  # the learnable temperature, stored as its log
    logit_bias_init: float | None = None  # set (e.g. -10) for SigLIP-style sigmoid scoring

    @property
    def scoring(self) -> str:
        return "softmax" if self.logit_bias_init is None else "sigmoid"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ClipConfig":
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise CheckpointError(f"unknown CLIP config fields {sorted(unknown)}; known: {sorted(known)}")
        parts = {"vision": VisionConfig, "text": TextConfig, "preprocess": PreprocessConfig}
        for key, kind in parts.items():
            if key in data:
                sub = dict(data[key])
                if key == "vision":
                    kind = _vision_kind(sub.get("type", "vit"))
                for name in ("mean", "std", "widths"):  # JSON lists back to the tuples the fields hold
                    if name in sub:
                        sub[name] = tuple(sub[name])
                known = {f.name for f in fields(kind)}
                if set(sub) - known:
                    raise CheckpointError(f"unknown {key} config fields {sorted(set(sub) - known)}; known: {sorted(known)}")
                data[key] = kind(**sub)
        return cls(**data)

    @classmethod
    def named(cls, name: str) -> "ClipConfig":
        """The architecture `name` from configs/NAME.json (ViT-B-32, ViT-B-16, ViT-L-14, tiny-test)."""
        path = CONFIG_DIR / f"{name}.json"
        if not path.is_file():
            known = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
            raise InvalidInputError(f"unknown architecture {name!r}; known: {', '.join(known)}")
        data = json.loads(path.read_text())
        data.pop("_comment", None)
        return cls.from_dict(data)


def _vision_kind(name: str):
    kinds = {"vit": VisionConfig, "conv": ConvVisionConfig}
    if name not in kinds:
        raise CheckpointError(f"unknown vision tower type {name!r}; known: {', '.join(kinds)}")
    return kinds[name]


# ----------------------------------------------------------------------------------------------
# Blocks


class QuickGELU(nn.Module):
    """OpenAI's sigmoid approximation of GELU; their checkpoints were trained with it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def make_activation(name: str) -> nn.Module:
    if name == "quick_gelu":
        return QuickGELU()
    if name == "gelu":
        return nn.GELU()
    raise CheckpointError(f"unknown activation {name!r}; use 'quick_gelu' or 'gelu'")


class Attention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection (the layout OpenAI ships)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise CheckpointError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        B, T, C = x.shape
        # (B, T, 3C) -> three (B, heads, T, C/heads)
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int, act: str):
        super().__init__()
        self.fc = nn.Linear(width, hidden)
        self.act = make_activation(act)
        self.proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))


class ResidualBlock(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, act: str, eps: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=eps)
        self.mlp = MLP(width, int(width * mlp_ratio), act)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal)
        return x + self.mlp(self.ln_2(x))


# ----------------------------------------------------------------------------------------------
# Towers


class VisionTransformer(nn.Module):
    """ViT image tower: patches -> [class] + patch tokens -> blocks -> class token -> projection."""

    def __init__(self, cfg: VisionConfig, embed_dim: int, act: str, eps: float):
        super().__init__()
        self.patch_size, self.grid = cfg.patch_size, cfg.image_size // cfg.patch_size
        self.patch_embed = nn.Conv2d(3, cfg.width, cfg.patch_size, cfg.patch_size, bias=False)
        scale = cfg.width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(cfg.width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(1 + self.grid**2, cfg.width))
        self.ln_pre = nn.LayerNorm(cfg.width, eps=eps)
        self.blocks = nn.ModuleList(
            ResidualBlock(cfg.width, cfg.heads, cfg.mlp_ratio, act, eps) for _ in range(cfg.layers)
        )
        self.ln_post = nn.LayerNorm(cfg.width, eps=eps)
        self.proj = nn.Linear(cfg.width, embed_dim, bias=False)

    def positions(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Positional embeddings for a grid_h x grid_w patch grid, bicubic-interpolated from the
        trained grid when the input size differs (as transformers and timm do)."""
        if (grid_h, grid_w) == (self.grid, self.grid):
            return self.positional_embedding
        cls_pos, patch_pos = self.positional_embedding[:1], self.positional_embedding[1:]
        C = patch_pos.shape[-1]
        patch_pos = patch_pos.reshape(1, self.grid, self.grid, C).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, patch_pos.permute(0, 2, 3, 1).reshape(-1, C)])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels)  # (B, C, grid_h, grid_w)
        B, C, gh, gw = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, gh*gw, C)
        x = torch.cat([self.class_embedding.expand(B, 1, C).to(x.dtype), x], dim=1)
        x = self.ln_pre(x + self.positions(gh, gw).to(x.dtype))
        for block in self.blocks:
            x = block(x)
        return self.proj(self.ln_post(x[:, 0]))  # (B, D)


class ConvTower(nn.Module):
    """ConvNet image tower: stages of conv3x3-GroupNorm-act (2x2 max pool between stages; the
    first conv may stride) -> global average pool -> LayerNorm -> projection."""

    def __init__(self, cfg: ConvVisionConfig, embed_dim: int, act: str, eps: float):
        super().__init__()
        if not cfg.widths or cfg.depth < 1 or any(w % cfg.groups for w in cfg.widths):
            raise CheckpointError(f"conv tower needs widths divisible by groups={cfg.groups} and depth >= 1, "
                                  f"got widths {list(cfg.widths)}, depth {cfg.depth}")
        layers: list[nn.Module] = []
        channels = 3
        for i, width in enumerate(cfg.widths):
            if i:
                layers.append(nn.MaxPool2d(2))  # (B, C, H, W) -> (B, C, H/2, W/2)
            for j in range(cfg.depth):
                stride = cfg.stem_stride if i == j == 0 else 1
                # no conv bias: GroupNorm's shift replaces it
                layers += [nn.Conv2d(channels, width, 3, stride=stride, padding=1, bias=False),
                           nn.GroupNorm(cfg.groups, width, eps=eps), make_activation(act)]
                channels = width
        self.stages = nn.Sequential(*layers)
        self.ln_post = nn.LayerNorm(channels, eps=eps)
        self.proj = nn.Linear(channels, embed_dim, bias=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.stages(pixels)  # (B, C, H / 2^(stages-1), W / 2^(stages-1))
        return self.proj(self.ln_post(x.mean(dim=(2, 3))))  # (B, D)


def make_vision_tower(cfg: VisionConfig | ConvVisionConfig, embed_dim: int, act: str, eps: float) -> nn.Module:
    if isinstance(cfg, ConvVisionConfig):
        return ConvTower(cfg, embed_dim, act, eps)
    return VisionTransformer(cfg, embed_dim, act, eps)


class TextTransformer(nn.Module):
    """Causal text tower: tokens -> blocks (causal) -> the end-of-text token (or the mean of the
    tokens up to it) -> projection.

    The causal mask lets padding after the end-of-text token be ignored without an attention mask.
    """

    def __init__(self, cfg: TextConfig, embed_dim: int, act: str, eps: float):
        super().__init__()
        if cfg.pool not in ("eot", "mean"):
            raise CheckpointError(f"unknown text pooling {cfg.pool!r}; use 'eot' or 'mean'")
        self.context_length, self.eot_token_id, self.pool = cfg.context_length, cfg.eot_token_id, cfg.pool
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(cfg.context_length, cfg.width))
        self.blocks = nn.ModuleList(
            ResidualBlock(cfg.width, cfg.heads, cfg.mlp_ratio, act, eps) for _ in range(cfg.layers)
        )
        self.ln_final = nn.LayerNorm(cfg.width, eps=eps)
        self.proj = nn.Linear(cfg.width, embed_dim, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        B, T = ids.shape
        if T > self.context_length:
            raise InvalidInputError(f"token ids have length {T}, the model takes at most {self.context_length}")
        x = self.token_embedding(ids) + self.positional_embedding[:T]  # (B, T, C)
        for block in self.blocks:
            x = block(x, causal=True)
        x = self.ln_final(x)
        # First end-of-text position per row; argmax returns the first maximum of the boolean mask.
        eot = (ids == self.eot_token_id).int().argmax(dim=-1)  # (B,)
        if self.pool == "mean":
            keep = (torch.arange(T, device=ids.device) <= eot[:, None]).to(x.dtype)  # (B, T): start .. end-of-text
            return self.proj((x * keep[..., None]).sum(1) / keep.sum(1, keepdim=True))  # (B, D)
        return self.proj(x[torch.arange(B), eot])  # (B, D)


# ----------------------------------------------------------------------------------------------
# Model


class ClipModel(nn.Module):
    """Image and text towers projected into one D-dimensional space, with a learnable temperature
    (and, for sigmoid scoring, a learnable bias)."""

    WEIGHTS = "model.safetensors"
    CONFIG = "polymodal_config.json"

    def __init__(self, config: ClipConfig):
        super().__init__()
        self.config = config
        eps, act = config.layer_norm_eps, config.act
        self.visual = make_vision_tower(config.vision, config.embed_dim, act, eps)
        self.textual = TextTransformer(config.text, config.embed_dim, act, eps)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)))
        bias = config.logit_bias_init
        self.logit_bias = None if bias is None else nn.Parameter(torch.tensor(float(bias)))

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, 3, H, W) normalised pixels -> (B, D)."""
        x = self.visual(pixels)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, ids: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, T) token ids -> (B, D)."""
        x = self.textual(ids)
        return F.normalize(x, dim=-1) if normalize else x

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor):
        """Unit image features, unit text features and the exponentiated scale (and bias or None),
        which is what the losses in losses.py take."""
        return self.encode_image(pixels), self.encode_text(ids), self.logit_scale.exp(), self.logit_bias

    # -- save / load: config JSON + safetensors, enough to load offline --------------------------

    def save_pretrained(self, directory: str | Path, extra: dict | None = None) -> Path:
        """Write polymodal_config.json and model.safetensors. `extra` is merged into the JSON
        (the resolver stores the model's display name and tokenizer location there)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"family": "clip", "config": self.config.to_dict(), **(extra or {})}
        (directory / self.CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / self.WEIGHTS))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "ClipModel":
        from safetensors.torch import load_file

        directory = Path(directory)
        meta = json.loads((directory / cls.CONFIG).read_text())
        model = cls(ClipConfig.from_dict(meta["config"]))
        model.load_checked(load_file(str(directory / cls.WEIGHTS)), source=str(directory))
        return model.eval()

    def load_checked(self, state: dict[str, torch.Tensor], source: str) -> None:
        """load_state_dict that names every missing, unexpected or mis-shaped key."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = [f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
                  if k in state and state[k].shape != v.shape]
        if missing or unexpected or shapes:
            parts = [f"missing {missing[:8]}" if missing else "", f"unexpected {unexpected[:8]}" if unexpected else "",
                     f"wrong shapes {shapes[:8]}" if shapes else ""]
            raise CheckpointError(
                f"weights in {source} do not fit the architecture: " + "; ".join(p for p in parts if p)
                + ". Check that the config matches the checkpoint."
            )
        self.load_state_dict(state)
