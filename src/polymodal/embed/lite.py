"""The Embedder of the offline default model `lite` (see models/lite.py for what it is)."""

from __future__ import annotations

import numpy as np
import torch

from polymodal.embed.base import Embedder
from polymodal.embed.native import PRECISIONS
from polymodal.errors import InvalidInputError
from polymodal.models.clip import PreprocessConfig
from polymodal.models.efficientnet_lite import EfficientNetLite0
from polymodal.models.lite import LOW_RES_SIDE, LiteImageTower, load_image_tower
from polymodal.models.minilm import DIM, MiniLMEncoder
from polymodal.models.preprocess import ImageTransform
from polymodal.models.registry import MODEL_CONFIG_FILE


def _cpu_has_bf16() -> bool:
    is_supported = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(is_supported and is_supported())


BF16_TEXT = _cpu_has_bf16()


# A fine-tuned lite saved by polymodal.train (Trainable.export): polymodal_config.json with
# family "lite", the alignment file in the shipped format, and MiniLM's weights in `text/` when
# they were fine-tuned (otherwise the package's MiniLM is used).
LITE_WEIGHTS = "lite.safetensors"
LITE_TEXT_DIR = "text"


class LiteEmbedder(Embedder):
    dim = DIM

    def __init__(self, tower: LiteImageTower | None = None, text: MiniLMEncoder | None = None, *,
                 precision: str = "fp32", name: str = "lite"):
        if precision not in PRECISIONS:
            raise InvalidInputError(f"precision {precision!r} is not one of {PRECISIONS}")
        self.name = name
        self.precision = precision
        # channels-last lets oneDNN run the depthwise convolutions without layout changes
        # (about 1.5x in fp32 on this CPU), for the PyTorch path.
        self.tower = (tower or load_image_tower()).to(memory_format=torch.channels_last)
        self.text = text or MiniLMEncoder()
        # ONNX Runtime runs the backbone about 3-4x faster than PyTorch eager on a 2-core CPU, in
        # fp32 (benchmarks/lite_throughput.py); bf16 keeps the PyTorch path, fp32 falls back to it
        # when onnxruntime is not installed.
        self.backbone_session = onnx_backbone(self.tower.backbone) if precision == "fp32" else None
        cfg = self.tower.config
        # ConSE embeddings sit close together (cosines between about 0.1 and 0.7), so the softmax
        # needs a sharp temperature; 50 is what the shipped file records.
        self.logit_scale = cfg.logit_scale
        self.logit_bias = cfg.logit_bias
        self.scoring = "softmax" if cfg.logit_bias is None else "sigmoid"
        self.transform = ImageTransform(PreprocessConfig(
            size=cfg.image_size, mean=EfficientNetLite0.MEAN, std=EfficientNetLite0.STD, interpolation="bicubic"))

    @classmethod
    def from_dir(cls, directory, *, name: str | None = None, precision: str = "fp32") -> "LiteEmbedder":
        """A fine-tuned lite written by `polymodal.train` (see LITE_WEIGHTS above)."""
        import json
        from pathlib import Path

        from polymodal.errors import CheckpointError

        directory = Path(directory)
        meta = json.loads((directory / MODEL_CONFIG_FILE).read_text())
        weights = directory / meta.get("weights", LITE_WEIGHTS)
        if not weights.is_file():
            raise CheckpointError(f"{directory} is a lite model but lacks {weights.name}; export it again")
        text_dir = directory / LITE_TEXT_DIR
        text = MiniLMEncoder(text_dir) if (text_dir / "config.json").is_file() else None
        return cls(load_image_tower(weights), text, precision=precision,
                   name=name or meta.get("name") or directory.name)

    def draft_size(self):
        return self.transform.draft_size()

    def _prepare_image(self, image) -> tuple[np.ndarray, bool]:
        return self.transform.crop_uint8(image), min(image.size) < LOW_RES_SIDE

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @torch.inference_mode()
    def _encode_image_batch(self, prepared: list[tuple[np.ndarray, bool]]) -> np.ndarray:
        pixels = self.transform.normalize(np.stack([crop for crop, _ in prepared]))
        pixels = pixels.contiguous(memory_format=torch.channels_last)  # (B, 3, 224, 224)
        low_res = torch.tensor([small for _, small in prepared])
        with self._autocast():
            return self.tower(pixels, low_res, self._ort_features if self.backbone_session else None).numpy()

    def _ort_features(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.contiguous().numpy()  # (B, 3, 224, 224) float32
        return torch.from_numpy(self.backbone_session.run(None, {"pixels": x})[0])  # (B, 1280)

    def _encode_text_batch(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        # MiniLM in bf16 keeps cosine >= 0.9999 with fp32 (benchmarks/lite_throughput.py) and runs
        # ~4x faster on CPUs with bf16 units, so it is used whenever the CPU has them.
        fast = self.precision == "bf16" or BF16_TEXT
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            return self.text(texts)

    def describe(self) -> dict:
        runtime = "onnxruntime" if self.backbone_session else "torch"
        return {**super().describe(), "precision": self.precision, "image_runtime": runtime,
                "config": vars(self.tower.config)}


class _Features(torch.nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, pixels):
        return self.backbone.forward_features(pixels)


def onnx_backbone(backbone):
    """An ONNX Runtime session for the backbone's pooled features, exported once from the shipped
    weights into the user cache ($POLYMODAL_CACHE or ~/.cache/polymodal), or None when
    onnxruntime is not installed or the export fails (the PyTorch path is then used)."""
    import importlib.util
    import os
    import tempfile
    from pathlib import Path

    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        return None
    import onnxruntime as ort

    from polymodal.models.efficientnet_lite import pretrained_weights_path

    cache = Path(os.environ.get("POLYMODAL_CACHE") or Path.home() / ".cache" / "polymodal")
    target = cache / f"{pretrained_weights_path().stem}-features-v1.onnx"
    try:
        if not target.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:  # export then rename: never a half file
                path = Path(tmp) / target.name
                module = _Features(backbone).eval().to(memory_format=torch.contiguous_format)
                with torch.inference_mode():
                    torch.onnx.export(module, torch.zeros(1, 3, 224, 224), str(path), input_names=["pixels"],
                                      output_names=["features"], dynamic_axes={"pixels": {0: "batch"}},
                                      opset_version=17, dynamo=False)
                backbone.to(memory_format=torch.channels_last)
                os.replace(path, target)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = os.cpu_count() or 1
        options.inter_op_num_threads = 1
        return ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a broken cache or exporter must not take the model down
        import warnings

        warnings.warn(f"lite: ONNX Runtime backbone unavailable ({exc}); using PyTorch", RuntimeWarning, stacklevel=2)
        return None
