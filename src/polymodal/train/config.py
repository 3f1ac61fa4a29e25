"""The settings of a training run (kept free of torch, so the CLI's help stays fast)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from polymodal.errors import InvalidInputError

OBJECTIVES = ("clip", "siglip")
PRECISIONS = ("fp32", "bf16")
CROP_SCALE = 0.9  # smallest area fraction of a random resized crop: open_clip's default (0.9-1)


def check_crop_scale(value) -> float:
    """The smallest area fraction of a training crop: a number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise InvalidInputError(f"crop_scale must be a number in (0, 1], the smallest share of the image's area a "
                                f"training crop keeps (e.g. 0.9, open_clip's default, or 0.35 for stronger "
                                f"augmentation), got {value!r}")
    return float(value)


@dataclass
class TrainConfig:
    """The settings of one run; `polymodal train --help` documents each one."""

    data: str  # captions .jsonl/.csv/.tsv, a folder of class folders, or WebDataset shards
    out: str  # run directory: config.json, metrics.csv, tensorboard/, checkpoints/, model/
    model: str = "scratch:small"
    mode: str = "full"  # full | lit | projection | lora
    objective: str = "clip"  # clip | siglip
    images: str | None = None  # "START:STOP" slice of the unique images to train on
    captions: str = "random"  # random: one caption per image per epoch | all: every pair a sample
    val_data: str | None = None  # captions file for held-out retrieval R@K
    val_images: str | None = None  # its "START:STOP" slice
    zeroshot: str | None = None  # a folder of class folders for zero-shot accuracy
    zeroshot_per_class: int | None = 20
    epochs: int = 10
    max_steps: int | None = None  # overrides epochs
    batch_size: int = 64  # per rank and micro-batch
    accum_steps: int = 1
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_steps: int = 50
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0  # max global L2 norm of the gradients; None: no clipping
    precision: str = "fp32"  # fp32 | bf16 (autocast on the CPU)
    seed: int = 0
    workers: int = 2
    augment: bool = True  # random resized crop for training images
    crop_scale: float = CROP_SCALE  # the crop keeps crop_scale..1 of the image's area
    log_every: int = 10
    eval_every: int | None = None  # steps; None: at the end of every epoch
    save_every: int | None = None  # steps; None: at the end of every epoch
    keep_checkpoints: int = 2
    resume: bool = True  # continue from the newest checkpoint in `out`
    export_name: str | None = None  # also register the result under this model name
    lora_rank: int = 8
    lora_alpha: int = 16
    tensorboard: bool = True

    def check(self) -> None:
        if self.objective not in OBJECTIVES:
            raise InvalidInputError(f"objective {self.objective!r} is not one of {OBJECTIVES}")
        if self.precision not in PRECISIONS:
            raise InvalidInputError(f"precision {self.precision!r} is not one of {PRECISIONS}")
        positive = {"batch_size": self.batch_size, "accum_steps": self.accum_steps, "log_every": self.log_every,
                    "keep_checkpoints": self.keep_checkpoints}
        positive.update({k: v for k, v in {"epochs": self.epochs, "max_steps": self.max_steps,
                                           "eval_every": self.eval_every, "save_every": self.save_every}.items()
                         if v is not None})
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.warmup_steps < 0 or self.workers < 0:
            raise InvalidInputError("warmup_steps and workers must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise InvalidInputError(f"min_lr_ratio must be between 0 and 1, got {self.min_lr_ratio}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise InvalidInputError(f"grad_clip must be > 0 (or None for no clipping), got {self.grad_clip}")
        if self.captions not in ("random", "all"):
            raise InvalidInputError(f"captions must be 'random' or 'all', got {self.captions!r}")
        check_crop_scale(self.crop_scale)

    def to_dict(self) -> dict:
        return asdict(self)



def parse_slice(text: str | None) -> slice | None:
    """ "600:800" -> slice(600, 800); None -> None."""
    if text is None or text == "":
        return None
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, stop = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise InvalidInputError(f"image range {text!r} is not START:STOP, e.g. 0:600") from None
    return slice(start, stop)
