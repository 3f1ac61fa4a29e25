"""The resolver's errors: each names the problem and the fix, and nothing touches the network."""

from __future__ import annotations

import time

import pytest

import polymodal
from polymodal.errors import CheckpointError, InvalidInputError, ModelNotAvailableError, ModelNotFoundError


def test_unknown_name_lists_close_matches():
    with pytest.raises(ModelNotFoundError, match="clip-vit-b-32") as err:
        polymodal.load("clip-vit-b32")
    assert "polymodal models list" in str(err.value)


def test_uncached_hub_model_fails_fast_with_the_fix():
    start = time.monotonic()
    with pytest.raises(ModelNotAvailableError, match="huggingface-cli download openai/clip-vit-base-patch32"):
        polymodal.load("clip-vit-b-32")
    with pytest.raises(ModelNotAvailableError, match="POLYMODAL_ALLOW_DOWNLOAD"):
        polymodal.load("hf:nobody/nothing@v1")
    assert time.monotonic() - start < 5  # no network timeout


def test_bad_paths_and_specs(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        polymodal.load(str(tmp_path / "nope" / "model"))
    with pytest.raises(CheckpointError, match="no model polymodal recognises"):
        polymodal.load(str(tmp_path))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CheckpointError, match="not a weights file"):
        polymodal.load(str(tmp_path / "notes.txt"))
    with pytest.raises(InvalidInputError, match="hf:org/repo"):
        polymodal.load("hf:just-a-name")


def test_wrong_weights_name_the_keys(tmp_path):
    import torch

    torch.save({"visual.conv1.weight": torch.zeros(1), "token_embedding.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="lacks"):
        polymodal.load(str(tmp_path / "bad.pt"))
    from polymodal.embed.resolve import save_embedder
    from safetensors.torch import load_file, save_file

    save_embedder(polymodal.load("clip-tiny-random"), tmp_path / "m")
    state = load_file(str(tmp_path / "m" / "model.safetensors"))
    state.pop("logit_scale")
    state["visual.proj.weight"] = torch.zeros(3, 3)
    save_file(state, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing \['logit_scale'\].*wrong shapes.*visual.proj.weight"):
        polymodal.load(str(tmp_path / "m"))


def test_import_is_light():
    import subprocess
    import sys

    code = "import time; t=time.perf_counter(); import polymodal, sys; print(time.perf_counter()-t, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "False"  # torch loads only when a model is used
    assert float(out[0]) < 0.5
