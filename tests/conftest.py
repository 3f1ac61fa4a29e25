"""Shared test set-up: no network, the CLIP vocabulary from ../shared/data, tiny checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CLIP_BPE = SHARED_DATA / "clip-bpe" / "bpe_simple_vocab_16e6.txt.gz"

# Tests never download: transformers and huggingface_hub are told so, and polymodal never does
# unless POLYMODAL_ALLOW_DOWNLOAD=1.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("POLYMODAL_ALLOW_DOWNLOAD", None)
os.environ.pop("POLYMODAL_MODEL", None)
if CLIP_BPE.is_file():
    os.environ.setdefault("POLYMODAL_CLIP_BPE", str(CLIP_BPE))


def shared_data(relative: str) -> Path:
    """A path in ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"{path} is missing: the shared data sets live beside the repository (../shared/data)")
    return path


@pytest.fixture
def clip_bpe() -> Path:
    return shared_data("clip-bpe/bpe_simple_vocab_16e6.txt.gz")


@pytest.fixture(autouse=True)
def _isolated_hf_cache(tmp_path_factory, monkeypatch):
    # An empty Hugging Face cache per test session: a test that wants a cached model puts it there.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.getbasetemp() / "hf-cache"))
