"""Contrastive losses against plain loop references, in float64 (tight) and float32 (loose)."""

from __future__ import annotations

import math

import pytest
import torch

from polymodal.errors import InvalidInputError
from polymodal.models.losses import (
    ClipLoss,
    MarginContrastiveLoss,
    SigLipLoss,
    clip_loss,
    margin_contrastive_loss,
    margin_contrastive_pairs,
    siglip_loss,
)

TIGHT = dict(rtol=0, atol=1e-6)
LOOSE = dict(rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Loop references: one scalar at a time, float64, no vectorised shortcuts.


def dot(a, b):
    total = torch.zeros((), dtype=torch.float64)
    for k in range(a.shape[0]):
        total = total + a[k] * b[k]
    return total


def sq_dist(a, b):
    total = torch.zeros((), dtype=torch.float64)
    for k in range(a.shape[0]):
        total = total + (a[k] - b[k]) * (a[k] - b[k])
    return total


def ref_clip(img, txt, scale):
    n = img.shape[0]
    logits = [[scale * dot(img[i], txt[j]) for j in range(n)] for i in range(n)]
    rows = torch.zeros((), dtype=torch.float64)
    for i in range(n):
        norm = torch.zeros((), dtype=torch.float64)
        for j in range(n):
            norm = norm + torch.exp(logits[i][j])
        rows = rows + (torch.log(norm) - logits[i][i])
    cols = torch.zeros((), dtype=torch.float64)
    for j in range(n):
        norm = torch.zeros((), dtype=torch.float64)
        for i in range(n):
            norm = norm + torch.exp(logits[i][j])
        cols = cols + (torch.log(norm) - logits[j][j])
    return (rows / n + cols / n) / 2


def ref_siglip(img, txt, scale, bias):
    n = img.shape[0]
    total = torch.zeros((), dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            logit = scale * dot(img[i], txt[j]) + bias
            total = total + torch.log(1 + torch.exp(-z * logit))  # -log sigmoid(z * logit)
    return total / n


def ref_margin_pair(a, b, same, margin):
    d2 = sq_dist(a, b)
    if same:
        return d2
    return torch.clamp(margin - d2, min=0)


def ref_margin_batch(x, labels, margin):
    n = x.shape[0]
    total, count = torch.zeros((), dtype=torch.float64), 0
    for i in range(n):
        for j in range(i + 1, n):
            total = total + ref_margin_pair(x[i], x[j], bool(labels[i] == labels[j]), margin)
            count += 1
    return total / count


def ref_margin_pairs(x1, x2, same, margin):
    n = x1.shape[0]
    total = torch.zeros((), dtype=torch.float64)
    for i in range(n):
        total = total + ref_margin_pair(x1[i], x2[i], bool(same[i]), margin)
    return total / n


# ----------------------------------------------------------------------------------------------
# Helpers


def unit_rows(gen, n, d):
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def leaf(t, dtype=torch.float64):
    return t.detach().to(dtype).clone().requires_grad_(True)


def value_and_grads(fn, *inputs):
    """fn(*inputs) and the gradients of it with respect to every input."""
    out = fn(*inputs)
    grads = torch.autograd.grad(out, inputs)
    return out.detach(), [g.detach() for g in grads]


def compare(fn, ref, inputs, dtype, tol):
    ref_inputs = [leaf(t) for t in inputs]
    ref_val, ref_grads = value_and_grads(ref, *ref_inputs)
    our_inputs = [leaf(t, dtype) for t in inputs]
    val, grads = value_and_grads(fn, *our_inputs)
    assert val.dtype == dtype
    torch.testing.assert_close(val.double(), ref_val, **tol)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g.double(), rg, **tol)


SIZES = [(1, 3), (2, 1), (3, 4), (5, 3), (8, 6)]
DTYPES = [(torch.float64, TIGHT), (torch.float32, LOOSE)]


# ----------------------------------------------------------------------------------------------
# CLIP


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("n,d", SIZES)
def test_clip_matches_reference(n, d, dtype, tol):
    gen = torch.Generator().manual_seed(100 * n + d)
    img, txt = unit_rows(gen, n, d), unit_rows(gen, n, d)
    scale = torch.tensor(math.exp(1.5 + torch.rand((), generator=gen).item()), dtype=torch.float64)
    compare(lambda a, b, s: ClipLoss()(a, b, s), ref_clip, [img, txt, scale], dtype, tol)


def test_clip_gradcheck():
    gen = torch.Generator().manual_seed(0)
    inputs = [leaf(unit_rows(gen, 4, 3)), leaf(unit_rows(gen, 4, 3)), leaf(torch.tensor(7.0))]
    assert torch.autograd.gradcheck(clip_loss, inputs)


def test_clip_aligned_features_give_near_zero_loss():
    n = 6
    feats = torch.eye(n, dtype=torch.float64)  # aligned pairs, orthogonal to every other pair
    loss = clip_loss(feats, feats.clone(), torch.tensor(100.0, dtype=torch.float64))
    assert 0 <= loss.item() < 1e-6
    # and a shuffled pairing is expensive
    assert clip_loss(feats, feats.roll(1, dims=0), torch.tensor(100.0, dtype=torch.float64)).item() > 50


def test_clip_accepts_scale_of_shape_1_and_number():
    gen = torch.Generator().manual_seed(1)
    img, txt = unit_rows(gen, 3, 4), unit_rows(gen, 3, 4)
    expected = clip_loss(img, txt, torch.tensor(5.0, dtype=torch.float64))
    torch.testing.assert_close(clip_loss(img, txt, torch.tensor([5.0], dtype=torch.float64)), expected)
    torch.testing.assert_close(clip_loss(img, txt, 5.0), expected)


def test_clip_gradient_reaches_log_parameter():
    # as in the model: the parameter is the log of the scale, the loss gets its exponential
    gen = torch.Generator().manual_seed(2)
    img, txt = unit_rows(gen, 4, 3), unit_rows(gen, 4, 3)
    log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07), dtype=torch.float64))
    clip_loss(img, txt, log_scale.exp()).backward()
    assert log_scale.grad is not None and log_scale.grad.item() != 0


# ----------------------------------------------------------------------------------------------
# SigLIP


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("n,d", SIZES)
def test_siglip_matches_reference(n, d, dtype, tol):
    gen = torch.Generator().manual_seed(200 * n + d)
    img, txt = unit_rows(gen, n, d), unit_rows(gen, n, d)
    scale = torch.tensor(math.exp(1.0 + 1.5 * torch.rand((), generator=gen).item()), dtype=torch.float64)
    bias = torch.tensor(-5.0 * torch.rand((), generator=gen).item(), dtype=torch.float64)
    compare(lambda a, b, s, c: SigLipLoss()(a, b, s, c), ref_siglip, [img, txt, scale, bias], dtype, tol)


def test_siglip_single_pair():
    gen = torch.Generator().manual_seed(3)
    img, txt = unit_rows(gen, 1, 5), unit_rows(gen, 1, 5)
    scale, bias = torch.tensor(10.0, dtype=torch.float64), torch.tensor(-10.0, dtype=torch.float64)
    compare(siglip_loss, ref_siglip, [img, txt, scale, bias], torch.float64, TIGHT)
    # with one pair the loss is -log sigmoid(s <i, t> + b), nothing else
    logit = 10.0 * sum(img[0, k].item() * txt[0, k].item() for k in range(5)) - 10.0
    expected = math.log(1 + math.exp(-logit))
    assert siglip_loss(img, txt, scale, bias).item() == pytest.approx(expected, abs=1e-12)


def test_siglip_gradcheck():
    gen = torch.Generator().manual_seed(4)
    inputs = [
        leaf(unit_rows(gen, 4, 3)),
        leaf(unit_rows(gen, 4, 3)),
        leaf(torch.tensor(8.0)),
        leaf(torch.tensor(-3.0)),
    ]
    assert torch.autograd.gradcheck(siglip_loss, inputs)


def test_siglip_trains_scale_and_bias_parameters():
    gen = torch.Generator().manual_seed(5)
    img, txt = unit_rows(gen, 4, 3), unit_rows(gen, 4, 3)
    log_scale = torch.nn.Parameter(torch.tensor(math.log(10.0), dtype=torch.float64))
    bias = torch.nn.Parameter(torch.tensor(-10.0, dtype=torch.float64))
    SigLipLoss()(img, txt, log_scale.exp(), bias).backward()
    assert log_scale.grad is not None and log_scale.grad.item() != 0
    assert bias.grad is not None and bias.grad.item() != 0


# ----------------------------------------------------------------------------------------------
# Margin contrastive loss


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("n,d", [(2, 1), (3, 2), (5, 3), (8, 4)])
@pytest.mark.parametrize("margin", [0.5, 1.0, 3.0])
def test_margin_batch_matches_reference(n, d, margin, dtype, tol):
    gen = torch.Generator().manual_seed(300 * n + 10 * d + int(margin * 2))
    # E||x_i - x_j||^2 = margin / 2: pairs on both sides of the margin
    x = 0.5 * math.sqrt(margin / d) * torch.randn(n, d, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 2, (n,), generator=gen)
    labels[0], labels[1] = 0, 1  # at least one dissimilar pair
    # the hinge must be exercised: some dissimilar pair inside the margin
    inside = [sq_dist(x[i], x[j]).item() < margin for i in range(n) for j in range(i + 1, n) if labels[i] != labels[j]]
    assert any(inside)
    loss = MarginContrastiveLoss(margin)
    compare(lambda e: loss(e, labels), lambda e: ref_margin_batch(e, labels, margin), [x], dtype, tol)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("n,d", [(1, 2), (3, 1), (4, 3), (7, 5)])
def test_margin_pairs_matches_reference(n, d, dtype, tol):
    gen = torch.Generator().manual_seed(400 * n + d)
    x1 = 0.5 * torch.randn(n, d, generator=gen, dtype=torch.float64)  # E||x1_i - x2_i||^2 = d / 2
    x2 = 0.5 * torch.randn(n, d, generator=gen, dtype=torch.float64)
    same = torch.rand(n, generator=gen) < 0.5
    same[0] = False  # at least one dissimilar pair ...
    margin = 1.0 + d
    assert any(not same[i] and sq_dist(x1[i], x2[i]).item() < margin for i in range(n))  # ... inside the margin
    loss = MarginContrastiveLoss(margin)
    compare(
        lambda a, b: loss.pairs(a, b, same),
        lambda a, b: ref_margin_pairs(a, b, same, margin),
        [x1, x2],
        dtype,
        tol,
    )
    compare(
        lambda a, b: margin_contrastive_pairs(a, b, same, margin),
        lambda a, b: ref_margin_pairs(a, b, same, margin),
        [x1, x2],
        dtype,
        tol,
    )


def test_margin_batch_equals_pairs_form():
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    i, j = zip(*[(a, b) for a in range(6) for b in range(a + 1, 6)])
    i, j = torch.tensor(i), torch.tensor(j)
    torch.testing.assert_close(
        margin_contrastive_loss(x, labels, 1.5),
        margin_contrastive_pairs(x[i], x[j], labels[i] == labels[j], 1.5),
    )


def test_margin_zero_for_identical_same_label_points():
    x = torch.tensor([[0.3, -1.2], [0.3, -1.2], [0.3, -1.2]], dtype=torch.float64)
    assert margin_contrastive_loss(x, torch.tensor([4, 4, 4])).item() == 0.0


def test_margin_zero_for_different_labels_beyond_margin():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0]], dtype=torch.float64)  # squared dists 4, 9, 13
    assert margin_contrastive_loss(x, torch.tensor([0, 1, 2]), margin=3.5).item() == 0.0
    # mixed: two identical same-label points, one far different-label point
    y = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    assert margin_contrastive_loss(y, torch.tensor([0, 0, 1]), margin=1.0).item() == 0.0
    same = torch.tensor([False, False])
    assert margin_contrastive_pairs(x[:2], x[1:], same, margin=3.5).item() == 0.0


def test_margin_compares_against_squared_distance():
    a = torch.tensor([[0.0]], dtype=torch.float64)
    b = torch.tensor([[0.9]], dtype=torch.float64)  # distance 0.9, squared 0.81
    assert margin_contrastive_pairs(a, b, torch.tensor([False]), 1.0).item() == pytest.approx(0.19)
    assert margin_contrastive_pairs(a, b, torch.tensor([True]), 1.0).item() == pytest.approx(0.81)


# ----------------------------------------------------------------------------------------------
# Errors


def f64(*shape):
    return torch.zeros(*shape, dtype=torch.float64)


SCALE = torch.tensor(10.0, dtype=torch.float64)
BIAS = torch.tensor(-10.0, dtype=torch.float64)


@pytest.mark.parametrize(
    "a,b,shapes",
    [
        (f64(4, 8), f64(3, 8), ["(4, 8)", "(3, 8)"]),
        (f64(4, 8), f64(4, 7), ["(4, 8)", "(4, 7)"]),
    ],
)
def test_feature_shape_mismatch_names_both_shapes(a, b, shapes):
    for call in (
        lambda: ClipLoss()(a, b, SCALE),
        lambda: SigLipLoss()(a, b, SCALE, BIAS),
        lambda: MarginContrastiveLoss().pairs(a, b, torch.ones(4, dtype=torch.bool)),
    ):
        with pytest.raises(InvalidInputError) as info:
            call()
        for s in shapes:
            assert s in str(info.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda: clip_loss(f64(4), f64(4), SCALE),  # not (N, D)
        lambda: clip_loss(f64(0, 3), f64(0, 3), SCALE),  # empty batch
        lambda: clip_loss([[1.0]], [[1.0]], SCALE),  # not tensors
        lambda: clip_loss(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), SCALE),
        lambda: clip_loss(f64(2, 3), torch.zeros(2, 3), SCALE),  # dtypes differ
        lambda: clip_loss(f64(2, 3), f64(2, 3), torch.ones(2)),  # scale not scalar
        lambda: clip_loss(f64(2, 3), f64(2, 3), None),
        lambda: siglip_loss(f64(2, 3), f64(2, 3), SCALE, None),  # no bias
        lambda: siglip_loss(f64(2, 3), f64(2, 3), SCALE, torch.zeros(2, 2)),
        lambda: MarginContrastiveLoss(margin=0.0),
        lambda: MarginContrastiveLoss(margin=-1.0),
        lambda: MarginContrastiveLoss(margin=float("nan")),
        lambda: MarginContrastiveLoss()(f64(1, 3), torch.tensor([0])),  # no pair
        lambda: MarginContrastiveLoss()(f64(3, 3), torch.tensor([0, 1])),  # labels length
        lambda: MarginContrastiveLoss()(f64(3, 3), [0, 1, 2]),  # labels not a tensor
        lambda: MarginContrastiveLoss().pairs(f64(3, 2), f64(3, 2), torch.ones(2, dtype=torch.bool)),
        lambda: MarginContrastiveLoss().pairs(f64(3, 2), f64(3, 2), torch.ones(3)),  # not bool
        lambda: margin_contrastive_pairs(f64(3, 2), f64(3, 2), torch.ones(3, dtype=torch.bool), margin=0),
    ],
)
def test_bad_input_raises_invalid_input_error(call):
    with pytest.raises(InvalidInputError):
        call()


def test_labels_length_error_names_both_shapes():
    with pytest.raises(InvalidInputError, match=r"\(2,\).*\(3, 3\)"):
        margin_contrastive_loss(f64(3, 3), torch.tensor([0, 1]))
