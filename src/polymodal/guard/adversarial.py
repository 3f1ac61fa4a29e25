"""Adversarial images against dual encoders: a differentiable pixel view, FGSM and PGD, and the
attack success rate against the perturbation budget.

Threat model (white box, as in the papers): the attacker controls the pixels the image tower
takes, i.e. the model's preprocessed crop (B, 3, S, S) in [0, 1] before mean/std normalisation,
and knows the weights. A perturbation delta is allowed when ||delta||_p <= eps, p in {inf, 2}, and
x + delta stays a valid image ([0, 1]).

- FGSM (Goodfellow, Shlens, Szegedy 2015, "Explaining and harnessing adversarial examples"):
  x' = clip(x + eps * sign(grad_x L)); its L2 form ("fast gradient method") steps
  eps * grad / ||grad||_2.
- PGD (Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks"):
  x^0 = x + uniform noise in the ball (random start), then
  x^{t+1} = Proj_{B(x, eps) and [0, 1]}(x^t + alpha * sign(grad_x L)) (L2: alpha * grad / ||grad||).
  With one step, no random start and alpha = eps it is FGSM (tests/test_guard_adversarial.py).

The loss L is the cross-entropy of the model's own zero-shot logits, scale * image . text over a
set of candidate texts (class prompts for zero-shot classification, captions for retrieval):
untargeted attacks ascend -log P(true texts), targeted ones ascend log P(target text). SigLIP-style
models score each pair with a sigmoid; their argmax over candidates is the softmax's, so the same
loss serves them.

Which models: native CLIP-family models (`polymodal.embed.native.ClipEmbedder`: clip-vit-*,
clip-tiny-random, open_clip/OpenAI/transformers CLIP checkpoints loaded natively) and `lite`
(its PyTorch backbone; the ONNX Runtime path it uses by default has no gradients). Models run
through the transformers or ONNX backends get a clear error.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from polymodal.embed.base import Embedder
from polymodal.errors import InvalidInputError

NORMS = ("linf", "l2")
WORKING_MODELS = ("native CLIP-family models (clip-vit-b-32, clip-vit-b-16, clip-vit-l-14, clip-tiny-random, "
                  "OpenAI/open_clip checkpoints, transformers CLIP directories) and lite")


# ----------------------------------------------------------------------------------------------
# The pixel view of a dual encoder


@dataclass
class PixelBatch:
    """Images as the image tower sees them, before mean/std normalisation."""

    crops: np.ndarray  # (B, S, S, 3) uint8: the model's resize + centre crop
    low_res: np.ndarray  # (B,) bool: the source image was small (lite's small-image path; others ignore it)

    def pixels(self) -> torch.Tensor:
        """(B, 3, S, S) float32 in [0, 1]."""
        return torch.from_numpy(self.crops).permute(0, 3, 1, 2).float().div(255.0)

    def with_pixels(self, pixels: torch.Tensor) -> "PixelBatch":
        """The same images with new pixels, rounded to 8 bits (what a saved PNG would hold)."""
        return PixelBatch(to_uint8(pixels), self.low_res.copy())

    def select(self, index) -> "PixelBatch":
        return PixelBatch(self.crops[index], self.low_res[index])

    def __len__(self) -> int:
        return len(self.crops)


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """(B, 3, S, S) in [0, 1] -> (B, S, S, 3) uint8, rounded to the nearest level."""
    return pixels.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy().copy()


class PixelEncoder:
    """An Embedder seen from its pixels: decode and crop (`prepare`), the embedder's own fast
    inference (`encode`), and, where the model allows, differentiable features (`features`)."""

    differentiable = False

    def __init__(self, embedder: Embedder):
        self.embedder = embedder
        self.name = embedder.name
        self.logit_scale = float(embedder.logit_scale)
        self.transform = embedder.transform
        self.size = self.transform.size
        self.mean, self.std = self.transform.mean, self.transform.std  # (1, 3, 1, 1)

    # the embedder's per-image hook returns a crop (CLIP, ONNX) or (crop, low_res) (lite)
    def _split(self, prepared) -> tuple[np.ndarray, bool]:
        return prepared, False

    def _join(self, crop: np.ndarray, low_res: bool):
        return crop

    def prepare(self, images: Sequence) -> PixelBatch:
        """Paths, bytes, PIL images or arrays -> the model's uint8 crops (MediaError on a bad one)."""
        from polymodal.media import describe_source, load_image

        crops, flags = [], []
        for index, item in enumerate(images):
            image = load_image(item, draft_size=self.embedder.draft_size(), source=describe_source(item, index))
            crop, low_res = self._split(self.embedder._prepare_image(image))
            crops.append(crop)
            flags.append(low_res)
        if not crops:
            raise InvalidInputError("no images given: pass at least one image")
        return PixelBatch(np.stack(crops), np.asarray(flags, dtype=bool))

    def encode(self, batch: PixelBatch, *, batch_size: int = 64) -> np.ndarray:
        """(B, dim) unit vectors through the embedder's own inference path (no gradients)."""
        out = []
        for start in range(0, len(batch), batch_size):
            part = [self._join(c, bool(s)) for c, s in zip(batch.crops[start:start + batch_size],
                                                          batch.low_res[start:start + batch_size])]
            out.append(np.asarray(self.embedder._encode_image_batch(part), dtype=np.float32))
        vectors = np.concatenate(out)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def features(self, pixels: torch.Tensor, low_res: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """(B, 3, S, S) pixels in [0, 1] -> (B, dim) unit features, differentiable in `pixels`."""
        raise InvalidInputError(
            f"model {self.name!r} ({type(self.embedder).__name__}) runs without gradients, so it cannot be "
            f"attacked with gradient methods; models that can: {WORKING_MODELS}"
        )

    def text_vectors(self, texts: Sequence[str]) -> torch.Tensor:
        """(K, dim) unit text vectors as a tensor."""
        return torch.from_numpy(self.embedder.encode_texts(list(texts)))

    def _check(self, pixels: torch.Tensor) -> None:
        if pixels.ndim != 4 or pixels.shape[1] != 3 or tuple(pixels.shape[2:]) != (self.size, self.size):
            raise InvalidInputError(
                f"pixels must have shape (B, 3, {self.size}, {self.size}) for {self.name!r}, got "
                f"{tuple(pixels.shape)}; use encoder.prepare(images).pixels()"
            )

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        self._check(pixels)
        return (pixels - self.mean) / self.std


class ClipPixelEncoder(PixelEncoder):
    """Native CLIP-family models (and, without gradients, their ONNX exports)."""

    def __init__(self, embedder: Embedder):
        super().__init__(embedder)
        from polymodal.embed.native import ClipEmbedder

        self.differentiable = isinstance(embedder, ClipEmbedder)

    def features(self, pixels, low_res=None):
        if not self.differentiable:
            return super().features(pixels, low_res)
        # Always the fp32 model: a bf16 twin would quantise the gradient for no gain here.
        return self.embedder.model.encode_image(self._normalise(pixels), normalize=True)  # (B, D)


class LitePixelEncoder(PixelEncoder):
    """`lite`: the PyTorch backbone (the ONNX Runtime session it uses by default has no gradients;
    `encode` keeps it, and the two agree on clean inputs to ~1e-6)."""

    differentiable = True

    def __init__(self, embedder: Embedder):
        super().__init__(embedder)
        self.tower = _fold_batchnorm(embedder.tower)

    def _split(self, prepared):
        return prepared

    def _join(self, crop, low_res):
        return crop, low_res

    def features(self, pixels, low_res=None):
        x = self._normalise(pixels).contiguous(memory_format=torch.channels_last)  # (B, 3, 224, 224)
        if low_res is None:
            low_res = torch.zeros(len(pixels), dtype=torch.bool)
        low_res = torch.as_tensor(np.asarray(low_res, dtype=bool))
        return self.tower(x, low_res)  # (B, 384) unit; features_fn None = PyTorch backbone


def _fold_batchnorm(tower):
    """A copy of lite's image tower whose backbone has each eval-mode BatchNorm folded into the
    convolution before it (w' = w * gamma / sigma, b' = beta - mu * gamma / sigma): the same
    function, and the batch-norm forward and backward, a third of an attack step's time, are gone.
    Everything but the backbone is shared with the embedder's tower."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from polymodal.models.lite import LiteImageTower

    backbone = copy.deepcopy(tower.backbone).eval()
    pairs = [(backbone, "_conv_stem", "_bn0"), (backbone, "_conv_head", "_bn1")]
    for block in backbone._blocks:
        if block.expand:
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for module, conv, bn in pairs:
        setattr(module, conv, fuse_conv_bn_eval(getattr(module, conv), getattr(module, bn)))
        setattr(module, bn, torch.nn.Identity())
    backbone.requires_grad_(False)  # attacks need input gradients only
    folded = LiteImageTower(backbone, tower.class_embeddings, tower.low_res_log_prior, tower.head, tower.config,
                            tower.low_res_fc)
    return folded.eval().to(memory_format=torch.channels_last)


def pixel_encoder(embedder: Embedder | str | None = None, *, gradients: bool = True) -> PixelEncoder:
    """The pixel view of `embedder` (an Embedder or a model name; None: the default model).
    gradients=True (for attacks) refuses models that cannot give them; False (for detection and
    defences, which only run the model) also takes ONNX exports of CLIP models."""
    if not isinstance(embedder, Embedder):
        from polymodal.embed.resolve import load_embedder

        embedder = load_embedder(embedder)
    from polymodal.backends.onnx import OnnxEmbedder
    from polymodal.embed.lite import LiteEmbedder
    from polymodal.embed.native import ClipEmbedder

    if isinstance(embedder, LiteEmbedder):
        encoder: PixelEncoder = LitePixelEncoder(embedder)
    elif isinstance(embedder, (ClipEmbedder, OnnxEmbedder)):
        encoder = ClipPixelEncoder(embedder)
    else:
        raise InvalidInputError(
            f"model {embedder.name!r} runs through {type(embedder).__name__}, whose preprocessing and gradients "
            f"polymodal cannot reach; adversarial attacks and feature squeezing work with {WORKING_MODELS}"
        )
    if gradients and not encoder.differentiable:
        encoder.features(torch.zeros(1, 3, encoder.size, encoder.size))  # raises the explanation
    return encoder


# ----------------------------------------------------------------------------------------------
# What the attacker optimises


@dataclass
class Objective:
    """Cross-entropy of the zero-shot logits over K candidate texts; `loss` is what attacks ascend.

    untargeted: mask marks each image's true texts (its class, or its matching captions);
      loss = -log sum_{k in mask} softmax_k, success = the top text is not a true one.
    targeted:   mask marks the target text; loss = log softmax_target, success = the top text is it.
    """

    texts: torch.Tensor  # (K, D) unit rows
    mask: torch.Tensor  # (B, K) bool
    targeted: bool
    scale: float

    @classmethod
    def untargeted(cls, texts: torch.Tensor, true, scale: float) -> "Objective":
        return cls(texts, _mask(true, len(texts)), False, float(scale))

    @classmethod
    def targeted_at(cls, texts: torch.Tensor, target, scale: float, batch: int | None = None) -> "Objective":
        """target: one index for every image (then give `batch`) or (B,) indices."""
        if np.ndim(target) == 0:
            if batch is None:
                raise InvalidInputError("a single target index needs the batch size: targeted_at(..., batch=B)")
            target = [int(target)] * batch
        return cls(texts, _mask(target, len(texts)), True, float(scale))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * features @ self.texts.T  # (B, K)

    def loss(self, features: torch.Tensor) -> torch.Tensor:
        """(B,) per-image loss to maximise."""
        logits = self.logits(features)
        log_p = torch.logsumexp(logits.masked_fill(~self.mask, -math.inf), dim=1) - torch.logsumexp(logits, dim=1)
        return log_p if self.targeted else -log_p

    def success(self, features: torch.Tensor) -> torch.Tensor:
        """(B,) bool: the attack's goal holds for these features."""
        hit = self.mask.gather(1, self.logits(features).argmax(dim=1, keepdim=True)).squeeze(1)
        return hit if self.targeted else ~hit

    def rows(self, index) -> "Objective":
        return Objective(self.texts, self.mask[index], self.targeted, self.scale)


def _mask(labels, k: int) -> torch.Tensor:
    """(B,) indices or a (B, K) boolean mask -> (B, K) bool."""
    arr = np.asarray(labels)
    if arr.ndim == 2:
        if arr.shape[1] != k or arr.dtype != bool:
            raise InvalidInputError(f"a label mask must be (B, {k}) bool, got {arr.shape} {arr.dtype}")
        return torch.from_numpy(arr.copy())
    if arr.ndim != 1 or (arr.size and (arr.min() < 0 or arr.max() >= k)):
        raise InvalidInputError(f"labels must be indices in 0..{k - 1} (one per image), got {arr.tolist()[:10]}")
    mask = torch.zeros(len(arr), k, dtype=torch.bool)
    mask[torch.arange(len(arr)), torch.from_numpy(arr.astype(np.int64))] = True
    return mask


# ----------------------------------------------------------------------------------------------
# FGSM and PGD


def _check_budget(norm: str, eps: float) -> None:
    if norm not in NORMS:
        raise InvalidInputError(f"norm {norm!r} is not one of {NORMS}")
    if not eps >= 0:
        raise InvalidInputError(f"eps must be >= 0, got {eps}")


def _flat_norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)  # (B, 1, 1, 1)


def _ascent(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of unit size in the norm: sign(g) for L-inf, g/||g|| for L2."""
    return grad.sign() if norm == "linf" else grad / _flat_norm(grad)


def project(adv: torch.Tensor, clean: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Onto {x : ||x - clean|| <= eps} and then [0, 1]. Clipping to [0, 1] only shrinks each
    coordinate of delta towards 0 (clean is in [0, 1]), so the result stays inside the ball."""
    delta = adv - clean
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * (eps / _flat_norm(delta)).clamp(max=1.0)
    return (clean + delta).clamp(0.0, 1.0)


def _gradient(encoder: PixelEncoder, x: torch.Tensor, objective: Objective,
              low_res) -> tuple[torch.Tensor, torch.Tensor]:
    """(d loss / d x, features of x). autograd.grad computes only the input's gradient: no weight
    gradients are formed or accumulated in the model."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        features = encoder.features(x, low_res)
        grad, = torch.autograd.grad(objective.loss(features).sum(), x)
    return grad, features.detach()


def fgsm(encoder: PixelEncoder, pixels: torch.Tensor, objective: Objective, *, eps: float,
         norm: str = "linf", low_res=None) -> torch.Tensor:
    """One signed (L-inf) or normalised (L2) gradient step of size eps, clipped to [0, 1]."""
    _check_budget(norm, eps)
    grad, _ = _gradient(encoder, pixels, objective, low_res)
    return project(pixels + eps * _ascent(grad, norm), pixels, eps, norm).detach()


def random_start(pixels: torch.Tensor, eps: float, norm: str, generator: torch.Generator) -> torch.Tensor:
    """A uniform point of the eps-ball around `pixels` (L2: uniform in volume, radius eps * u^(1/n))."""
    if norm == "linf":
        delta = (torch.rand(pixels.shape, generator=generator) * 2 - 1) * eps
    else:
        direction = torch.randn(pixels.shape, generator=generator)
        n = pixels[0].numel()
        radius = eps * torch.rand(len(pixels), generator=generator).pow(1.0 / n).view(-1, 1, 1, 1)
        delta = direction / _flat_norm(direction) * radius
    return project(pixels + delta, pixels, eps, norm)


def pgd(encoder: PixelEncoder, pixels: torch.Tensor, objective: Objective, *, eps: float, norm: str = "linf",
        steps: int = 10, step_size: float | None = None, random_init: bool = True, seed: int = 0,
        early_stop: bool = False, low_res=None) -> torch.Tensor:
    """Projected gradient ascent on `objective.loss` inside the eps-ball (Madry et al. 2018).

    step_size: alpha, default 2.5 * eps / steps (Madry et al.'s rule: enough to cross the ball and
      back). early_stop: freeze an image at the first iterate that meets the goal (the convention of
      success-rate evaluations such as AutoAttack; without it the last iterate is returned, which
      may have drifted back)."""
    _check_budget(norm, eps)
    if steps < 1:
        raise InvalidInputError(f"steps must be at least 1, got {steps}")
    alpha = 2.5 * eps / steps if step_size is None else float(step_size)
    clean = pixels.detach()
    low_res = None if low_res is None else np.asarray(low_res, dtype=bool)
    if random_init and eps > 0:
        x = random_start(clean, eps, norm, torch.Generator().manual_seed(seed))
    else:
        x = clean.clone()
    active = torch.ones(len(x), dtype=torch.bool)
    for _ in range(steps):
        rows = active.nonzero().squeeze(1)
        if len(rows) == 0:
            break
        part = objective.rows(rows)
        lr = None if low_res is None else low_res[rows.numpy()]
        grad, features = _gradient(encoder, x[rows], part, lr)
        stepped = project(x[rows] + alpha * _ascent(grad, norm), clean[rows], eps, norm)
        if early_stop:  # rows already at their goal keep the iterate that reached it
            done = part.success(features)
            stepped = torch.where(done.view(-1, 1, 1, 1), x[rows], stepped)
            active[rows[done]] = False
        x[rows] = stepped
    return x.detach()


# ----------------------------------------------------------------------------------------------
# Success rate against the budget


@dataclass
class Budget:
    norm: str  # "linf" | "l2"
    eps: float  # in [0, 1] pixel units

    def label(self) -> str:
        if self.norm == "linf":
            return f"Linf {self.eps * 255:g}/255"
        return f"L2 {self.eps:g}"


@dataclass
class RobustnessRow:
    attack: str  # "fgsm" | "pgd"
    goal: str  # "untargeted" | "targeted"
    budget: str  # e.g. "Linf 2/255"
    norm: str
    eps: float
    images: int  # all images measured
    attacked: int  # images right when clean (and, targeted, whose true texts do not include the target)
    successes: int  # attacked images whose adversarial version, rounded to 8 bits, meets the goal
    success_rate: float  # successes / attacked
    success_rate_float: float  # the same before rounding to 8 bits (the papers' measure)
    accuracy: float  # top-1 accuracy (R@1 for retrieval) over all images after the attack

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AttackRun:
    """One attack at one budget: the adversarial images and which of them succeeded."""

    row: RobustnessRow
    attacked: np.ndarray  # indices (into the batch) of the images that were attacked
    adversarial: PixelBatch  # their adversarial versions, rounded to 8 bits (what an image file holds)
    success: np.ndarray  # (len(attacked),) bool


def best_texts(encoder: PixelEncoder, batch: PixelBatch, texts: torch.Tensor) -> torch.Tensor:
    """(B, 1) index of each image's best text, through the model's fast inference path."""
    return (torch.from_numpy(encoder.encode(batch)) @ texts.T).argmax(dim=1, keepdim=True)


def attack_batch(encoder: PixelEncoder, batch: PixelBatch, texts: torch.Tensor, true, budget: Budget, *,
                 attack: str = "pgd", target=None, steps: int = 10, step_size: float | None = None,
                 random_init: bool = True, early_stop: bool = True, seed: int = 0, chunk: int = 16,
                 clean_top: torch.Tensor | None = None) -> AttackRun:
    """Attack the images of `batch` that the model gets right, and measure the result.

    texts: (K, D) candidate text vectors; true: (B,) indices or (B, K) mask of each image's true
    texts; target: None (untargeted) or (B,) target indices. Only images right when clean (and,
    when targeted, not already of the target class) are attacked and counted. Success is measured
    on the adversarial images rounded to 8 bits. clean_top: (B, 1) best text of each clean image,
    to reuse across budgets (computed when None)."""
    if attack not in ("pgd", "fgsm"):
        raise InvalidInputError(f"attack {attack!r} is not 'pgd' or 'fgsm'")
    _check_budget(budget.norm, budget.eps)
    true_mask = _mask(true, len(texts))
    if len(true_mask) != len(batch):
        raise InvalidInputError(f"{len(batch)} images but {len(true_mask)} labels")
    clean_top = best_texts(encoder, batch, texts) if clean_top is None else clean_top
    clean_right = true_mask.gather(1, clean_top).squeeze(1).numpy()
    eligible = clean_right.copy()
    if target is not None:
        target = np.asarray(target).astype(np.int64)
        if target.shape != (len(batch),):
            raise InvalidInputError(f"target must give one index per image ({len(batch)}), got shape {target.shape}")
        eligible &= ~true_mask[torch.arange(len(batch)), torch.from_numpy(target)].numpy()
        objective = Objective.targeted_at(texts, target, encoder.logit_scale)
    else:
        objective = Objective(texts, true_mask, False, encoder.logit_scale)
    chosen = np.flatnonzero(eligible)
    crops, float_success = [], []
    for start in range(0, len(chosen), chunk):
        idx = chosen[start:start + chunk]
        part = batch.select(idx)
        obj = objective.rows(torch.from_numpy(idx))
        x = part.pixels()
        if budget.eps == 0:  # the ball is the image itself
            adv = x
        elif attack == "fgsm":
            adv = fgsm(encoder, x, obj, eps=budget.eps, norm=budget.norm, low_res=part.low_res)
        else:
            adv = pgd(encoder, x, obj, eps=budget.eps, norm=budget.norm, steps=steps, step_size=step_size,
                      random_init=random_init, seed=seed + start, early_stop=early_stop, low_res=part.low_res)
        crops.append(to_uint8(adv))
        if budget.eps > 0:
            with torch.no_grad():
                float_success.append(obj.success(encoder.features(adv, part.low_res)).numpy())
    size = encoder.size
    adversarial = PixelBatch(np.concatenate(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
                             batch.low_res[chosen].copy())
    right = clean_right.copy()  # the images not attacked keep their clean answer
    success = np.zeros(0, bool)
    if len(chosen):
        rows = torch.from_numpy(chosen)
        top = best_texts(encoder, adversarial, texts)
        right[chosen] = true_mask[rows].gather(1, top).squeeze(1).numpy()
        success = objective.mask[rows].gather(1, top).squeeze(1).numpy() if target is not None else ~right[chosen]
    row = RobustnessRow(attack, "targeted" if target is not None else "untargeted", budget.label(), budget.norm,
                        float(budget.eps), len(batch), int(len(chosen)), int(success.sum()),
                        float(success.sum() / max(len(chosen), 1)),
                        float(np.concatenate(float_success).sum() / len(chosen)) if float_success else 0.0,
                        float(right.mean()))
    return AttackRun(row, chosen, adversarial, success)


def robustness_curve(encoder: PixelEncoder, batch: PixelBatch, texts: torch.Tensor, true,
                     budgets: Sequence[Budget], **kwargs) -> list[RobustnessRow]:
    """`attack_batch` at each budget (same keyword arguments): the success rate against eps."""
    clean_top = best_texts(encoder, batch, texts)
    return [attack_batch(encoder, batch, texts, true, b, clean_top=clean_top, **kwargs).row for b in budgets]


def label_vectors(encoder: PixelEncoder, labels: Sequence[str], templates=None) -> torch.Tensor:
    """(L, D) zero-shot class vectors: the template-ensemble mean, as `tasks.zeroshot` builds them."""
    from polymodal.tasks.zeroshot import ZeroShotClassifier

    return torch.from_numpy(ZeroShotClassifier(encoder.embedder, labels, templates).label_vectors.astype(np.float32))


__all__ = ["AttackRun", "Budget", "ClipPixelEncoder", "LitePixelEncoder", "NORMS", "Objective", "PixelBatch",
           "PixelEncoder", "RobustnessRow", "attack_batch", "best_texts", "fgsm", "label_vectors", "pgd",
           "pixel_encoder", "project", "random_start", "robustness_curve", "to_uint8"]
