"""Reference implementations polymodal did not write, imported for parity tests."""

from __future__ import annotations

import sys
import types

import pytest


def import_open_clip():
    """open_clip's real model code. Its package imports torchvision at import time, which has no
    CPU build here; it only needs a few names from it to import (for transforms and a frozen
    BatchNorm that the CLIP ViT never uses), so those are given stand-ins before the import."""
    try:
        import open_clip  # noqa: F401

        return sys.modules["open_clip"]
    except ImportError:
        pass
    import importlib.util

    if importlib.util.find_spec("open_clip") is None:
        pytest.skip("open_clip is not installed: pip install --no-deps open_clip_torch")
    import transformers.utils.import_utils  # noqa: F401  (decide torchvision's absence before stubbing)

    class _Unused:
        BICUBIC = BILINEAR = NEAREST = "unused"

        def __init__(self, *args, **kwargs):
            raise RuntimeError("torchvision stand-in: not available in tests")

    names = ["Normalize", "Compose", "RandomResizedCrop", "InterpolationMode", "ToTensor", "Resize",
             "CenterCrop", "ColorJitter", "Grayscale"]
    modules = {n: types.ModuleType(n) for n in
               ["torchvision", "torchvision.transforms", "torchvision.transforms.functional",
                "torchvision.ops", "torchvision.ops.misc"]}
    for name in names:
        setattr(modules["torchvision.transforms"], name, type(name, (_Unused,), {}))
    modules["torchvision.ops.misc"].FrozenBatchNorm2d = type("FrozenBatchNorm2d", (_Unused,), {})
    saved = {k: sys.modules.get(k) for k in modules}
    sys.modules.update(modules)
    try:
        import open_clip
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return open_clip
