"""`lite`: a zero-shot dual encoder from pretrained parts that install without a model hub.

Image tower: EfficientNet-Lite0 (ImageNet-1k classifier). Text tower: all-MiniLM-L6-v2. The image
side is brought into MiniLM's sentence space in two layers:

1. ConSE (Norouzi et al. 2014): an image embeds as the probability-weighted mean of the text
   embeddings of its top-T ImageNet classes, e_conse = sum_t p_t * c_t / sum_t p_t. Each class
   text is "lemmas: WordNet definition", which places "tabby" near "cat" in sentence space.
   Small images (a side under LOW_RES_SIDE pixels) are upscaled and therefore blurred, which
   pulls ImageNet's classifier towards a few texture classes (fox squirrel, platypus). They take
   a path of their own:
   - a low-resolution classifier: the final layer of the ImageNet classifier distilled (on the
     training photos and random crops of them, lab/lite/train_lite.py) so that on a 32x32
     thumbnail's features it predicts the class distribution the original classifier gives the
     full-resolution photo. Only the weight moves (W + delta, bias frozen, L2 on delta), so it
     learns "what blur does to the features", not the class frequencies of the training photos;
   - a taxonomic prior: the class probabilities are divided by n_c, the number of ImageNet
     classes whose text is close to class c's (cosine > 0.5, about the top 1% of pairs). ImageNet
     has 120 dog breeds and a handful of cats; on a blurry furry animal the many breeds together
     outvote the cat. Dividing by n_c makes basic-level concepts, not leaf classes, equally likely
     a priori (the Bayes prior-shift correction from the classifier's uniform leaf prior);
   - horizontal-flip averaging of the final embedding (the classifier was trained with flips).
2. A learned head (LiT-style, both towers locked): a linear map from the 1280-d pooled image
   features into the 384-d text space, trained with the CLIP loss on image-caption pairs
   (lab/lite/train_lite.py) on full-size photos and on their thumbnails. The embedding is
   normalise(e_conse + mix * normalise(head(f))), with `mix` chosen on validation photos and a
   separate `mix_low_res` chosen on their thumbnails.

Everything that was computed offline (class texts' embeddings, the taxonomic prior, the distilled
low-resolution classifier as an fp16 change to the classifier's weight, the head) is in one small
safetensors file shipped in the package (weights/lite.safetensors, about 4.3 MB).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from polymodal.models.efficientnet_lite import FEATURE_DIM, EfficientNetLite0, load_pretrained
from polymodal.models.minilm import DIM as TEXT_DIM

WEIGHTS = Path(__file__).with_name("weights") / "lite.safetensors"
CLASSES = Path(__file__).with_name("data") / "imagenet1k_classes.tsv"
LOW_RES_SIDE = 64  # images whose shorter side is below this many pixels get the low-res prior


@dataclass
class LiteConfig:
    image_size: int = 224  # EfficientNet-Lite0's training resolution
    top_t: int = 20  # ConSE's T: classes mixed per image
    mix: float = 0.0  # weight of the learned head's embedding (0: ConSE alone)
    mix_low_res: float = 0.0  # the same for small images, chosen separately on thumbnails
    low_res_prior: bool = True  # divide by the taxonomic prior n_c for small images
    low_res_flip: bool = True  # average small images' embeddings with their mirror image's
    logit_scale: float = 50.0  # softmax temperature over cosine similarities (see embed/lite.py)
    logit_bias: float | None = None  # set when fine-tuned with the sigmoid (SigLIP) loss

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def imagenet_classes() -> list[tuple[str, str, str]]:
    """(synset, lemmas, definition) for the 1000 ImageNet-1k classes, in the classifier's order."""
    rows = []
    for line in CLASSES.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            synset, lemmas, definition = line.split("\t")
            rows.append((synset, lemmas, definition))
    return rows


def class_texts() -> list[str]:
    return [f"{lemmas}: {definition}" for _, lemmas, definition in imagenet_classes()]


class LiteImageTower(nn.Module):
    """Pixels -> 384-d unit vectors in MiniLM's space."""

    def __init__(self, backbone: EfficientNetLite0, class_embeddings: torch.Tensor, low_res_log_prior: torch.Tensor,
                 head: nn.Linear | None, config: LiteConfig, low_res_fc: nn.Linear | None = None):
        super().__init__()
        self.backbone = backbone
        self.config = config
        self.register_buffer("class_embeddings", class_embeddings.float())  # (1000, 384) unit rows
        self.register_buffer("low_res_log_prior", low_res_log_prior.float())  # (1000,) log n_c
        self.head = head
        self.low_res_fc = low_res_fc  # 1280 -> 1000, the distilled classifier for small images
        # (2,) learnable [mix, mix_low_res] while fine-tuning (polymodal.train.trainable); None
        # reads the two floats of the config.
        self.mix_weights: nn.Parameter | None = None

    def conse(self, logits: torch.Tensor, low_res: torch.Tensor) -> torch.Tensor:
        """(B, 1000) logits, (B,) bool -> (B, 384) unit ConSE embeddings."""
        if self.config.low_res_prior:
            logits = logits - low_res[:, None].to(logits.dtype) * self.low_res_log_prior
        p = logits.float().softmax(dim=-1)
        weights, idx = p.topk(self.config.top_t, dim=-1)  # (B, T)
        mixed = torch.einsum("bt,btd->bd", weights, self.class_embeddings[idx])
        return F.normalize(mixed, dim=-1)

    def from_features(self, features: torch.Tensor, low_res: torch.Tensor) -> torch.Tensor:
        """(B, 1280) pooled features, (B,) bool -> (B, 384) unit vectors, one view each.

        Runs in fp32 even under bf16 autocast: the top-T class selection is discrete, and bf16
        logits would reorder near-ties."""
        with torch.autocast("cpu", enabled=False):
            features = features.float()
            logits = self.backbone._fc(features)  # (B, 1000)
            if self.low_res_fc is not None and bool(low_res.any()):
                logits = torch.where(low_res[:, None], self.low_res_fc(features), logits)
            e = self.conse(logits, low_res)
            if self.head is not None:
                if self.mix_weights is not None:
                    mix = torch.where(low_res, self.mix_weights[1], self.mix_weights[0])  # (B,)
                else:
                    mix = torch.where(low_res, self.config.mix_low_res, self.config.mix).to(e.dtype)  # (B,)
                e = e + mix[:, None] * F.normalize(self.head(features), dim=-1)
            return F.normalize(e, dim=-1)

    def forward(self, pixels: torch.Tensor, low_res: torch.Tensor, features_fn=None) -> torch.Tensor:
        """(B, 3, H, W) normalised pixels, (B,) bool -> (B, 384). `features_fn` computes the
        backbone's pooled features (default: the PyTorch backbone; embed/lite.py passes ONNX Runtime)."""
        features_fn = features_fn or self.backbone.forward_features
        e = self.from_features(features_fn(pixels), low_res)
        if self.config.low_res_flip and bool(low_res.any()):
            # small images only: mean of the image's and its mirror image's embeddings
            rows = low_res.nonzero().squeeze(1)
            mirrored = self.from_features(features_fn(pixels[rows].flip(-1)), low_res[rows])
            e = e.index_put((rows,), F.normalize(e[rows] + mirrored, dim=-1))
        return e


def save_alignment(tower: LiteImageTower, path: Path, config: LiteConfig | None = None,
                   metadata: dict[str, str] | None = None) -> Path:
    """Write what `load_image_tower(path)` reads: the tower's class embeddings, prior, head and
    low-resolution classifier, in fp32, with `config` (default the tower's), whose mix weights are
    replaced by the learnable ones when the tower has them. The backbone is not written: it is
    always the pretrained package's."""
    from dataclasses import replace

    from safetensors.torch import save_file

    config = config or tower.config
    if tower.mix_weights is not None:
        mix, mix_low_res = (float(x) for x in tower.mix_weights.detach())
        config = replace(config, mix=mix, mix_low_res=mix_low_res)
    tensors = {"class_embeddings": tower.class_embeddings, "low_res_log_prior": tower.low_res_log_prior}
    if tower.head is not None:
        tensors.update({"head.weight": tower.head.weight, "head.bias": tower.head.bias})
    if tower.low_res_fc is not None:  # stored, as in the shipped file, as the change to the classifier
        tensors["low_res_fc.delta"] = tower.low_res_fc.weight - tower.backbone._fc.weight
    tensors = {k: v.detach().float().contiguous() for k, v in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={**(metadata or {}), "config": config.to_json()})
    return path


def load_image_tower(weights: Path = WEIGHTS) -> LiteImageTower:
    """The pretrained backbone plus the shipped alignment file."""
    from safetensors import safe_open

    from polymodal.errors import ModelNotAvailableError

    if not weights.is_file():
        raise ModelNotAvailableError(
            f"{weights} is missing: build it with `python scripts/train_lite.py` (it ships with the package)"
        )
    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = LiteConfig(**json.loads(meta.get("config", "{}")))
    head = None
    if "head.weight" in tensors:
        head = nn.Linear(FEATURE_DIM, TEXT_DIM)
        head.load_state_dict({"weight": tensors["head.weight"].float(), "bias": tensors["head.bias"].float()})
    backbone = load_pretrained()
    low_res_fc = None
    if "low_res_fc.delta" in tensors:  # stored as the change to the classifier's weight (fp16)
        low_res_fc = nn.Linear(FEATURE_DIM, backbone._fc.out_features)
        low_res_fc.load_state_dict({"weight": backbone._fc.weight.detach() + tensors["low_res_fc.delta"].float(),
                                    "bias": backbone._fc.bias.detach().clone()})
    return LiteImageTower(backbone, tensors["class_embeddings"], tensors["low_res_log_prior"], head, config,
                          low_res_fc).eval()
