"""One resolver: a model name, `hf:org/repo[@revision]`, a directory or a weights file -> an Embedder.

A name is looked up in the registry first, then among the user's exported models (folders of
`models_dir()`, $POLYMODAL_MODELS), so an export can never shadow a registered name.

Nothing here touches the network unless POLYMODAL_ALLOW_DOWNLOAD=1: a model that is not on disk
fails at once with the command that fixes it, instead of hanging on a hub timeout.

Directory layouts recognised (first match wins):
- polymodal:  polymodal_config.json (+ model.safetensors for the clip family, ONNX files for the
  onnx family, lite.safetensors [+ text/] for a fine-tuned lite)
- open_clip:  open_clip_config.json + open_clip_model.safetensors | open_clip_pytorch_model.bin
- transformers: config.json; model_type "clip" loads natively, any other dual encoder
  (SigLIP, SigLIP 2, ALIGN, ...) through the transformers backend
A single file (.pt, .pth, .bin, .safetensors) is read as an OpenAI or open_clip state dict.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from polymodal.embed.base import Embedder
from polymodal.errors import CheckpointError, InvalidInputError, ModelNotAvailableError
from polymodal.models.registry import REGISTRY, default_model_name, get_entry, user_models

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def load_embedder(spec: str | os.PathLike | None = None, *, precision: str = "fp32", seed: int = 0) -> Embedder:
    """The Embedder for `spec` (None: the default model). `precision` applies to native models."""
    spec = default_model_name() if spec is None else spec
    if isinstance(spec, os.PathLike) or os.path.exists(str(spec)):
        return load_path(Path(spec), precision=precision)
    spec = str(spec)
    if spec.startswith("hf:"):
        return load_path(hf_snapshot(spec[3:]), precision=precision, name=spec)
    if "/" in spec or spec.startswith("."):
        raise ModelNotAvailableError(f"model path {spec!r} does not exist; check the path, or use hf:{spec} for a Hugging Face repository")
    if spec not in REGISTRY and spec in (user := user_models()):
        return load_path(user[spec], precision=precision, name=spec)
    entry = get_entry(spec)  # unknown names fail here, listing registered and exported models
    if entry.source == "builtin:lite":
        from polymodal.embed.lite import LiteEmbedder

        return LiteEmbedder(precision=precision)
    if entry.source.startswith("config:"):
        return build_random(entry.source.removeprefix("config:"), name=entry.name, seed=seed, precision=precision)
    return load_path(hf_snapshot(entry.source.removeprefix("hf:")), precision=precision, name=entry.name)


# ----------------------------------------------------------------------------------------------
# Native models


def build_random(architecture: str, *, name: str | None = None, seed: int = 0, precision: str = "fp32"):
    """A native model of `architecture` with seeded random weights (for tests, demos, training)."""
    import torch

    from polymodal.embed.native import ClipEmbedder
    from polymodal.models.clip import ClipConfig, ClipModel
    from polymodal.models.tokenizer import ClipTokenizer

    config = ClipConfig.named(architecture)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ClipModel(config)
    return ClipEmbedder(model, ClipTokenizer.default(), name or f"{architecture}-random", precision=precision)


def _tokenizer_for(directory: Path):
    from polymodal.models.tokenizer import ClipTokenizer

    has_hf = (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file()
    has_bpe = any(directory.glob("bpe_simple_vocab*.txt*"))
    return ClipTokenizer.from_dir(directory) if has_hf or has_bpe else ClipTokenizer.default()


def save_embedder(embedder: Embedder, directory: str | os.PathLike) -> Path:
    """Write a native model in polymodal's layout (config JSON + safetensors + tokenizer files),
    which `load_embedder(directory)` reads back with nothing else."""
    from polymodal.embed.native import ClipEmbedder

    if not isinstance(embedder, ClipEmbedder):
        raise InvalidInputError(f"only native models can be saved in polymodal's layout, not {type(embedder).__name__}")
    directory = Path(directory)
    embedder.model.save_pretrained(directory, extra={"name": embedder.name})
    embedder.tokenizer.save(directory)
    return directory


def _native(model, directory: Path, name: str, precision: str):
    from polymodal.embed.native import ClipEmbedder

    return ClipEmbedder(model.eval(), _tokenizer_for(directory), name, precision=precision)


def load_path(path: Path, *, precision: str = "fp32", name: str | None = None) -> Embedder:
    from polymodal.models.clip import ClipModel

    if path.is_file():
        return load_state_dict_file(path, precision=precision, name=name)
    if not path.is_dir():
        raise ModelNotAvailableError(f"model path {str(path)!r} does not exist")
    if (path / ClipModel.CONFIG).is_file():
        meta = json.loads((path / ClipModel.CONFIG).read_text())
        family = meta.get("family")
        display = name or meta.get("name") or path.name
        if family == "clip":
            return _native(ClipModel.from_pretrained(path), path, display, precision)
        if family == "onnx":
            from polymodal.backends.onnx import OnnxEmbedder

            return OnnxEmbedder.from_dir(path, name=display)
        if family == "lite":
            from polymodal.embed.lite import LiteEmbedder

            return LiteEmbedder.from_dir(path, name=display, precision=precision)
        raise CheckpointError(f"{path / ClipModel.CONFIG} names an unknown model family {family!r}")
    if (path / "open_clip_config.json").is_file():
        return _load_openclip_dir(path, precision, name or path.name)
    if (path / "config.json").is_file():
        config = json.loads((path / "config.json").read_text())
        if config.get("model_type") == "clip":
            return _load_hf_clip_dir(path, config, precision, name or path.name)
        from polymodal.backends.hf import HfDualEncoder

        return HfDualEncoder.from_dir(path, name=name or path.name)
    raise CheckpointError(
        f"{path} holds no model polymodal recognises: expected polymodal_config.json, "
        f"open_clip_config.json or a Hugging Face config.json"
    )


def _read_weights(path: Path) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        # OpenAI distributes TorchScript archives; their state dict holds the same keys.
        try:
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception as exc:
            raise CheckpointError(f"{path} is neither a state dict nor a TorchScript archive: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:  # open_clip training checkpoints
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not contain a state dict")
    return state


def _load_hf_clip_dir(path: Path, config: dict, precision: str, name: str):
    from polymodal.models.clip import ClipModel
    from polymodal.models.convert import config_from_hf, from_hf_state_dict

    pre_file = path / "preprocessor_config.json"
    pre = json.loads(pre_file.read_text()) if pre_file.is_file() else None
    weights = [path / "model.safetensors", path / "pytorch_model.bin"]
    found = next((w for w in weights if w.is_file()), None)
    if found is None:
        raise CheckpointError(f"{path} has a CLIP config.json but no model.safetensors or pytorch_model.bin")
    model = ClipModel(config_from_hf(config, pre))
    model.load_checked(from_hf_state_dict(_read_weights(found)), source=str(found))
    return _native(model, path, name, precision)


def _load_openclip_dir(path: Path, precision: str, name: str):
    from polymodal.models.clip import ClipModel
    from polymodal.models.convert import config_from_openclip_json, from_openclip_state_dict

    config = config_from_openclip_json(json.loads((path / "open_clip_config.json").read_text()))
    weights = [path / "open_clip_model.safetensors", path / "open_clip_pytorch_model.bin"]
    found = next((w for w in weights if w.is_file()), None)
    if found is None:
        raise CheckpointError(f"{path} has open_clip_config.json but no open_clip_model.safetensors or open_clip_pytorch_model.bin")
    model = ClipModel(config)
    model.load_checked(from_openclip_state_dict(_read_weights(found)), source=str(found))
    return _native(model, path, name, precision)


def load_state_dict_file(path: Path, *, precision: str = "fp32", name: str | None = None,
                         act: str | None = None) -> Embedder:
    """An OpenAI or open_clip state dict file. The activation cannot be read from weights:
    OpenAI archives (recognised by their `input_resolution` entry) use QuickGELU, open_clip's own
    models GELU; pass `act` to override."""
    from polymodal.models.clip import ClipModel
    from polymodal.models.convert import (config_from_openclip_state_dict, from_openclip_state_dict,
                                          is_openclip_layout)

    if path.suffix not in WEIGHT_SUFFIXES:
        raise CheckpointError(f"{path} is not a weights file (expected one of {', '.join(WEIGHT_SUFFIXES)})")
    state = _read_weights(path)
    stripped = {k.removeprefix("module."): v for k, v in state.items()}
    if not is_openclip_layout(stripped):
        raise CheckpointError(
            f"{path} is not an OpenAI/open_clip CLIP state dict (no visual.conv1.weight); "
            f"for a Hugging Face checkpoint pass its directory (with config.json) instead"
        )
    act = act or ("quick_gelu" if "input_resolution" in stripped else "gelu")
    model = ClipModel(config_from_openclip_state_dict(stripped, act=act))
    model.load_checked(from_openclip_state_dict(stripped), source=str(path))
    return _native(model, path.parent, name or path.stem, precision)


# ----------------------------------------------------------------------------------------------
# Hugging Face cache


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home) / "hub"


def hf_snapshot(repo: str) -> Path:
    """The local snapshot directory of `org/repo[@revision]`, read from the Hugging Face cache
    layout directly (no network, no huggingface_hub needed)."""
    repo_id, _, revision = repo.partition("@")
    revision = revision or "main"
    if repo_id.count("/") != 1:
        raise InvalidInputError(f"hf:{repo} is not of the form hf:org/repo[@revision]")
    folder = hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    ref = folder / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    snapshot = folder / "snapshots" / commit
    if snapshot.is_dir():
        return snapshot
    if os.environ.get("POLYMODAL_ALLOW_DOWNLOAD") == "1":
        return _download(repo_id, revision)
    raise ModelNotAvailableError(
        f"model hf:{repo} is not in the Hugging Face cache ({hf_cache_dir()}) and polymodal does not "
        f"download unless told to. Fix: on a machine with network run `huggingface-cli download {repo_id}` "
        f"and copy the cache here, or set POLYMODAL_ALLOW_DOWNLOAD=1, or pass a local directory with --model DIR."
    )


def _download(repo_id: str, revision: str) -> Path:  # pragma: no cover - needs a network
    from polymodal.errors import require

    hub = require("huggingface_hub", "hf", "downloading a model")
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    try:
        return Path(hub.snapshot_download(repo_id, revision=revision))
    except Exception as exc:
        raise ModelNotAvailableError(f"could not download hf:{repo_id}@{revision}: {exc}") from exc
