"""Input transformations against adversarial images, and feature-squeezing detection.

Transformations ("squeezers") act on the model's uint8 crop (B, S, S, 3), where the attacker's
perturbation lives:
- `bits:B`     bit-depth reduction to B bits per channel: round(x * (2^B - 1)) / (2^B - 1)
               (Xu, Evans, Qi, NDSS 2018, "Feature squeezing");
- `median:K`   K x K median filter, scipy.ndimage.median_filter's definition (reflect padding; for
               even K the window is the K pixels ending at this one and the upper median is taken),
               which Xu et al. used (K = 2 on ImageNet);
- `nlmeans:W-P-H` non-local means with search window W, patch P, strength H (Xu et al.'s 11-3-4),
               OpenCV's fastNlMeansDenoisingColored;
- `jpeg:Q`     JPEG re-encoding at quality Q (Das et al. 2017; Guo et al. 2018);
- `resize:F`   down to F times the side and back up, bilinear (Xie et al. 2018 resize rescaling).

Detection (Xu et al.): score = max over squeezers of || p(x) - p(squeeze(x)) ||_1, p the model's
softmax over a label set (the caller's zero-shot labels, or DEFAULT_LABELS: the 80 COCO object
categories with Radford et al.'s 7 templates); an image is flagged when its score exceeds a
threshold chosen on clean images for a 5% false-alarm rate. The idea: an adversarial
perturbation is a fragile, high-frequency signal; squeezing removes it and moves the prediction
a lot, while a clean image's prediction barely moves. The score is in [0, 2].

These defences are not robust to an attacker who knows them (Athalye, Carlini, Wagner 2018,
"Obfuscated gradients"; He et al. 2017 broke feature squeezing adaptively): they raise the cost
of off-the-shelf attacks, which is what the benchmark measures.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from polymodal.errors import InvalidInputError, require
from polymodal.guard.adversarial import PixelBatch, PixelEncoder, label_vectors, pixel_encoder

# The 80 COCO object categories: everyday things a photo shows, a general-purpose label set for
# images of unknown content (the prediction only has to be stable under squeezing, not right).
DEFAULT_LABELS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
DEFAULT_TEMPLATES = "imagenet7"  # Radford et al.'s 7-prompt ensemble: 560 prompts, under a second
# Chosen with `benchmarks/adversarial_robustness.py --select-squeezers` on Flickr photos and their
# 32x32 thumbnails (benchmarks/RESULTS.md): Xu et al.'s ImageNet set (bits:5, median:2,
# nlmeans) separates PGD images from clean ones poorly for lite -- bit-depth reduction moves clean
# predictions more than adversarial ones -- while resizing and a 3x3 median rank best on both the
# training photos 0-99 and the held-out 600-699 (JPEG ties them on photos, trails on thumbnails).
DEFAULT_SQUEEZERS = ("median:3", "resize:0.5")
DEFENCES = ("jpeg:75", "bits:5", "resize:0.5", "median:2", "median:3")
FALSE_ALARM = 0.05

# Thresholds for a 5% false-alarm rate with DEFAULT_LABELS, DEFAULT_TEMPLATES and DEFAULT_SQUEEZERS,
# from `benchmarks/adversarial_robustness.py` ("calibrated_threshold"): clean held-out Flickr photos
# 600-699, which the model never trained on (its own training photos score lower and would set a
# threshold that raises false alarms elsewhere). Other models or label sets: `calibrate`.
# lite: false alarms measured on the other held-out photos 700-799 were 15%, not 5% -- scores pile up
# near the maximum 2 (lite's sharp softmax flips its top label), so the quantile moves a lot.
CALIBRATED: dict[str, float] = {"lite": 1.8581}


# ----------------------------------------------------------------------------------------------
# Transformations on (B, S, S, 3) uint8


def bit_depth(crops: np.ndarray, bits: int) -> np.ndarray:
    levels = 2 ** bits - 1
    x = np.rint(crops.astype(np.float32) / 255.0 * levels) / levels
    return np.rint(x * 255.0).astype(np.uint8)


def median(crops: np.ndarray, size: int) -> np.ndarray:
    # scipy's window for size K centres at K // 2: K // 2 pixels before, (K - 1) // 2 after; its
    # "reflect" mode is numpy's "symmetric" padding; rank K*K // 2 (the upper median when even).
    before, after = size // 2, (size - 1) // 2
    padded = np.pad(crops, ((0, 0), (before, after), (before, after), (0, 0)), mode="symmetric")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(1, 2))  # (B, S, S, 3, K, K)
    flat = windows.reshape(*windows.shape[:4], size * size)
    k = (size * size) // 2
    return np.partition(flat, k, axis=-1)[..., k]


def jpeg(crops: np.ndarray, quality: int) -> np.ndarray:
    out = np.empty_like(crops)
    for i, crop in enumerate(crops):
        buf = io.BytesIO()
        Image.fromarray(crop).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        out[i] = np.asarray(Image.open(buf).convert("RGB"))
    return out


def resize(crops: np.ndarray, factor: float) -> np.ndarray:
    out = np.empty_like(crops)
    for i, crop in enumerate(crops):
        h, w = crop.shape[:2]
        small = Image.fromarray(crop).resize((max(1, round(w * factor)), max(1, round(h * factor))),
                                             Image.Resampling.BILINEAR)
        out[i] = np.asarray(small.resize((w, h), Image.Resampling.BILINEAR))
    return out


def nlmeans(crops: np.ndarray, search: int, patch: int, strength: float) -> np.ndarray:
    cv2 = require("cv2", "guard", "the non-local-means squeezer")
    return np.stack([cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(c), None, strength, strength, patch, search)
                     for c in crops])


@dataclass(frozen=True)
class Squeezer:
    """One transformation, named by its spec ("bits:5", "median:2", "jpeg:75", "resize:0.5",
    "nlmeans:11-3-4")."""

    spec: str

    def __post_init__(self):
        self._parse()  # fail at construction, with the list of kinds

    def _parse(self):
        kind, _, arg = self.spec.partition(":")
        try:
            if kind == "bits" and 1 <= int(arg) <= 8:
                return bit_depth, (int(arg),)
            if kind == "median" and 2 <= int(arg) <= 15:
                return median, (int(arg),)
            if kind == "jpeg" and 1 <= int(arg) <= 100:
                return jpeg, (int(arg),)
            if kind == "resize" and 0 < float(arg) < 1:
                return resize, (float(arg),)
            if kind == "nlmeans":
                search, patch, strength = arg.split("-")
                return nlmeans, (int(search), int(patch), float(strength))
        except ValueError:
            pass
        raise InvalidInputError(
            f"unknown squeezer {self.spec!r}: use bits:1-8, median:2-15, jpeg:1-100, resize:(0,1) or "
            f"nlmeans:SEARCH-PATCH-STRENGTH, e.g. {', '.join(DEFENCES)}"
        )

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
            raise InvalidInputError(f"squeezers take (B, S, S, 3) uint8 crops, got {crops.shape} {crops.dtype}")
        fn, args = self._parse()
        return fn(crops, *args)

    def batch(self, batch: PixelBatch) -> PixelBatch:
        return PixelBatch(self(batch.crops), batch.low_res.copy())


# ----------------------------------------------------------------------------------------------
# Feature-squeezing detection


@dataclass
class SqueezeDetection:
    index: int  # position of the image in the input
    score: float  # max over squeezers of the L1 distance between predictions (0..2)
    flagged: bool  # score > threshold
    threshold: float
    squeezer: str  # the squeezer that gave the maximum
    by_squeezer: dict  # spec -> L1 distance
    label: str  # the top label of the unsqueezed image

    def to_dict(self) -> dict:
        return asdict(self)


class SqueezeDetector:
    """Feature squeezing (Xu et al. 2018) over a label set.

    model: an Embedder, a model name (None: the default `lite`) or a PixelEncoder; native CLIP,
    their ONNX exports and lite work (squeezing needs the model's crop, not gradients).
    labels: the user's label set; None: DEFAULT_LABELS (80 COCO categories) with the imagenet7
    templates. threshold: None takes the calibrated value for this model when labels, templates
    and squeezers are the defaults (CALIBRATED), else call `calibrate(clean_images)` first.
    """

    def __init__(self, model=None, labels: Sequence[str] | None = None, *, templates=None,
                 squeezers: Sequence[str] = DEFAULT_SQUEEZERS, threshold: float | None = None):
        self.encoder = model if isinstance(model, PixelEncoder) else pixel_encoder(model, gradients=False)
        defaults = labels is None and templates is None and tuple(squeezers) == DEFAULT_SQUEEZERS
        self.labels = list(DEFAULT_LABELS if labels is None else labels)
        templates = DEFAULT_TEMPLATES if templates is None and labels is None else templates
        self.texts = label_vectors(self.encoder, self.labels, templates)  # (L, D)
        self.squeezers = [s if isinstance(s, Squeezer) else Squeezer(s) for s in squeezers]
        if not self.squeezers:
            raise InvalidInputError(f"give at least one squeezer, e.g. {list(DEFAULT_SQUEEZERS)}")
        if threshold is None and defaults:
            threshold = CALIBRATED.get(self.encoder.name)
        self.threshold = threshold

    def _batch(self, images) -> PixelBatch:
        return images if isinstance(images, PixelBatch) else self.encoder.prepare(list(images))

    def probabilities(self, batch: PixelBatch) -> np.ndarray:
        """(B, L) softmax of scale * image . label over the label set."""
        logits = self.encoder.logit_scale * torch.from_numpy(self.encoder.encode(batch)) @ self.texts.T
        return logits.softmax(dim=1).numpy()

    def distances(self, images) -> np.ndarray:
        """(B, number of squeezers) L1 distances between the predictions before and after each."""
        batch = self._batch(images)
        p = self.probabilities(batch)
        return np.stack([np.abs(p - self.probabilities(s.batch(batch))).sum(axis=1) for s in self.squeezers], axis=1)

    def scores(self, images) -> np.ndarray:
        """(B,) detection scores: the maximum over squeezers."""
        return self.distances(images).max(axis=1)

    def calibrate(self, clean_images, false_alarm: float = FALSE_ALARM) -> float:
        """Set the threshold to the (1 - false_alarm) quantile of the scores of clean images
        (flagged means strictly above it, so at most that fraction of them is flagged)."""
        if not 0 < false_alarm < 1:
            raise InvalidInputError(f"false_alarm must be in (0, 1), got {false_alarm}")
        scores = self.scores(clean_images)
        if len(scores) < 20:
            raise InvalidInputError(f"calibrate on at least 20 clean images (got {len(scores)}): a quantile "
                                    f"of fewer says little about the false-alarm rate")
        self.threshold = float(np.quantile(scores, 1 - false_alarm, method="higher"))
        return self.threshold

    def detect(self, images) -> list[SqueezeDetection]:
        if self.threshold is None:
            raise InvalidInputError(
                f"no threshold for model {self.encoder.name!r} with these labels/squeezers: call "
                f"detector.calibrate(clean_images) on 20+ clean images like yours, or pass threshold="
            )
        batch = self._batch(images)
        dist = self.distances(batch)
        top = self.probabilities(batch).argmax(axis=1)
        out = []
        for i, row in enumerate(dist):
            j = int(row.argmax())
            out.append(SqueezeDetection(i, float(row[j]), bool(row[j] > self.threshold), float(self.threshold),
                                        self.squeezers[j].spec, {s.spec: float(d) for s, d in zip(self.squeezers, row)},
                                        self.labels[int(top[i])]))
        return out


# ----------------------------------------------------------------------------------------------
# Evaluation of the defences


@dataclass
class DefenceRow:
    transform: str  # squeezer spec, or "none"
    clean_accuracy: float  # top-1 over all clean images after the transformation (its cost)
    adversarial_accuracy: float  # over the attacked images' adversarial versions after it
    recovered: float  # of the attacked images the attack broke, the fraction the transformation puts right
    broken: int  # how many the attack broke

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_defences(encoder: PixelEncoder, clean: PixelBatch, attacked: np.ndarray, adversarial: PixelBatch,
                      texts: torch.Tensor, true: np.ndarray, transforms: Sequence[str] = DEFENCES) -> list[DefenceRow]:
    """Accuracy recovered by each input transformation (the attacker does not know about it).

    clean: all images; attacked: indices of the images that were attacked; adversarial: their
    adversarial versions (in the same order); texts: (K, D) candidates; true: (B,) true indices."""
    true = np.asarray(true)

    def right(batch: PixelBatch, labels: np.ndarray) -> np.ndarray:
        return (torch.from_numpy(encoder.encode(batch)) @ texts.T).argmax(dim=1).numpy() == labels

    broken = ~right(adversarial, true[attacked]) if len(attacked) else np.zeros(0, bool)
    rows = []
    for spec in ("none", *transforms):
        fn = (lambda b: b) if spec == "none" else Squeezer(spec).batch
        clean_ok = right(fn(clean), true)
        adv_ok = right(fn(adversarial), true[attacked]) if len(attacked) else np.zeros(0, bool)
        rows.append(DefenceRow(spec, float(clean_ok.mean()), float(adv_ok.mean()) if len(adv_ok) else float("nan"),
                               float(adv_ok[broken].mean()) if broken.any() else float("nan"), int(broken.sum())))
    return rows


def evaluate_detection(detector: SqueezeDetector, clean: PixelBatch, adversarial: PixelBatch, *,
                       clean_scores: np.ndarray | None = None) -> dict:
    """Detection rate on adversarial images and false-alarm rate on clean ones, at the detector's
    threshold (chosen beforehand on other clean images). clean_scores: `detector.scores(clean)`,
    when already computed."""
    if detector.threshold is None:
        raise InvalidInputError("the detector has no threshold: calibrate it on clean images first")
    clean_scores = detector.scores(clean) if clean_scores is None else np.asarray(clean_scores)
    adv_scores = detector.scores(adversarial)
    return {"threshold": detector.threshold, "clean_images": len(clean_scores),
            "false_alarm_rate": float((clean_scores > detector.threshold).mean()),
            "adversarial_images": len(adv_scores),
            "detection_rate": float((adv_scores > detector.threshold).mean()) if len(adv_scores) else float("nan"),
            "roc_auc": _auc(adv_scores, clean_scores)}


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a random adversarial image > a random clean one's), ties counting half."""
    if not len(positive) or not len(negative):
        return float("nan")
    diff = positive[:, None] - negative[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


__all__ = ["CALIBRATED", "DEFAULT_LABELS", "DEFAULT_SQUEEZERS", "DEFENCES", "DefenceRow", "SqueezeDetection",
           "SqueezeDetector", "Squeezer", "bit_depth", "evaluate_defences", "evaluate_detection", "jpeg", "median",
           "nlmeans", "resize"]
