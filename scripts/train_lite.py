"""Build src/polymodal/models/weights/lite.safetensors: everything `lite` computes offline.

    python scripts/train_lite.py [--data ../shared/data] [--out PATH] [--seed 0]

1. Text embeddings of the 1000 ImageNet classes ("lemmas: definition") with MiniLM.
2. The low-resolution prior: the classifier's mean softmax over 32x32 thumbnails of the training
   photos, upscaled as any small image is.
3. The LiT-style head: a linear map from image features to MiniLM space, trained with the CLIP
   loss on (image, caption) pairs, both towers locked; its mixing weight is chosen on the
   validation split.

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
    class_emb = embed_texts(encoder, class_texts())

    train = [read_captions(args.data / "flickr8k-subset/captions.jsonl", FLICKR_TRAIN),
             read_captions(args.data / "coco-mini/captions.jsonl")]
    val = read_captions(args.data / "flickr8k-subset/captions.jsonl", FLICKR_VAL)
    train_images = [load_image(p) for t in train for p in t.images]
    print(f"2/4 low-resolution prior over {len(train_images)} thumbnails", flush=True)
    thumb_feats, thumb_logits = image_outputs(backbone, transform, thumbnails(train_images))
    low_res_log_prior = thumb_logits.softmax(-1).mean(0).log()

    print("3/4 image features, caption embeddings, head", flush=True)
    feats, _ = image_outputs(backbone, transform, train_images)
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

    print("4/4 choosing the head's weights on the validation split (photos, then thumbnails)", flush=True)
    val_images = [load_image(p) for p in val.images]
    val_text = embed_texts(encoder, val.captions).numpy()
    config = LiteConfig()
    tower = LiteImageTower(backbone, class_emb, low_res_log_prior, head, config).eval()
    chosen = {}
    for low_res, images in ((False, val_images), (True, thumbnails(val_images))):
        val_feats, val_logits = image_outputs(backbone, transform, images)
        with torch.inference_mode():
            conse = tower.conse(val_logits, torch.full((len(images),), low_res))
            projected = F.normalize(head(val_feats), dim=-1)
        results = {}
        for mix in MIXES:
            vectors = F.normalize(conse + mix * projected, dim=-1).numpy()
            results[mix] = recall_at_k(val_text @ vectors.T, [{i} for i in val.caption_image])
            print(f"  {'thumbnails' if low_res else 'photos':<10} mix {mix:<4} text-to-image {results[mix]}")
        best = max(MIXES, key=lambda m: (results[m]["R@5"], results[m]["R@1"]))
        chosen["thumbnails" if low_res else "photos"] = {"mix": best, **results[best]}
        setattr(config, "mix_low_res" if low_res else "mix", best)

    from safetensors.torch import save_file

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"class_embeddings": class_emb.half(), "low_res_log_prior": low_res_log_prior.float(),
               "head.weight": head.weight.detach().half(), "head.bias": head.bias.detach().float()}
    meta = {"config": config.to_json(), "seed": str(args.seed), "validation": json.dumps(chosen),
            "train": f"flickr8k-subset images {FLICKR_TRAIN.start}-{FLICKR_TRAIN.stop - 1} + coco-mini (all 80)"}
    save_file(tensors, str(args.out), metadata=meta)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB), {config.to_json()}, in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
