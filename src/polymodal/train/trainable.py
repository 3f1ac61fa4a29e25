"""Models in a trainable form: which parameters learn, the inputs a batch becomes, and the export.

`build_trainable(model, mode=...)` wraps a native CLIP-family model (any name, `hf:` id or folder
the resolver accepts, or `scratch:ARCH` for new random weights from models/configs/ARCH.json) or
the offline default `lite` into a `Trainable`: one nn.Module with the same interface for both
families, so a training loop never branches on the model type.

Which parameters get requires_grad (the rest is frozen; frozen parts with BatchNorm or dropout
stay in eval mode whatever train() says):

  mode        native CLIP                               lite (image backbone always frozen: ConSE
                                                        needs its ImageNet classifier as it is)
  full        every parameter                           head, mix weights, scale (+bias), MiniLM
                                                        (all but its pooler, which mean pooling
                                                        never uses)
  lit         the text tower + scale (+bias); the       head, mix weights, scale (+bias)
              image tower is locked (LiT)
  projection  visual.proj, textual.proj, scale (+bias)  head, mix weights, scale (+bias)
  lora        LoRA adapters (peft) on every block's     head, mix weights, scale (+bias), LoRA
              attn.qkv/out and mlp.fc/proj; the two     adapters on MiniLM's query/key/value and
              projections in full, scale (+bias)        dense layers (encoder blocks)

The bias is trained only with the sigmoid objective ("siglip"); with "clip" it stays frozen (the
softmax loss does not use it, and DistributedDataParallel refuses parameters without gradients).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from polymodal.embed.base import Embedder
from polymodal.errors import InvalidInputError, require
from polymodal.models.clip import ClipConfig, ClipModel
from polymodal.models.minilm import MiniLMEncoder
from polymodal.models.preprocess import ImageTransform

MODES = ("full", "lit", "projection", "lora")
OBJECTIVES = ("clip", "siglip")
SIGLIP_BIAS_INIT = -10.0  # Zhai et al. 2023: with a bias of -10 the loss starts near its prior
SIGLIP_SCALE_INIT = math.log(10.0)  # (scale 10); only applied to models trained from scratch

# peft matches a string target with re.fullmatch against each module's qualified name.
CLIP_LORA_TARGETS = r"(visual|textual)\.blocks\.\d+\.(attn\.(qkv|out)|mlp\.(fc|proj))"
MINILM_LORA_TARGETS = r"encoder\.layer\.\d+\.(attention\.(self\.(query|key|value)|output\.dense)|intermediate\.dense|output\.dense)"


def _choice(what: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidInputError(f"{what} {value!r} is not one of {', '.join(choices)}")
    return value


def add_lora(module: nn.Module, targets: str, rank: int, alpha: int, seed: int) -> None:
    """Inject peft LoRA adapters (in place, the module keeps its class and forward) into the
    linear layers whose names fully match `targets`. B starts at zero, so the output is unchanged."""
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise InvalidInputError(f"lora_rank must be a positive integer, got {rank!r}")
    peft = require("peft", "train", "LoRA fine-tuning")
    if not any(re.fullmatch(targets, name) for name, _ in module.named_modules()):
        # e.g. a ConvNet image tower with a bag-of-words text tower: no attention or MLP layers
        raise InvalidInputError("this model has no transformer layers for LoRA adapters; train it with "
                                "--mode full, lit or projection instead")
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets, bias="none")
    with torch.random.fork_rng():  # A's random init, reproducible from the seed
        torch.manual_seed(seed)
        peft.inject_adapter_in_model(config, module)


class Trainable(nn.Module):
    """A dual encoder ready for contrastive training (see the module docstring for the modes).

    Attributes: name, dim, image_size and interpolation (what the data loader crops to), mode, and
    objective_default ("clip" or "siglip": what it was built to be trained with)."""

    name: str
    dim: int
    image_size: int
    interpolation: str
    objective_default: str
    mode: str

    def _frozen_modules(self) -> list[nn.Module]:
        """Submodules that stay in eval mode whatever train() says (frozen BatchNorm, dropout)."""
        return []

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def _freeze_except(self, keep) -> None:
        for name, p in self.named_parameters():
            p.requires_grad_(bool(keep(name)))

    def trainable_names(self) -> list[str]:
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The parameters training changes, detached (not copied, as nn.Module.state_dict)."""
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load what trainable_state_dict() gave, naming every missing, unexpected or mis-shaped key."""
        from polymodal.errors import CheckpointError

        own = {n: p for n, p in self.named_parameters() if p.requires_grad}
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        shapes = [f"{k}: {tuple(state[k].shape)} != {tuple(p.shape)}" for k, p in own.items()
                  if k in state and state[k].shape != p.shape]
        if missing or unexpected or shapes:
            raise CheckpointError(
                f"trainable state does not fit {self.name} (mode {self.mode}): missing {missing[:8]}, "
                f"unexpected {unexpected[:8]}, wrong shapes {shapes[:8]}; was it saved from the same model and mode?"
            )
        with torch.no_grad():
            for key, p in own.items():
                p.copy_(state[key])

    def _check_pixels(self, pixels) -> torch.Tensor:
        pixels = torch.as_tensor(pixels)
        S = self.image_size
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (S, S, 3) or pixels.dtype != torch.uint8:
            raise InvalidInputError(
                f"pixels must be a uint8 tensor (B, {S}, {S}, 3) for {self.name}, got {pixels.dtype} "
                f"{tuple(pixels.shape)}: crop images to image_size={S} (polymodal.train.data does)"
            )
        return pixels.cpu()

    @staticmethod
    def _check_captions(captions) -> list[str]:
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions) or not captions:
            raise InvalidInputError("captions must be a non-empty list of strings")
        return list(captions)


# ----------------------------------------------------------------------------------------------
# Native CLIP family


class ClipTrainable(Trainable):
    """A native ClipModel (models/clip.py) with its CLIP BPE tokenizer."""

    def __init__(self, model: ClipModel, tokenizer, name: str, *, mode: str, objective: str | None,
                 lora_rank: int = 8, lora_alpha: int = 16, seed: int = 0):
        super().__init__()
        self.model, self.tokenizer, self.name, self.mode = model, tokenizer, name, mode
        if objective == "siglip" and model.logit_bias is None:
            # A pretrained model keeps its learnt scale and gains a bias at SigLIP's init.
            model.logit_bias = nn.Parameter(torch.tensor(SIGLIP_BIAS_INIT))
            model.config = replace(model.config, logit_bias_init=SIGLIP_BIAS_INIT)
        cfg = model.config
        self.objective_default = objective or ("siglip" if model.logit_bias is not None else "clip")
        self.dim, self.image_size, self.interpolation = cfg.embed_dim, cfg.preprocess.size, cfg.preprocess.interpolation
        self.transform = ImageTransform(cfg.preprocess)
        if mode == "lora":
            add_lora(model, CLIP_LORA_TARGETS, lora_rank, lora_alpha, seed)
        projections = {"model.visual.proj.weight", "model.textual.proj.weight"}
        scalars = {"model.logit_scale"} | ({"model.logit_bias"} if self.objective_default == "siglip" else set())
        keep = {
            "full": lambda n: True,
            "lit": lambda n: n.startswith("model.textual."),
            "projection": lambda n: n in projections,
            "lora": lambda n: n in projections or ".lora_" in n,
        }[mode]
        self._freeze_except(lambda n: n in scalars or (n != "model.logit_bias" and keep(n)))
        self._embedder = None

    def image_inputs(self, pixels_uint8: torch.Tensor, sizes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """(B, S, S, 3) uint8 crops -> {"pixels": (B, 3, S, S) normalised}; `sizes` is unused here."""
        return {"pixels": self.transform.normalize(self._check_pixels(pixels_uint8).numpy())}

    def text_inputs(self, captions: list[str]) -> dict[str, torch.Tensor]:
        """Captions -> {"ids": (B, T) token ids}, T cut after the longest caption's end-of-text
        (causal attention and end-of-text pooling make the padding after it irrelevant)."""
        tok = self.tokenizer(self._check_captions(captions), context_length=self.model.config.text.context_length)
        length = int((tok.ids == self.tokenizer.eot_token_id).argmax(axis=1).max()) + 1
        return {"ids": torch.from_numpy(tok.ids[:, :length])}

    def forward(self, image_inputs: dict, text_inputs: dict):
        """-> (B, D) unit image features, (B, D) unit text features, exp(scale), bias or None."""
        return self.model(image_inputs["pixels"], text_inputs["ids"])

    def embedder(self) -> Embedder:
        """A ClipEmbedder over the live model. The weights are shared; the scale and bias are
        copied, and re-read on every call (or by the embedder's refresh_scale())."""
        from polymodal.embed.native import ClipEmbedder

        if self._embedder is None:
            training = self.model.training
            self._embedder = ClipEmbedder(self.model, self.tokenizer, self.name)  # (it calls model.eval())
            self.model.train(training)
        self._embedder.refresh_scale()
        return self._embedder

    def export(self, directory: str | Path, name: str) -> Path:
        """A polymodal model folder (config JSON, safetensors, tokenizer) with LoRA merged."""
        from polymodal.train.export import merged_state_dict

        directory = Path(directory)
        model = ClipModel(self.model.config)
        model.load_checked(merged_state_dict(self.model), source=f"the trained {self.name}")
        model.save_pretrained(directory, extra={"name": name, "trained_from": self.name, "mode": self.mode})
        self.tokenizer.save(directory)
        return directory


# ----------------------------------------------------------------------------------------------
# lite


class _LiveMiniLM(MiniLMEncoder):
    """MiniLMEncoder over the live (possibly LoRA-wrapped) text model, run in eval mode so that
    dropout never reaches an evaluation made in the middle of training."""

    def __init__(self, tokenizer, model: nn.Module):  # shares, instead of loading from disk
        self.tokenizer, self.model = tokenizer, model

    def __call__(self, texts: list[str]):
        training = self.model.training
        self.model.eval()
        try:
            return super().__call__(texts)
        finally:
            self.model.train(training)


class LiteTrainable(Trainable):
    """lite (models/lite.py) with a learnable head, mix weights and scale, and optionally MiniLM.

    Text features are MiniLM's token states mean-pooled over the attention mask and L2-normalised,
    as MiniLMEncoder computes them (models/minilm.py), with gradients. ConSE's class-text
    embeddings stay those of the original MiniLM: they are part of the (frozen) image side, and a
    fine-tuned text tower learns to meet them."""

    def __init__(self, embedder, *, mode: str, objective: str | None, lora_rank: int = 8, lora_alpha: int = 16,
                 seed: int = 0):
        from polymodal.models.efficientnet_lite import FEATURE_DIM
        from polymodal.models.minilm import DIM

        super().__init__()
        self.name, self.mode, self.dim = embedder.name, mode, DIM
        self.tower, self.text, self.tokenizer = embedder.tower, embedder.text.model, embedder.text.tokenizer
        cfg = self.tower.config
        self.image_size, self.interpolation = cfg.image_size, embedder.transform.cfg.interpolation
        if self.tower.head is None:  # a lite without a head gets a seeded one, with mix 0 at first
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                self.tower.head = nn.Linear(FEATURE_DIM, DIM)
        self.tower.mix_weights = nn.Parameter(torch.tensor([cfg.mix, cfg.mix_low_res], dtype=torch.float32))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(cfg.logit_scale)))
        bias = cfg.logit_bias if cfg.logit_bias is not None else (SIGLIP_BIAS_INIT if objective == "siglip" else None)
        self.logit_bias = None if bias is None else nn.Parameter(torch.tensor(float(bias)))
        self.objective_default = objective or ("siglip" if self.logit_bias is not None else "clip")
        if mode == "lora":
            add_lora(self.text, MINILM_LORA_TARGETS, lora_rank, lora_alpha, seed)
        always = {"tower.head.weight", "tower.head.bias", "tower.mix_weights", "logit_scale"}
        if self.objective_default == "siglip":
            always.add("logit_bias")
        keep = {
            "full": lambda n: n.startswith("text.") and not n.startswith("text.pooler."),
            "lit": lambda n: False,
            "projection": lambda n: False,
            "lora": lambda n: ".lora_" in n,
        }[mode]
        self._freeze_except(lambda n: n in always or keep(n))
        self.text_trained = any(p.requires_grad for p in self.text.parameters())
        embedder.text = _LiveMiniLM(self.tokenizer, self.text)
        self._embedder = embedder
        self.train()

    def _frozen_modules(self) -> list[nn.Module]:
        return [self.tower.backbone] + ([] if self.text_trained else [self.text])

    def image_inputs(self, pixels_uint8: torch.Tensor, sizes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """(B, 224, 224, 3) uint8 crops and (B, 2) original (w, h) -> normalised pixels and the
        low-resolution flags (shorter side under LOW_RES_SIDE, as LiteEmbedder decides)."""
        from polymodal.models.lite import LOW_RES_SIDE

        pixels = self._check_pixels(pixels_uint8)
        if sizes is None or tuple(torch.as_tensor(sizes).shape) != (pixels.shape[0], 2):
            raise InvalidInputError(
                f"lite needs the images' original sizes: a (B, 2) tensor of (width, height) for B={pixels.shape[0]}, "
                f"got {None if sizes is None else tuple(torch.as_tensor(sizes).shape)}"
            )
        pixels = self._embedder.transform.normalize(pixels.numpy())  # (B, 3, 224, 224)
        low_res = torch.as_tensor(sizes).min(dim=1).values < LOW_RES_SIDE  # (B,) bool
        return {"pixels": pixels.contiguous(memory_format=torch.channels_last), "low_res": low_res}

    def text_inputs(self, captions: list[str]) -> dict[str, torch.Tensor]:
        from polymodal.models.minilm import MAX_TOKENS

        batch = self.tokenizer(self._check_captions(captions), padding=True, truncation=True, max_length=MAX_TOKENS,
                               return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def _features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) -> (B, 1280) pooled backbone features, without gradients (the backbone
        is frozen), in ONNX Runtime when the embedder has a session (about 3x PyTorch eager)."""
        with torch.no_grad():
            if self._embedder.backbone_session is not None:
                return self._embedder._ort_features(pixels)
            return self.tower.backbone.forward_features(pixels)

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.text_trained):
            states = self.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, 384)
            mask = attention_mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
            mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, 384)
            return F.normalize(mean.float(), dim=-1)

    def forward(self, image_inputs: dict, text_inputs: dict):
        """-> (B, 384) unit image features, (B, 384) unit text features, exp(scale), bias or None."""
        images = self.tower(image_inputs["pixels"], image_inputs["low_res"], self._features)
        texts = self.encode_texts(text_inputs["input_ids"], text_inputs["attention_mask"])
        return images, texts, self.logit_scale.exp(), self.logit_bias

    def _config(self):
        """The lite config as training has made it (mix weights, scale, bias)."""
        mix, mix_low_res = (float(x) for x in self.tower.mix_weights.detach())
        bias = None if self.logit_bias is None else float(self.logit_bias.detach())
        return replace(self.tower.config, mix=mix, mix_low_res=mix_low_res,
                       logit_scale=float(self.logit_scale.detach().exp()), logit_bias=bias)

    def embedder(self) -> Embedder:
        """The LiteEmbedder sharing this model's tower, mix weights and MiniLM. The scale and
        bias are copied into it, and re-read on every call: call embedder() again after steps."""
        emb, cfg = self._embedder, self._config()
        emb.logit_scale, emb.logit_bias = cfg.logit_scale, cfg.logit_bias
        emb.scoring = "softmax" if cfg.logit_bias is None else "sigmoid"
        return emb

    def export(self, directory: str | Path, name: str) -> Path:
        """A lite folder: polymodal_config.json (family "lite"), the alignment file, and MiniLM's
        weights (LoRA merged) and tokenizer in text/ when the text tower was trained."""
        from polymodal.embed.lite import LITE_TEXT_DIR, LITE_WEIGHTS
        from polymodal.models.lite import save_alignment

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_alignment(self.tower, directory / LITE_WEIGHTS, self._config(), {"trained_from": self.name, "mode": self.mode})
        if self.text_trained:
            self._export_text(directory / LITE_TEXT_DIR)
        meta = {"family": "lite", "name": name, "weights": LITE_WEIGHTS, "trained_from": self.name, "mode": self.mode}
        (directory / ClipModel.CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    def _export_text(self, directory: Path) -> None:
        transformers = require("transformers", "hf", "exporting the MiniLM text tower")
        from polymodal.train.export import merged_state_dict

        plain = transformers.AutoModel.from_config(self.text.config)
        plain.load_state_dict(merged_state_dict(self.text), strict=True)
        plain.save_pretrained(str(directory))
        self.tokenizer.save_pretrained(str(directory))


# ----------------------------------------------------------------------------------------------


def build_trainable(model: str, *, mode: str = "full", objective: str | None = None, lora_rank: int = 8,
                    lora_alpha: int = 16, seed: int = 0) -> Trainable:
    """A Trainable for `model`: a name, `hf:` id or folder of a native CLIP-family model, `lite`
    (or an exported fine-tuned lite), or `scratch:ARCH` (random weights, seeded, of
    models/configs/ARCH.json, e.g. scratch:small).

    objective: None keeps the model's own ("siglip" if it has a logit bias, else "clip").
    "siglip" on a model without a bias adds one at SigLIP's init, -10; the temperature is set to
    SigLIP's init, scale 10, only for a model from scratch: a pretrained model keeps its own."""
    _choice("mode", mode, MODES)
    if objective is not None:
        _choice("objective", objective, OBJECTIVES)
    options = dict(mode=mode, objective=objective, lora_rank=lora_rank, lora_alpha=lora_alpha, seed=seed)
    if isinstance(model, str) and model.startswith("scratch:"):
        from polymodal.models.tokenizer import ClipTokenizer

        config = ClipConfig.named(model.removeprefix("scratch:"))
        if objective == "siglip":
            config = replace(config, logit_scale_init=SIGLIP_SCALE_INIT, logit_bias_init=SIGLIP_BIAS_INIT)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            clip = ClipModel(config)
        return ClipTrainable(clip, ClipTokenizer.default(), model, **options)

    from polymodal.embed.lite import LiteEmbedder
    from polymodal.embed.native import ClipEmbedder
    from polymodal.embed.resolve import load_embedder

    embedder = load_embedder(model, seed=seed)
    if isinstance(embedder, LiteEmbedder):
        return LiteTrainable(embedder, **options)
    if isinstance(embedder, ClipEmbedder):
        return ClipTrainable(embedder.model.train(), embedder.tokenizer, embedder.name, **options)
    raise InvalidInputError(
        f"{model!r} loads as {type(embedder).__name__}, which polymodal cannot train: use a native "
        f"CLIP-family model (a registry name, hf:org/repo of a CLIP checkpoint, a folder), lite, or scratch:ARCH"
    )
