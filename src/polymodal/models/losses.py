"""Contrastive training objectives: CLIP's softmax loss, SigLIP's sigmoid loss, the margin loss.

Each objective is a plain function holding the maths and a small `nn.Module` that calls it, so a
training loop can hold the loss like any other module. Shapes: N batch, D embedding dimension.
Bad input raises `InvalidInputError` naming the shapes involved; nothing here asserts.

Distributed training: the multi-process variants (CLIP's all-gather of features from every rank,
SigLIP's chunked exchange of text features between neighbouring ranks) belong here as named
options of the same modules, e.g. `ClipLoss(distributed="gather")` and
`SigLipLoss(distributed="ring")`, each gathering features before calling the single-process maths
below. That maths stays the reference each variant must reproduce with one process.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from polymodal.errors import InvalidInputError

__all__ = [
    "ClipLoss",
    "SigLipLoss",
    "MarginContrastiveLoss",
    "clip_loss",
    "siglip_loss",
    "margin_contrastive_loss",
    "margin_contrastive_pairs",
]


# ----------------------------------------------------------------------------------------------
# Input checks, shared by all losses.


def _shape(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def _check_matrix(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InvalidInputError(f"{name} must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    if x.ndim != 2:
        raise InvalidInputError(f"{name} must have shape (N, D), got shape {_shape(x)}")
    if not x.is_floating_point():
        raise InvalidInputError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise InvalidInputError(f"{name} has shape {_shape(x)}: the batch is empty, need N >= 1")
    return x


def _check_same_shape(name_a: str, a, name_b: str, b) -> None:
    """Both (N, D) floating tensors with the same N, D and dtype."""
    _check_matrix(name_a, a)
    _check_matrix(name_b, b)
    if a.shape != b.shape:
        raise InvalidInputError(
            f"{name_a} has shape {_shape(a)} but {name_b} has shape {_shape(b)}; "
            f"both must be (N, D) with the same batch size N and dimension D"
        )
    if a.dtype != b.dtype:
        raise InvalidInputError(f"{name_a} has dtype {a.dtype} but {name_b} has dtype {b.dtype}; use one dtype")


def _check_scalar(name: str, value, like: torch.Tensor) -> torch.Tensor:
    """A Python number or a one-element tensor, returned as a 0-d tensor (gradients kept)."""
    if isinstance(value, bool) or value is None:
        raise InvalidInputError(f"{name} must be a scalar tensor or a number, got {value!r}")
    if isinstance(value, (int, float)):
        return torch.tensor(float(value), dtype=like.dtype, device=like.device)
    if not isinstance(value, torch.Tensor):
        raise InvalidInputError(f"{name} must be a scalar tensor or a number, got {type(value).__name__}")
    if value.numel() != 1:
        raise InvalidInputError(f"{name} must be a scalar (one element), got shape {_shape(value)}")
    return value.reshape(())


# ----------------------------------------------------------------------------------------------
# CLIP: symmetric InfoNCE over the batch (Radford et al. 2021).


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale) -> torch.Tensor:
    """Symmetric cross-entropy of CLIP.

    With logits = s * I @ T^T (N, N), the matching pairs on the diagonal are the targets:

        loss = 1/2 * ( 1/N sum_i -log softmax_j(logits)_ij  +  1/N sum_j -log softmax_i(logits)_ij )
             evaluated at i = j, i.e. cross-entropy over rows and over columns with targets 0..N-1.

    image_features: (N, D), text_features: (N, D), both L2-normalised by the caller.
    logit_scale: s, the already exponentiated temperature scale (0-d tensor or number).
    Returns a 0-d tensor.
    """
    _check_same_shape("image_features", image_features, "text_features", text_features)
    scale = _check_scalar("logit_scale", logit_scale, image_features)
    logits = scale * image_features @ text_features.T
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class ClipLoss(nn.Module):
    """CLIP's contrastive loss as a module; see `clip_loss` for the formula and shapes.

    forward(image_features (N, D), text_features (N, D), logit_scale) -> 0-d tensor.
    """

    # The distributed variant goes here as a constructor option (see the module docstring).

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale) -> torch.Tensor:
        return clip_loss(image_features, text_features, logit_scale)


# ----------------------------------------------------------------------------------------------
# SigLIP: independent binary classification of every (image, text) pair (Zhai et al. 2023).


def siglip_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale, logit_bias
) -> torch.Tensor:
    """Pairwise sigmoid loss of SigLIP.

    With logits = s * I @ T^T + b (N, N) and labels z_ij = +1 if i == j else -1:

        loss = -1/N * sum_{i,j} log sigmoid(z_ij * logits_ij)

    normalised by the batch size N (not N^2), as in the paper.

    image_features: (N, D), text_features: (N, D), both L2-normalised by the caller.
    logit_scale: s, the already exponentiated scale; logit_bias: b. Both are 0-d tensors (or
    numbers) and receive gradients when they require them.
    Returns a 0-d tensor.
    """
    _check_same_shape("image_features", image_features, "text_features", text_features)
    scale = _check_scalar("logit_scale", logit_scale, image_features)
    if logit_bias is None:
        raise InvalidInputError(
            "logit_bias is None: the sigmoid loss needs the model's learnable bias "
            "(a softmax CLIP model has none; train it with ClipLoss instead)"
        )
    bias = _check_scalar("logit_bias", logit_bias, image_features)
    logits = scale * image_features @ text_features.T + bias
    n = logits.shape[0]
    labels = 2 * torch.eye(n, dtype=logits.dtype, device=logits.device) - 1
    return -F.logsigmoid(labels * logits).sum() / n


class SigLipLoss(nn.Module):
    """SigLIP's sigmoid loss as a module; see `siglip_loss` for the formula and shapes.

    forward(image_features (N, D), text_features (N, D), logit_scale, logit_bias) -> 0-d tensor.
    """

    # The distributed (chunked neighbour exchange) variant goes here as a constructor option.

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale, logit_bias
    ) -> torch.Tensor:
        return siglip_loss(image_features, text_features, logit_scale, logit_bias)


# ----------------------------------------------------------------------------------------------
# Margin contrastive loss (Hadsell, Chopra and LeCun 2006).


def _check_margin(margin) -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin <= 0:
        raise InvalidInputError(f"margin must be a finite number > 0, got {margin!r}")
    return float(margin)


def margin_contrastive_pairs(
    x1: torch.Tensor, x2: torch.Tensor, same: torch.Tensor, margin: float = 1.0
) -> torch.Tensor:
    """Margin contrastive loss over N given pairs (x1_i, x2_i); the one implementation of the maths.

    With d_i = ||x1_i - x2_i||^2 (squared Euclidean distance) and eps = margin:

        loss = 1/N * sum_i  1[same_i] * d_i  +  1[not same_i] * max(0, eps - d_i)

    Similar pairs are pulled together; dissimilar pairs are pushed apart until their squared
    distance reaches the margin, after which they cost nothing. Note the margin compares against
    the squared distance.

    x1, x2: (N, D) floating tensors; same: (N,) bool tensor, True where the pair is similar.
    Returns a 0-d tensor.
    """
    _check_same_shape("x1", x1, "x2", x2)
    eps = _check_margin(margin)
    if not isinstance(same, torch.Tensor) or same.dtype != torch.bool:
        got = same.dtype if isinstance(same, torch.Tensor) else type(same).__name__
        raise InvalidInputError(f"same must be a bool tensor of shape (N,) (e.g. labels1 == labels2), got {got}")
    if same.shape != (x1.shape[0],):
        raise InvalidInputError(
            f"same has shape {_shape(same)} but x1 and x2 have shape {_shape(x1)}; "
            f"same must be (N,) with N = {x1.shape[0]}"
        )
    d2 = (x1 - x2).pow(2).sum(dim=1)
    per_pair = torch.where(same.to(d2.device), d2, torch.clamp(eps - d2, min=0))
    return per_pair.mean()


def margin_contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Margin contrastive loss over all unordered pairs i < j of a labelled batch.

    Pair (i, j) is similar when labels_i == labels_j; the loss is the mean over the N(N-1)/2
    pairs of the per-pair term of `margin_contrastive_pairs`:

        loss = 2/(N(N-1)) * sum_{i<j}  1[y_i = y_j] d_ij + 1[y_i != y_j] max(0, eps - d_ij),
        d_ij = ||x_i - x_j||^2

    embeddings: (N, D) floating tensor with N >= 2; labels: (N,) tensor of class ids.
    Returns a 0-d tensor. Memory is O(N^2 D): the pair differences are formed explicitly so that
    identical points give exactly zero distance.
    """
    _check_matrix("embeddings", embeddings)
    if not isinstance(labels, torch.Tensor):
        raise InvalidInputError(f"labels must be a torch.Tensor of shape (N,), got {type(labels).__name__}")
    n = embeddings.shape[0]
    if labels.shape != (n,):
        raise InvalidInputError(
            f"labels has shape {_shape(labels)} but embeddings has shape {_shape(embeddings)}; "
            f"labels must be (N,) with N = {n}"
        )
    if n < 2:
        raise InvalidInputError(f"embeddings has shape {_shape(embeddings)}: need N >= 2 to form a pair")
    i, j = torch.triu_indices(n, n, offset=1, device=embeddings.device)
    labels = labels.to(embeddings.device)
    return margin_contrastive_pairs(embeddings[i], embeddings[j], labels[i] == labels[j], margin)


class MarginContrastiveLoss(nn.Module):
    """The margin contrastive loss as a module; see `margin_contrastive_pairs` for the formula.

    forward(embeddings (N, D), labels (N,)) -> mean over all unordered pairs i < j.
    pairs(x1 (N, D), x2 (N, D), same (N,) bool) -> mean over the N given pairs.
    """

    def __init__(self, margin: float = 1.0):
        super().__init__()
        self.margin = _check_margin(margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return margin_contrastive_loss(embeddings, labels, self.margin)

    def pairs(self, x1: torch.Tensor, x2: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        return margin_contrastive_pairs(x1, x2, same, self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
