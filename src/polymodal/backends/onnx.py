"""ONNX export of a native CLIP-family model and an Embedder that runs the export on ONNX Runtime.

`export_onnx(embedder, out_dir)` writes a directory that `polymodal.load(out_dir)` reads back
without the PyTorch model (torch still runs the shared image normalisation):

    image_encoder.onnx     pixels  float32 (B, 3, S, S) -> embeddings float32 (B, D), unit rows
    text_encoder.onnx      ids     int64   (B, T)       -> embeddings float32 (B, D), unit rows
    polymodal_config.json  {"family": "onnx", "name", "config" (the ClipConfig), "logit_scale", "logit_bias", ...}
    vocab.json, merges.txt the tokenizer

B is dynamic in both graphs and T in the text graph (2 <= T <= context_length), because the
embedder trims the padding after the batch's longest text, exactly as the native one does.

The graphs are produced by `torch.onnx.export`. By default with the TorchScript-based exporter:
with torch 2.13 it traces both towers in about a second, needs no extra package and exports
`scaled_dot_product_attention(is_causal=True)` with a causal mask built from the runtime length
and the end-of-text gather as ArgMax + GatherND; `dynamo=True` uses the torch.export-based
exporter instead (needs onnxscript, roughly ten times slower to export, same numbers).
The exported graphs are always float32, whatever precision the native embedder ran in.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from polymodal.embed.base import Embedder
from polymodal.errors import CheckpointError, InvalidInputError, require

IMAGE_FILE = "image_encoder.onnx"
TEXT_FILE = "text_encoder.onnx"
CONFIG_FILE = "polymodal_config.json"  # = ClipModel.CONFIG, without importing torch here
FORMAT_VERSION = 1
#: LayerNormalization is a single op from opset 17; 18 is read by every onnxruntime since 1.14.
DEFAULT_OPSET = 18
MIN_OPSET = 17
#: protobuf's limit on a single file; larger towers are written with external weight files.
_PROTOBUF_LIMIT = 2**31 - 2**26


# ----------------------------------------------------------------------------------------------
# Export


def export_onnx(embedder: Embedder, out_dir: str | os.PathLike, *, opset: int | None = None,
                dynamo: bool = False) -> Path:
    """Export both towers of a native `ClipEmbedder` to `out_dir` (created if needed); returns it.

    opset: the ONNX opset (default 18, at least 17). dynamo: use torch's torch.export-based
    exporter instead of the TorchScript-based one (see the module docstring).
    """
    from polymodal.embed.native import ClipEmbedder

    if not isinstance(embedder, ClipEmbedder):
        raise InvalidInputError(
            f"only native models export to ONNX; {embedder.name!r} runs on {type(embedder).__name__}. "
            f"Load a native CLIP checkpoint (a polymodal, open_clip, OpenAI or Hugging Face CLIP one)"
        )
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise InvalidInputError(f"opset must be an integer >= {MIN_OPSET}, got {opset!r}")
    onnx = require("onnx", "onnx", "ONNX export")
    if dynamo:
        require("onnxscript", "onnx", "ONNX export with dynamo=True")

    model = embedder.model
    cfg = model.config
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"{out} exists and is not a directory; give a directory to export to")
    if (out / CONFIG_FILE).is_file():
        try:
            family = json.loads((out / CONFIG_FILE).read_text()).get("family")
        except (OSError, ValueError, AttributeError):
            family = None
        if family != "onnx":  # never turn a saved native model into a broken ONNX directory
            raise InvalidInputError(f"{out} already holds a {family!r} model ({CONFIG_FILE}); export to another directory")
    out.mkdir(parents=True, exist_ok=True)

    size = cfg.preprocess.size
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    ids = _example_ids(embedder)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # TracerWarnings about shape checks that are constant for valid inputs, the legacy
            # exporter's deprecation notice: nothing a user of the command can act on.
            warnings.simplefilter("ignore")
            _export_tower(_ImageTower(model), pixels, "pixels", out / IMAGE_FILE, opset, dynamo,
                          dims={0: "batch"})
            _export_tower(_TextTower(model), ids, "ids", out / TEXT_FILE, opset, dynamo,
                          dims={0: "batch", 1: "tokens"}, max_tokens=cfg.text.context_length)
    finally:
        model.train(was_training)
    for file in (IMAGE_FILE, TEXT_FILE):
        _finish_graph(onnx, out / file, cfg.embed_dim)

    embedder.tokenizer.save(out)
    meta = {
        "family": "onnx",
        "format_version": FORMAT_VERSION,
        "name": embedder.name,
        "config": cfg.to_dict(),
        "logit_scale": float(model.logit_scale.detach().exp()),
        "logit_bias": None if model.logit_bias is None else float(model.logit_bias.detach()),
        "image_encoder": IMAGE_FILE,
        "text_encoder": TEXT_FILE,
        "opset": opset,
        "exporter": "dynamo" if dynamo else "torchscript",
    }
    # Written last: a directory only looks like a model once both graphs and the tokenizer are in.
    (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def _example_ids(embedder) -> torch.Tensor:
    """Two tokenized captions of different lengths, trimmed after the longer, as the embedder runs them."""
    context = embedder.context_length
    tok = embedder.tokenizer(["a photo", "a photo of a cat on a mat"], context_length=context)
    length = int((tok.ids == embedder.tokenizer.eot_token_id).argmax(axis=1).max()) + 1
    # Fewer than the whole context, so neither exporter can mistake T for a constant.
    length = min(max(length, 3), context - 1) if context > 3 else context
    return torch.from_numpy(np.ascontiguousarray(tok.ids[:, :length]))


class _ImageTower(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)  # unit rows


class _TextTower(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(ids)  # unit rows


def _export_tower(module, example, input_name: str, path: Path, opset: int, dynamo: bool, *,
                  dims: dict[int, str], max_tokens: int | None = None) -> None:
    tower = module.model.visual if input_name == "pixels" else module.model.textual
    large = sum(p.numel() * p.element_size() for p in tower.parameters()) > _PROTOBUF_LIMIT
    common = dict(input_names=[input_name], output_names=["embeddings"], opset_version=opset)
    for stale in (path, path.with_name(path.name + ".data")):
        stale.unlink(missing_ok=True)
    if dynamo:
        shapes = {}
        for axis, label in dims.items():
            shapes[axis] = (torch.export.Dim(label, min=2, max=max_tokens) if label == "tokens"
                            else torch.export.Dim(label))
        torch.onnx.export(module, (example,), str(path), dynamo=True, dynamic_shapes={input_name: shapes},
                          external_data=large, verbose=False, **common)
    else:
        torch.onnx.export(module, (example,), str(path), dynamo=False,
                          dynamic_axes={input_name: dims, "embeddings": {0: "batch"}}, **common)


def _finish_graph(onnx, path: Path, dim: int) -> None:
    """Name the output's width (the TorchScript exporter leaves it symbolic after the L2
    normalisation) and run the ONNX checker."""
    proto = onnx.load(str(path), load_external_data=False)
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    if len(dims) == 2 and dims[1].dim_value != dim:
        dims[1].Clear()
        dims[1].dim_value = dim
        onnx.save(proto, str(path))
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # pragma: no cover - an exporter bug
        raise CheckpointError(f"the exported {path} fails the ONNX checker: {exc}") from exc


# ----------------------------------------------------------------------------------------------
# Runtime


def _default_threads() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus)


class OnnxEmbedder(Embedder):
    """A CLIP-family dual encoder exported by `export_onnx`, run by ONNX Runtime on the CPU.

    Preprocessing, tokenization, padding trimming and scoring are the native embedder's, so the
    vectors agree with the PyTorch model to float32 rounding (~1e-7 on the tiny test model).
    threads: intra-op threads per session (default: the CPUs this process may use).
    """

    def __init__(self, image_session, text_session, tokenizer, config, name: str, *,
                 logit_scale: float, logit_bias: float | None, fast_decode: bool = True):
        from polymodal.models.preprocess import ImageTransform

        self.image_session = image_session
        self.text_session = text_session
        self.tokenizer = tokenizer
        self.config = config
        self.name = name
        self.dim = config.embed_dim
        self.scoring = config.scoring
        self.logit_scale = float(logit_scale)
        self.logit_bias = None if logit_bias is None else float(logit_bias)
        self.transform = ImageTransform(config.preprocess)
        self.context_length = config.text.context_length
        self.fast_decode = fast_decode

    @classmethod
    def from_dir(cls, path: str | os.PathLike, name: str | None = None, *, threads: int | None = None,
                 fast_decode: bool = True) -> "OnnxEmbedder":
        from polymodal.models.clip import ClipConfig
        from polymodal.models.tokenizer import ClipTokenizer

        ort = require("onnxruntime", "onnx", "the ONNX Runtime backend")
        directory = Path(path)
        if not directory.is_dir():
            raise CheckpointError(f"ONNX model directory {directory} does not exist or is not a directory")
        meta = _read_meta(directory / CONFIG_FILE)
        try:
            config = ClipConfig.from_dict(meta["config"])
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{directory / CONFIG_FILE} holds no valid CLIP config: {exc!r}") from exc
        try:
            logit_scale = float(meta["logit_scale"])
            bias = meta.get("logit_bias")
            logit_bias = None if bias is None else float(bias)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{directory / CONFIG_FILE} lacks a numeric logit_scale / logit_bias: {exc!r}") from exc
        files = {}
        for key, default in (("image_encoder", IMAGE_FILE), ("text_encoder", TEXT_FILE)):
            file = directory / str(meta.get(key, default))
            if not file.is_file():
                raise CheckpointError(f"{file} is missing: the ONNX model directory {directory} needs it "
                                      f"(re-export with `polymodal models export-onnx MODEL {directory}`)")
            files[key] = file
        tokenizer = ClipTokenizer.from_dir(directory)  # CheckpointError naming the missing files

        threads = _default_threads() if threads is None else int(threads)
        if threads < 1:
            raise InvalidInputError(f"threads must be at least 1, got {threads}")
        image = _session(ort, files["image_encoder"], threads, "pixels", config.embed_dim)
        text = _session(ort, files["text_encoder"], threads, "ids", config.embed_dim)
        return cls(image, text, tokenizer, config, name or meta.get("name") or directory.name,
                   logit_scale=logit_scale, logit_bias=logit_bias, fast_decode=fast_decode)

    # -- hooks ------------------------------------------------------------------------------------

    def draft_size(self):
        return self.transform.draft_size() if self.fast_decode else None

    def _prepare_image(self, image) -> np.ndarray:
        return self.transform.crop_uint8(image)  # (S, S, 3) uint8

    def _encode_image_batch(self, prepared: list[np.ndarray]) -> np.ndarray:
        pixels = self.transform.normalize(np.stack(prepared)).numpy()  # (B, 3, S, S) float32
        return self.image_session.run(["embeddings"], {"pixels": np.ascontiguousarray(pixels)})[0]

    def _encode_text_batch(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        tok = self.tokenizer(texts, context_length=self.context_length)
        # As in native.py: causal attention and end-of-text pooling make the padding after the
        # longest text irrelevant, so it is cut off.
        length = int((tok.ids == self.tokenizer.eot_token_id).argmax(axis=1).max()) + 1
        ids = np.ascontiguousarray(tok.ids[:, :length], dtype=np.int64)
        return self.text_session.run(["embeddings"], {"ids": ids})[0], tok.truncated

    def describe(self) -> dict:
        threads = self.image_session.get_session_options().intra_op_num_threads
        return {**super().describe(), "runtime": "onnxruntime", "threads": threads}


def _read_meta(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: an ONNX model directory is made by "
                              f"`polymodal models export-onnx MODEL {path.parent}`")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("family") != "onnx":
        family = meta.get("family") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path} describes a {family!r} model, not an ONNX export (family 'onnx')")
    return meta


def cpu_session_options(ort, threads: int):
    """ONNX Runtime options for CPU inference beside other work: all graph optimisations, one
    sequential executor with `threads` intra-op threads, and no spinning. Images are decoded (or
    OCR'd) in worker threads while a model runs: pool threads that spin while idle would take
    those cores from them."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def _session(ort, file: Path, threads: int, input_name: str, dim: int):
    options = cpu_session_options(ort, threads)
    try:
        session = ort.InferenceSession(str(file), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise CheckpointError(f"ONNX Runtime cannot load {file}: {exc}") from exc
    inputs = [i.name for i in session.get_inputs()]
    outputs = session.get_outputs()
    if inputs != [input_name] or [o.name for o in outputs] != ["embeddings"]:
        raise CheckpointError(f"{file} takes {inputs} and gives {[o.name for o in outputs]}; an export of "
                              f"polymodal takes [{input_name!r}] and gives ['embeddings']")
    width = outputs[0].shape[-1] if outputs[0].shape else None
    if isinstance(width, int) and width != dim:
        raise CheckpointError(f"{file} gives {width}-dimensional embeddings, the config says {dim}")
    return session
