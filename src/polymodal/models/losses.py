"""Contrastive training objectives: CLIP's softmax loss, SigLIP's sigmoid loss, the margin loss.

Each objective is a plain function holding the maths and a small `nn.Module` that calls it, so a
training loop can hold the loss like any other module. Shapes: N batch, D embedding dimension.
Bad input raises `InvalidInputError` naming the shapes involved; nothing here asserts.

Distributed training: `ClipLoss(distributed="gather")` and `SigLipLoss(distributed="ring")` (the
functions `clip_loss_gather` and `siglip_loss_ring`) take this rank's local features and return this
rank's share of the loss of the global batch. The single-process functions stay the reference: the
tests check that the shares reproduce them, loss and gradients. The convention, made for
DistributedDataParallel (which averages parameter gradients over ranks):

    W ranks in the process group, rank r holds n_r pairs, M = n_0 + ... + n_{W-1} pairs in all;
    L = the single-process loss of the global batch (the ranks' rows concatenated in rank order).
    Rank r returns l_r with  mean_r l_r = L  (with equal local batches, l_r is the loss of the
    local rows, as in open_clip). Gradients reaching rank r's own features are W * dL/d(its
    features) (features are shared between ranks, so every rank's loss sends gradient to them);
    a scalar that every rank holds (logit_scale, logit_bias) gets dl_r/ds on rank r. The
    DDP-averaged parameter gradient is therefore exactly dL/d(parameters).

l_r itself is not the global loss: log the mean over ranks. Local batch sizes may differ between
ranks: each call first gathers every rank's feature shapes (one small all_gather), so that a shape
error is raised on every rank instead of hanging the others. Every rank of the group must call the
loss and run its backward, in the same order: both communicate. Without an initialised process
group, or with one rank, both are the single-process loss.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from polymodal.errors import InvalidInputError

__all__ = [
    "ClipLoss",
    "SigLipLoss",
    "MarginContrastiveLoss",
    "clip_loss",
    "clip_loss_gather",
    "siglip_loss",
    "siglip_loss_ring",
    "margin_contrastive_loss",
    "margin_contrastive_pairs",
]


# ----------------------------------------------------------------------------------------------
# Input checks, shared by all losses.


def _shape(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def _check_matrix(name: str, x, allow_empty: bool = False) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InvalidInputError(f"{name} must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    if x.ndim != 2:
        raise InvalidInputError(f"{name} must have shape (N, D), got shape {_shape(x)}")
    if not x.is_floating_point():
        raise InvalidInputError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0 and not allow_empty:
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


def _check_bias(value, like: torch.Tensor) -> torch.Tensor:
    if value is None:
        raise InvalidInputError(
            "logit_bias is None: the sigmoid loss needs the model's learnable bias "
            "(a softmax CLIP model has none; train it with ClipLoss instead)"
        )
    return _check_scalar("logit_bias", value, like)


def _check_option(owner: str, value, choices: tuple[str, ...]) -> str | None:
    if value is not None and value not in choices:
        options = ", ".join(repr(c) for c in (None, *choices))
        raise InvalidInputError(f"{owner}(distributed={value!r}) is not an option: use one of {options}")
    return value


# ----------------------------------------------------------------------------------------------
# Distributed plumbing: ranks, local batch sizes, and the two exchanges that carry gradients.


def _rank_and_world(group) -> tuple[int, int]:
    """(rank, world size) in `group` (None: the default group); (0, 1) without torch.distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def _rows_per_rank(image_features, text_features, world: int, group) -> list[int]:
    """The local batch size n_r of every rank, after checking every rank's shapes on every rank.

    All ranks see the same gathered shapes and raise the same error, so a rank with bad input
    never leaves the others waiting in a collective it will not join.
    """
    _check_matrix("image_features", image_features, allow_empty=True)
    _check_matrix("text_features", text_features, allow_empty=True)
    if image_features.dtype != text_features.dtype:
        raise InvalidInputError(
            f"image_features has dtype {image_features.dtype} but text_features has dtype "
            f"{text_features.dtype}; use one dtype"
        )
    local = torch.tensor([*image_features.shape, *text_features.shape], device=image_features.device)
    shapes = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(shapes, local, group=group)
    shapes = [s.tolist() for s in shapes]
    dim = shapes[0][1]
    for rank, (ni, di, nt, dt) in enumerate(shapes):
        if (ni, di) != (nt, dt):
            raise InvalidInputError(
                f"on rank {rank}, image_features has shape ({ni}, {di}) but text_features has shape "
                f"({nt}, {dt}); both must be (N, D) with the same batch size N and dimension D"
            )
        if ni == 0:
            raise InvalidInputError(f"rank {rank} has an empty batch (shape (0, {di})): every rank needs N >= 1")
        if di != dim:
            raise InvalidInputError(
                f"rank {rank} has features of dimension {di} but rank 0 has {dim}: every rank must "
                f"compute features with the same model"
            )
    return [s[0] for s in shapes]


class _AllGatherRows(torch.autograd.Function):
    """Every rank's (n_r, D) rows stacked in rank order into (M, D), with gradients.

    Every rank's loss uses every rank's rows, so the gradient of this rank's rows is the sum over
    ranks of the gradients of their copies: all-reduce the (M, D) gradient, keep this rank's slice.
    (torch.distributed.nn.functional.all_gather does the same on gloo, but needs equal local
    batches and is deprecated.)
    """

    @staticmethod
    def forward(ctx, x, rows: list[int], rank: int, group):
        ctx.rows, ctx.rank, ctx.group = rows, rank, group
        padded = F.pad(x, (0, 0, 0, max(rows) - x.shape[0])).contiguous()  # all_gather needs one shape
        parts = [torch.empty_like(padded) for _ in rows]
        dist.all_gather(parts, padded, group=group)
        return torch.cat([part[:n] for part, n in zip(parts, rows)])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        grad = grad.clone(memory_format=torch.contiguous_format)  # all_reduce writes in place
        dist.all_reduce(grad, group=ctx.group)
        start = sum(ctx.rows[: ctx.rank])
        return grad[start : start + ctx.rows[ctx.rank]], None, None, None


def _shift(x: torch.Tensor, rows: int, to: int, frm: int, group) -> torch.Tensor:
    """Send x to rank `to` while receiving a (rows, x.shape[1]) tensor from rank `frm`; return it.

    Every rank calls this at once, so a ring of sends and receives completes without deadlock.
    """
    received = x.new_empty(rows, x.shape[1])
    ops = [
        dist.P2POp(dist.isend, x.contiguous(), group=group, group_peer=to),
        dist.P2POp(dist.irecv, received, group=group, group_peer=frm),
    ]
    for work in dist.batch_isend_irecv(ops):
        work.wait()
    return received


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


def clip_loss_gather(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale, group=None
) -> torch.Tensor:
    """This rank's share l_r of `clip_loss` over the global batch, features gathered from all ranks.

    Rank r gathers every rank's image and text features (M, D), with gradients, and scores only its
    own rows: its n_r images against all M texts (rows of the global logits) and its n_r texts
    against all M images (columns). The global loss is a sum over rows and columns, so it splits
    by rank exactly:

        L   = 1/(2M) * sum_r ( sum_{i in r} CE_row_i + sum_{j in r} CE_col_j )
        l_r = W/(2M) * ( sum_{i in r} CE_row_i + sum_{j in r} CE_col_j ),   mean_r l_r = L

    With equal local batches, W/M = 1/n and l_r is open_clip's `local_loss` with
    `gather_with_grad`. The gather's backward sums each rank's feature gradients over ranks, which
    gives W * dL/d(local features) (see the module docstring for what DDP makes of it).
    Memory: each rank holds two (n_r, M) logits blocks, linear in the global batch.

    image_features, text_features: this rank's (n_r, D); n_r may differ between ranks.
    logit_scale: s, as in `clip_loss`. group: the process group (None: the default one).
    Without an initialised process group, or with one rank, this is `clip_loss`.
    """
    rank, world = _rank_and_world(group)
    if world == 1:
        return clip_loss(image_features, text_features, logit_scale)
    scale = _check_scalar("logit_scale", logit_scale, image_features)
    rows = _rows_per_rank(image_features, text_features, world, group)
    dim = image_features.shape[1]
    # one collective for both towers: (n_r, 2D) -> (M, 2D)
    both = _AllGatherRows.apply(torch.cat([image_features, text_features], dim=1), rows, rank, group)
    all_images, all_texts = both[:, :dim], both[:, dim:]
    start = sum(rows[:rank])
    targets = torch.arange(start, start + rows[rank], device=image_features.device)
    rows_ce = F.cross_entropy(scale * image_features @ all_texts.T, targets, reduction="sum")  # (n_r, M)
    cols_ce = F.cross_entropy(scale * text_features @ all_images.T, targets, reduction="sum")  # (n_r, M)
    return (rows_ce + cols_ce) * (world / (2 * sum(rows)))


class ClipLoss(nn.Module):
    """CLIP's contrastive loss as a module; see `clip_loss` for the formula and shapes.

    ClipLoss() is the single-process loss; ClipLoss(distributed="gather", group=None) is
    `clip_loss_gather`, this rank's share of the loss of the global batch.
    forward(image_features (N, D), text_features (N, D), logit_scale) -> 0-d tensor.
    """

    def __init__(self, distributed: str | None = None, group=None):
        super().__init__()
        self.distributed = _check_option("ClipLoss", distributed, ("gather",))
        self.group = group

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale) -> torch.Tensor:
        if self.distributed == "gather":
            return clip_loss_gather(image_features, text_features, logit_scale, self.group)
        return clip_loss(image_features, text_features, logit_scale)

    def extra_repr(self) -> str:
        return f"distributed={self.distributed!r}" if self.distributed else ""


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
    bias = _check_bias(logit_bias, image_features)
    logits = scale * image_features @ text_features.T + bias
    n = logits.shape[0]
    labels = 2 * torch.eye(n, dtype=logits.dtype, device=logits.device) - 1
    return -F.logsigmoid(labels * logits).sum() / n


def _sigmoid_block(image, text, scale, bias, own: bool):
    """Similarities (n_i, n_t), labels z and logits of one block; z = +1 only on the own diagonal."""
    sims = image @ text.T
    z = torch.full_like(sims, -1.0)
    if own:
        z.diagonal().fill_(1.0)
    return sims, z, scale * sims + bias


def _sigmoid_block_grads(image, text, scale, bias, own: bool, grad):
    """Gradients of grad * sum(-log sigmoid(z * logits)) of one block: image, text, scale, bias."""
    sims, z, logits = _sigmoid_block(image, text, scale, bias, own)
    dlogits = grad * -z * torch.sigmoid(-z * logits)  # d/dl -log sigmoid(z l) = -z sigmoid(-z l)
    return scale * dlogits @ text, scale * dlogits.T @ image, (dlogits * sims).sum(), dlogits.sum()


class _SigLipRing(torch.autograd.Function):
    """sum_{i in r, all j} -log sigmoid(z_ij logits_ij) for this rank r, text blocks passed round a ring.

    Forward: the texts move right, one hop per step; at step k rank r holds the texts of rank
    r - k and adds that (n_r, n_{r-k}) block. Backward: the texts move left, so the blocks come
    back in the reverse order, each carrying the gradient of the ranks it has visited; every rank
    adds its share to the block it holds and passes both on; a last hop brings each rank's text
    gradient home. Only the local features are saved; blocks are recomputed in the backward.
    """

    @staticmethod
    def forward(ctx, image, text, scale, bias, rows: list[int], rank: int, group):
        world = len(rows)
        right, left = (rank + 1) % world, (rank - 1) % world
        _, z, logits = _sigmoid_block(image, text, scale, bias, own=True)
        total = -F.logsigmoid(z * logits).sum()
        block = text
        for k in range(1, world):
            block = _shift(block, rows[(rank - k) % world], to=right, frm=left, group=group)  # texts of r - k
            _, z, logits = _sigmoid_block(image, block, scale, bias, own=False)
            total = total - F.logsigmoid(z * logits).sum()
        ctx.save_for_backward(image, text, scale, bias)
        ctx.rows, ctx.rank, ctx.group = rows, rank, group
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        image, text, scale, bias = ctx.saved_tensors
        rows, rank, group = ctx.rows, ctx.rank, ctx.group
        world, dim = len(rows), text.shape[1]
        right, left = (rank + 1) % world, (rank - 1) % world
        g_image, g_text, g_scale, g_bias = _sigmoid_block_grads(image, text, scale, bias, True, grad)
        # the texts of r + 1 (the forward's last block) and their gradient from the ranks visited so far
        block = _shift(text, rows[right], to=left, frm=right, group=group)
        carried = torch.zeros_like(block)
        for m in range(1, world):  # block holds the texts of rank r + m
            gi, gt, gs, gb = _sigmoid_block_grads(image, block, scale, bias, False, grad)
            g_image, g_scale, g_bias, carried = g_image + gi, g_scale + gs, g_bias + gb, carried + gt
            if m < world - 1:
                owner = (rank + m + 1) % world
                packed = torch.cat([block, carried], dim=1)
                packed = _shift(packed, rows[owner], to=left, frm=right, group=group)
                block, carried = packed[:, :dim], packed[:, dim:]
        # the last hop brings home the gradient of this rank's texts, with every other rank's share
        g_text = g_text + _shift(carried, rows[rank], to=left, frm=right, group=group)
        return g_image, g_text, g_scale.to(scale.dtype), g_bias.to(bias.dtype), None, None, None


def siglip_loss_ring(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale, logit_bias, group=None
) -> torch.Tensor:
    """This rank's share l_r of `siglip_loss` over the global batch, in the chunked form of SigLIP.

    Each rank keeps its images; the text features travel round the ring of ranks (W - 1 hops to
    the right), and every rank adds the loss of the (n_r, n_k) block of its images against the
    texts it holds; in the backward the texts travel left, carrying their gradients home. The
    global (M, M) logits split into W x W blocks, rank r sums its row of blocks:

        L   = 1/M   * sum_r sum_k sum_{i in r, j in k} -log sigmoid(z_ij logits_ij)
        l_r = W/M   * sum_k sum_{i in r, j in k} -log sigmoid(z_ij logits_ij),   mean_r l_r = L

    (siglip_loss divides by the batch size M, not M^2; with equal local batches W/M = 1/n, as in
    open_clip's SigLipLoss.) Gradients: the texts of rank r reach every rank, and their gradient
    comes back summed, W * dL/d(local features) (see the module docstring).

    Memory: no rank forms more than one (n_r, n_k) block at a time, nor keeps anything of size M
    for the backward (it saves its own features and recomputes each block as the texts come
    round again), so per-rank peak memory grows with the local batch, not the global one. The
    price is compute and traffic: the backward recomputes every block, and sends the texts again
    with their gradients (about 3(W - 1) n D values per rank per step instead of 2(W - 1) n D).

    image_features, text_features: this rank's (n_r, D); n_r may differ between ranks.
    logit_scale, logit_bias: s and b, as in `siglip_loss`. group: the process group (None: the
    default one). Without an initialised process group, or with one rank, this is `siglip_loss`.
    """
    rank, world = _rank_and_world(group)
    if world == 1:
        return siglip_loss(image_features, text_features, logit_scale, logit_bias)
    scale = _check_scalar("logit_scale", logit_scale, image_features)
    bias = _check_bias(logit_bias, image_features)
    rows = _rows_per_rank(image_features, text_features, world, group)
    total = _SigLipRing.apply(image_features, text_features, scale, bias, rows, rank, group)
    return total * (world / sum(rows))


class SigLipLoss(nn.Module):
    """SigLIP's sigmoid loss as a module; see `siglip_loss` for the formula and shapes.

    SigLipLoss() is the single-process loss; SigLipLoss(distributed="ring", group=None) is
    `siglip_loss_ring`, this rank's share of the loss of the global batch.
    forward(image_features (N, D), text_features (N, D), logit_scale, logit_bias) -> 0-d tensor.
    """

    def __init__(self, distributed: str | None = None, group=None):
        super().__init__()
        self.distributed = _check_option("SigLipLoss", distributed, ("ring",))
        self.group = group

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale, logit_bias
    ) -> torch.Tensor:
        if self.distributed == "ring":
            return siglip_loss_ring(image_features, text_features, logit_scale, logit_bias, self.group)
        return siglip_loss(image_features, text_features, logit_scale, logit_bias)

    def extra_repr(self) -> str:
        return f"distributed={self.distributed!r}" if self.distributed else ""


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
