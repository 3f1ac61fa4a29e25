"""Build src/polymodal/models/weights/lite.safetensors: everything `lite` computes offline.

    python scripts/train_lite.py [--data ../shared/data] [--out PATH] [--seed 0]

1. Text embeddings of the 1000 ImageNet classes ("lemmas: definition") with MiniLM, and from
   them the taxonomic prior for small images: log n_c, n_c = number of classes whose text has
   cosine > TAXONOMY_COSINE with class c's (itself included; 120 dog breeds -> n about 60).
2. The low-resolution classifier: the classifier's last layer distilled so that on the features
   of a 32x32 thumbnail (upscaled as any small image is) it predicts the softmax the original
   classifier gives the full-resolution view. Views: each training photo, plus AUG_VIEWS random
   crops and flips of it; labels are not used, only the classifier's own outputs.
3. The LiT-style head: a linear map from image features to MiniLM space, trained with the CLIP
   loss on (image, caption) pairs, both towers locked; its mixing weights are chosen on the
   validation split (photos; thumbnails through the whole small-image path).

Splits (unique images in captions.jsonl order): flickr8k-subset 0-499 train, 500-599 validation,
600-799 held out for evaluation (never seen here); coco-mini all 80 images train. CIFAR-10 is
never read: zero-shot figures are measured on it afterwards, with nothing fitted to it.
Deterministic for a given seed on one machine (torch and numpy seeded, single-process).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from polymodal.eval.retrieval import read_captions, recall_at_k  # noqa: E402
from polymodal.media import load_image  # noqa: E402
from polymodal.models.clip import PreprocessConfig  # noqa: E402
from polymodal.models.efficientnet_lite import EfficientNetLite0, load_pretrained  # noqa: E402
from polymodal.models.lite import WEIGHTS, LiteConfig, LiteImageTower, class_texts  # noqa: E402
from polymodal.models.losses import clip_loss  # noqa: E402
from polymodal.models.minilm import MiniLMEncoder  # noqa: E402
from polymodal.models.preprocess import ImageTransform  # noqa: E402

FLICKR_TRAIN, FLICKR_VAL = slice(0, 500), slice(500, 600)
THUMBNAIL = 32  # side of the thumbnails the low-resolution prior is measured on
MIXES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
TAXONOMY_COSINE = 0.5  # "same basic-level concept": about the top 1% of class-text pairs
AUG_VIEWS = 2  # random crops (35-100% of the area, aspect 3/4-4/3, random flip) per training photo
DISTIL_STEPS, DISTIL_LR, DISTIL_L2 = 300, 1e-3, 1e-3


def embed_texts(encoder: MiniLMEncoder, texts: list[str], batch: int = 256) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([encoder(texts[i:i + batch])[0] for i in range(0, len(texts), batch)]))


@torch.inference_mode()
def image_outputs(backbone, transform, images: list[Image.Image], batch: int = 32):
    feats, logits = [], []
    for i in range(0, len(images), batch):
        f, z = backbone(transform(images[i:i + batch]))
        feats.append(f)
        logits.append(z)
    return torch.cat(feats), torch.cat(logits)


def thumbnails(images: list[Image.Image]) -> list[Image.Image]:
    return [im.resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BICUBIC) for im in images]


def random_view(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random crop (35-100% of the area, aspect ratio 3/4-4/3) of `image`, mirrored half the time."""
    w, h = image.size
    for _ in range(10):
        area = rng.uniform(0.35, 1.0) * w * h
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
        if cw <= w and ch <= h:
            x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
            image = image.crop((x, y, x + cw, y + ch))
            break
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def taxonomic_log_prior(class_emb: torch.Tensor) -> torch.Tensor:
    """(1000, 384) unit class-text embeddings -> (1000,) log n_c, n_c = #classes with cosine > threshold."""
    return ((class_emb @ class_emb.T) > TAXONOMY_COSINE).sum(1).float().log()


def distil_low_res_classifier(fc: torch.nn.Linear, thumb_feats: torch.Tensor, full_logits: torch.Tensor) -> torch.nn.Linear:
    """fc with weight W + delta, delta minimising the cross-entropy between softmax(full_logits)
    (teacher: the original classifier on the full-resolution views, (N, 1000)) and the student's
    softmax on the thumbnails' features (N, 1280), plus DISTIL_L2 * |delta|^2. The bias stays
    frozen so the student does not learn the training photos' class frequencies. Full batch,
    deterministic (delta starts at zero)."""
    w0, b0 = fc.weight.detach().clone(), fc.bias.detach().clone()
    teacher = full_logits.softmax(-1)
    delta = torch.zeros_like(w0, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=DISTIL_LR)
    for _ in range(DISTIL_STEPS):
        student = thumb_feats @ (w0 + delta).T + b0
        loss = -(teacher * student.log_softmax(-1)).sum(1).mean() + DISTIL_L2 * (delta ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = torch.nn.Linear(w0.shape[1], w0.shape[0])
    with torch.no_grad():
        # round the delta to fp16 here, as it is shipped, so validation sees the shipped model
        out.weight.copy_(w0 + delta.detach().half().float())
        out.bias.copy_(b0)
    return out


def train_head(features, text_targets, pair_image, seed: int, epochs: int = 60, lr: float = 1e-3,
               weight_decay: float = 0.05) -> torch.nn.Linear:
    """CLIP loss between head(image features) and the fixed caption embeddings, over batches of
    pairs with distinct images; the temperature is learned as in CLIP."""
    torch.manual_seed(seed)
    head = torch.nn.Linear(features.shape[1], text_targets.shape[1])
    log_scale = torch.nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
    opt = torch.optim.AdamW([*head.parameters(), log_scale], lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    mean, std = features.mean(0), features.std(0) + 1e-6
    head.register_buffer("mean", mean)
    head.register_buffer("std", std)
    pairs = torch.arange(len(pair_image))
    for _ in range(epochs):
        for chunk in pairs[torch.randperm(len(pairs), generator=gen)].split(128):
            # keep one caption per image in a batch, so the off-diagonal pairs are true negatives
            _, first = np.unique(pair_image[chunk].numpy(), return_index=True)
            chunk = chunk[torch.from_numpy(np.sort(first))]
            img = F.normalize(head((features[pair_image[chunk]] - mean) / std), dim=-1)
            loss = clip_loss(img, text_targets[chunk], log_scale.exp().clamp(max=100))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head


def fold_normalisation(head: torch.nn.Linear) -> torch.nn.Linear:
    """head((f - mean) / std) as one Linear on raw features."""
    folded = torch.nn.Linear(head.in_features, head.out_features)
    with torch.no_grad():
        folded.weight.copy_(head.weight / head.std)
        folded.bias.copy_(head.bias - (head.weight * (head.mean / head.std)).sum(1))
    return folded


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    start = time.time()

    encoder = MiniLMEncoder()
    backbone = load_pretrained()
    transform = ImageTransform(PreprocessConfig(size=224, mean=EfficientNetLite0.MEAN, std=EfficientNetLite0.STD))
    print("1/4 class text embeddings", flush=True)
    class_emb = embed_texts(encoder, class_texts()).half().float()  # rounded as shipped
    low_res_log_prior = taxonomic_log_prior(class_emb)

    train = [read_captions(args.data / "flickr8k-subset/captions.jsonl", FLICKR_TRAIN),
             read_captions(args.data / "coco-mini/captions.jsonl")]
    val = read_captions(args.data / "flickr8k-subset/captions.jsonl", FLICKR_VAL)
    train_images = [load_image(p) for t in train for p in t.images]
    print(f"2/4 low-resolution classifier distilled on {len(train_images)} photos x {1 + AUG_VIEWS} views", flush=True)
    feats, full_logits = image_outputs(backbone, transform, train_images)
    thumb_feats, _ = image_outputs(backbone, transform, thumbnails(train_images))
    rng = np.random.default_rng(args.seed)
    distil_thumb, distil_full = [thumb_feats], [full_logits]
    for _ in range(AUG_VIEWS):
        views = [random_view(im, rng) for im in train_images]
        distil_full.append(image_outputs(backbone, transform, views)[1])
        distil_thumb.append(image_outputs(backbone, transform, thumbnails(views))[0])
    low_res_fc = distil_low_res_classifier(backbone._fc, torch.cat(distil_thumb), torch.cat(distil_full))

    print("3/4 caption embeddings, head", flush=True)
    captions, pair_image, offset = [], [], 0
    for t in train:
        captions += t.captions
        pair_image += [offset + i for i in t.caption_image]
        offset += len(t.images)
    # Each caption is paired with its photo and with the photo's thumbnail, so the head also
    # learns to map the blurred features of small images.
    text_targets = embed_texts(encoder, captions)
    pairs = torch.tensor(pair_image + [len(train_images) + i for i in pair_image])
    head = fold_normalisation(train_head(torch.cat([feats, thumb_feats]), torch.cat([text_targets, text_targets]),
                                         pairs, args.seed))
    head.weight.data = head.weight.data.half().float()  # as shipped

    print("4/4 choosing the head's weights on the validation split (photos, then thumbnails)", flush=True)
    val_images = [load_image(p) for p in val.images]
    val_text = embed_texts(encoder, val.captions).numpy()
    config = LiteConfig()
    tower = LiteImageTower(backbone, class_emb, low_res_log_prior, head, config, low_res_fc).eval()
    chosen = {}
    val_sets = ((False, [val_images]),
                (True, [thumbnails(val_images), thumbnails([im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                                                             for im in val_images])]))
    for low_res, views in val_sets:
        # small images: every view goes through the low-resolution classifier and prior, and the
        # views' embeddings are averaged (the flip), exactly as LiteImageTower.forward does
        parts = []
        for images in views:
            val_feats, _ = image_outputs(backbone, transform, images)
            with torch.inference_mode():
                logits = low_res_fc(val_feats) if low_res else backbone._fc(val_feats)
                parts.append((tower.conse(logits, torch.full((len(images),), low_res)),
                              F.normalize(head(val_feats), dim=-1)))
        results = {}
        for mix in MIXES:
            vectors = F.normalize(sum(F.normalize(c + mix * h, dim=-1) for c, h in parts), dim=-1).numpy()
            results[mix] = recall_at_k(val_text @ vectors.T, [{i} for i in val.caption_image])
            print(f"  {'thumbnails' if low_res else 'photos':<10} mix {mix:<4} text-to-image {results[mix]}")
        best = max(MIXES, key=lambda m: (results[m]["R@5"], results[m]["R@1"]))
        chosen["thumbnails" if low_res else "photos"] = {"mix": best, **results[best]}
        setattr(config, "mix_low_res" if low_res else "mix", best)

    from safetensors.torch import save_file

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"class_embeddings": class_emb.half(), "low_res_log_prior": low_res_log_prior.float(),
               "head.weight": head.weight.detach().half(), "head.bias": head.bias.detach().float(),
               # the distilled classifier as its change to the backbone's (bias unchanged)
               "low_res_fc.delta": (low_res_fc.weight - backbone._fc.weight).detach().half()}
    meta = {"config": config.to_json(), "seed": str(args.seed), "validation": json.dumps(chosen),
            "train": f"flickr8k-subset images {FLICKR_TRAIN.start}-{FLICKR_TRAIN.stop - 1} + coco-mini (all 80)"}
    save_file(tensors, str(args.out), metadata=meta)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB), {config.to_json()}, in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
