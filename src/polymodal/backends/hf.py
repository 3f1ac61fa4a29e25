"""The transformers backend: any Hugging Face dual encoder polymodal does not implement natively.

A directory saved by transformers (config.json + weights + tokenizer + image processor) whose
model exposes `get_image_features` and `get_text_features` through `AutoModel`: SigLIP, SigLIP 2,
ALIGN and other CLIP-like models. Everything that differs between them is read from the model:

- scoring: "sigmoid" when the model has a `logit_bias` (the SigLIP family), else "softmax";
- logit_scale: `exp(model.logit_scale)`, or `1 / model.temperature` for ALIGN, whose logits are
  `features / temperature`;
- dim: the projection size from the config (checked against the first batch);
- text inputs: what transformers' own pipeline and processors do. The SigLIP text tower pools the
  last position and was trained on texts padded to the full context (64 tokens), so SigLIP-family
  texts are padded to `max_length`; processors that declare default text kwargs (SigLIP 2, ALIGN:
  `padding="max_length", max_length=64`) are followed; other models pad to the longest text.
  Whatever the tokenizer returns (input_ids, attention_mask, token_type_ids, per its
  `model_input_names`) is passed to the model, as the pipeline does.

Images are run through the checkpoint's own image processor one at a time in polymodal's worker
threads (`_prepare_image`), so resizing overlaps with the forward pass; the batch is stacked.
"""

from __future__ import annotations

import inspect
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.embed.base import Embedder
from polymodal.errors import BackendUnavailableError, CheckpointError, require

#: the context SigLIP was trained with; transformers' zero-shot pipeline pads SigLIP texts to it
SIGLIP_CONTEXT = 64
#: tokenizers without a declared maximum report this huge sentinel as `model_max_length`
_UNSET_MAX = 1_000_000


def _optional_dependency(exc: ImportError, purpose: str):
    """An ImportError raised inside transformers for a missing tokenizer dependency, as the
    BackendUnavailableError that names the pip command; None when it is something else."""
    text = str(exc).lower()
    for package in ("sentencepiece", "protobuf", "tiktoken"):
        if package in text:
            return BackendUnavailableError(package, "hf", purpose)
    return None


def _accepted_inputs(method) -> set[str] | None:
    """The named parameters of a model method (None when it cannot be inspected)."""
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins / odd wrappers
        return None
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named or None  # a bare (*args, **kwargs) wrapper: pass everything


def _feature_tensor(out, what: str):
    """`get_*_features` returns a tensor (transformers 4) or an output object whose
    `pooler_output` holds the projected features (transformers 5)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    raise CheckpointError(
        f"the model's get_{what}_features returned a {type(out).__name__} with no pooler_output tensor; "
        f"it is not a dual encoder polymodal can use"
    )


def _processor_class(model_type: str):
    """The transformers processor class registered for `model_type`, or None."""
    try:
        import transformers
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES
    except ImportError:  # pragma: no cover - very old transformers
        return None
    name = PROCESSOR_MAPPING_NAMES.get(model_type)
    if not isinstance(name, str):
        return None
    try:
        return getattr(transformers, name)
    except Exception:  # a processor whose optional dependencies are missing
        return None


class HfDualEncoder(Embedder):
    """A Hugging Face dual encoder run through transformers.

    Build it with `HfDualEncoder.from_dir(directory)` (what `polymodal.load(directory)` does for a
    transformers checkpoint that is not a CLIP), or directly from loaded transformers objects.

    fast_decode: decode JPEGs at reduced scale (PIL draft) when they are over twice the processor's
    input size. Off by default so that embeddings match transformers' own pipeline exactly.
    """

    def __init__(self, model, tokenizer, image_processor, name: str, *, fast_decode: bool = False):
        import torch

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.name = name
        self.fast_decode = fast_decode
        config = model.config
        self.model_type = str(getattr(config, "model_type", "") or "")
        for method in ("get_image_features", "get_text_features"):
            if not callable(getattr(model, method, None)):
                raise CheckpointError(
                    f"{name}: {type(model).__name__} has no {method}; it is not an image-text dual encoder"
                )
        self.refresh_scale()
        self.dim = self._config_dim(config)
        self._dim_checked = {"image": False, "text": False}
        self._image_inputs = _accepted_inputs(model.get_image_features)
        self._text_inputs = _accepted_inputs(model.get_text_features)
        self._dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        self.text_kwargs = self._text_kwargs()
        self.context_length = self.text_kwargs["max_length"]

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def from_dir(cls, path: str | os.PathLike, name: str | None = None, *, fast_decode: bool = False) -> "HfDualEncoder":
        """Load model, tokenizer and image processor from one transformers directory (offline)."""
        transformers = require("transformers", "hf", "the transformers backend")
        import torch

        path = Path(path)
        name = name or path.name
        try:
            config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path}/config.json is not a configuration transformers can read: {exc}") from exc
        model_cls = cls._model_class(config, path)
        missing = [m for m in ("get_image_features", "get_text_features") if not callable(getattr(model_cls, m, None))]
        if missing:
            raise CheckpointError(
                f"{path} holds a {model_cls.__name__} (model_type {config.model_type!r}), which has no "
                f"{' and no '.join(missing)}: it is not an image-text dual encoder. polymodal's transformers "
                f"backend takes models such as SigLIP, SigLIP 2 or ALIGN"
            )
        try:
            with _quiet_progress():
                model = model_cls.from_pretrained(path, local_files_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path}: transformers could not load the {model_cls.__name__} weights: {exc}") from exc
        floating = {p.dtype for p in model.parameters() if p.is_floating_point()}
        if floating and floating != {torch.float32}:
            # bf16/fp16 checkpoints: CPU inference in float32 (exact upcast; fast and accurate on CPU)
            model = model.float()
        tokenizer = cls._load_tokenizer(transformers, path)
        image_processor = cls._load_image_processor(transformers, path)
        return cls(model, tokenizer, image_processor, name, fast_decode=fast_decode)

    @staticmethod
    def _model_class(config, path: Path):
        from transformers import AutoModel

        mapping = getattr(AutoModel, "_model_mapping", None)
        try:
            return mapping[type(config)]
        except Exception as exc:
            raise CheckpointError(
                f"{path}: transformers has no AutoModel for model_type {getattr(config, 'model_type', None)!r} "
                f"({type(config).__name__}); models that need trust_remote_code are not loaded"
            ) from exc

    @staticmethod
    def _load_tokenizer(transformers, path: Path):
        try:
            return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        except ImportError as exc:
            error = _optional_dependency(exc, f"the tokenizer of {path}")
            if error is None:
                raise
            raise error from exc
        except Exception as exc:
            raise CheckpointError(
                f"{path}: no tokenizer transformers can load (expected tokenizer.json, or tokenizer_config.json "
                f"with its vocabulary files such as spiece.model or vocab.txt): {exc}"
            ) from exc

    @staticmethod
    def _load_image_processor(transformers, path: Path):
        try:
            return transformers.AutoImageProcessor.from_pretrained(path, local_files_only=True)
        except Exception as first:
            try:  # a processor_config.json that nests the image processor
                processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
            except Exception:
                processor = None
            image_processor = getattr(processor, "image_processor", None)
            if image_processor is None:
                raise CheckpointError(
                    f"{path}: no image processor transformers can load (expected preprocessor_config.json): {first}"
                ) from first
            return image_processor

    # -- what the model declares ------------------------------------------------------------------

    def refresh_scale(self) -> None:
        """Read scoring, temperature and bias from the model (again, after training changes them)."""
        model = self.model
        scale = getattr(model, "logit_scale", None)
        temperature = getattr(model, "temperature", None)
        if scale is not None:
            self.logit_scale = float(np.exp(float(_scalar(scale))))
        elif temperature is not None:  # ALIGN: logits = features / temperature
            self.logit_scale = 1.0 / float(_scalar(temperature))
        else:
            raise CheckpointError(
                f"{self.name}: {type(model).__name__} has neither a logit_scale nor a temperature, so its "
                f"image-text scores cannot be computed"
            )
        bias = getattr(model, "logit_bias", None)
        self.logit_bias = None if bias is None else float(_scalar(bias))
        self.scoring = "sigmoid" if self.logit_bias is not None else "softmax"

    @staticmethod
    def _config_dim(config) -> int:
        text = getattr(config, "text_config", None)
        candidates = (
            getattr(config, "projection_dim", None),
            getattr(text, "projection_size", None),
            getattr(text, "projection_dim", None),
            getattr(text, "hidden_size", None),
        )
        for value in candidates:
            if isinstance(value, int) and value > 0:
                return value
        raise CheckpointError(f"cannot tell the embedding size from {type(config).__name__}: no projection_dim")

    def _text_kwargs(self) -> dict:
        """Tokenizer arguments as transformers' own processor and zero-shot pipeline use them."""
        defaults = dict(getattr(_processor_class(self.model_type), "text_kwargs", None) or {})
        text_config = getattr(self.model.config, "text_config", None) or self.model.config
        positions = getattr(text_config, "max_position_embeddings", None)
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        tok_max = tok_max if isinstance(tok_max, int) and 0 < tok_max < _UNSET_MAX else None
        # The SigLIP family pools the last position with no mask in training: pad to the context
        # it was trained with (the pipeline's rule for "siglip" model types, and any model with a
        # sigmoid bias, which all come from the same big_vision recipe).
        pad_full = (defaults.get("padding") == "max_length" or "siglip" in self.model_type
                    or self.logit_bias is not None)
        if pad_full:
            length = defaults.get("max_length") or positions or tok_max or SIGLIP_CONTEXT
        else:
            length = defaults.get("max_length") or tok_max or positions
        limits = [v for v in (positions, tok_max) if isinstance(v, int) and v > 0]
        if length is None and not limits:
            raise CheckpointError(f"{self.name}: cannot tell the text context length from the config or tokenizer")
        length = min([length] + limits) if length else min(limits)
        return {"padding": "max_length" if pad_full else "longest", "max_length": int(length), "truncation": True}

    def draft_size(self):
        if not self.fast_decode:
            return None
        size = getattr(self.image_processor, "size", None)
        get = size.get if isinstance(size, dict) else (lambda key: getattr(size, key, None))
        sides = [get(key) for key in ("height", "width", "shortest_edge")]
        side = max((int(v) for v in sides if isinstance(v, (int, float)) and v > 0), default=0)
        return (2 * side, 2 * side) if side else None  # NaFlex processors (SigLIP 2) have no fixed size

    def describe(self) -> dict:
        out = super().describe()
        out.update(model_type=self.model_type, context_length=self.context_length,
                   padding=self.text_kwargs["padding"])
        return out

    # -- hooks ------------------------------------------------------------------------------------

    def _prepare_image(self, image) -> dict:
        # The checkpoint's own processor (PIL or torchvision variant), one image at a time in the
        # worker threads; the batch is stacked in _encode_image_batch.
        return dict(self.image_processor(images=[image], return_tensors="pt"))

    def _check_dim(self, features, what: str) -> None:
        if not self._dim_checked[what]:
            if features.ndim != 2 or features.shape[-1] != self.dim:
                raise CheckpointError(
                    f"{self.name}: {what} features have shape {tuple(features.shape)}, expected (batch, {self.dim}) "
                    f"from the config; the model's image and text towers do not share one embedding space"
                )
            self._dim_checked[what] = True

    def _inputs(self, arrays: dict, accepted: set[str] | None) -> dict:
        import torch

        inputs = {}
        for key, value in arrays.items():
            if accepted is not None and key not in accepted:
                continue
            tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
            inputs[key] = tensor.to(self._dtype) if tensor.is_floating_point() else tensor
        return inputs

    def _encode_image_batch(self, prepared: list[dict]) -> np.ndarray:
        import torch

        batch = {}
        for key in prepared[0]:
            shapes = {tuple(p[key].shape[1:]) for p in prepared}
            if len(shapes) != 1:
                raise CheckpointError(
                    f"{self.name}: the image processor gives {key!r} of different shapes {sorted(shapes)} for "
                    f"different images; polymodal batches images processed one by one and needs one shape"
                )
            batch[key] = torch.cat([p[key] for p in prepared])
        with torch.inference_mode():
            out = self.model.get_image_features(**self._inputs(batch, self._image_inputs))
        features = _feature_tensor(out, "image").float()
        self._check_dim(features, "image")
        return features.numpy()

    def _encode_text_batch(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        import torch

        kwargs = self.text_kwargs
        # Lengths before truncation (special tokens included) tell which texts get cut.
        full = self.tokenizer(texts, truncation=False, padding=False, verbose=False)["input_ids"]
        truncated = [i for i, ids in enumerate(full) if len(ids) > kwargs["max_length"]]
        encoded = self.tokenizer(texts, return_tensors="pt", **kwargs)
        with torch.inference_mode():
            out = self.model.get_text_features(**self._inputs(dict(encoded), self._text_inputs))
        features = _feature_tensor(out, "text").float()
        self._check_dim(features, "text")
        return features.numpy(), truncated


@contextmanager
def _quiet_progress():
    """No "Loading weights" progress bar from transformers while polymodal loads a model."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _scalar(value: Any) -> float:
    """A 0-d or 1-element parameter/tensor/number as a float."""
    if hasattr(value, "detach"):
        value = value.detach().float().reshape(-1)
        if value.numel() != 1:
            raise CheckpointError(f"expected a scalar logit scale/bias, got {value.numel()} values")
        value = value[0]
    result = float(value)
    if not math.isfinite(result):
        raise CheckpointError(f"the model's logit scale/bias is not finite: {result}")
    return result
