"""The contrastive training loop: one process, or many under torchrun.

    settings (TrainConfig) -> Trainable (train/trainable.py) + data (train/data.py)
      -> for each optimizer step: `accum_steps` micro-batches -> features -> CLIP or SigLIP loss
         -> backward -> clip gradients -> AdamW with warm-up + cosine
      -> log (CSV + TensorBoard), evaluate (held-out retrieval R@K, zero-shot accuracy),
         checkpoint (exact resume), and at the end export a model the resolver loads.

Distributed: every rank computes its local micro-batch; the loss is the global batch's (InfoNCE
over features gathered with gradients, or the chunked SigLIP ring; models/losses.py), and
DistributedDataParallel averages the gradients, so W ranks with local batch B train exactly like
one process with batch W*B (tests/test_train_ddp.py checks the weights).

Gradient accumulation sums the gradients of `accum_steps` micro-batches, each scored against its
own negatives (the contrastive batch is the micro-batch, times the ranks); the step then sees the
mean. That matches a larger batch's gradient only in expectation: negatives do not cross
micro-batches.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from polymodal.errors import InvalidInputError
from polymodal.train import checkpoint as ckpt
from polymodal.train.config import TrainConfig, parse_slice
from polymodal.train.distributed import World, barrier, init_world, mean_over_ranks
from polymodal.train.schedule import lr_at, make_optimizer, set_lr

MAX_LOG_SCALE = math.log(100.0)  # CLIP clamps its temperature at 100 to keep training stable


@dataclass
class TrainResult:
    out: str
    steps: int
    epochs_done: float
    loss: float | None  # mean training loss of the last logging window
    samples_per_second: float | None  # training samples (all ranks) per second, evaluation excluded
    evaluations: list[dict] = field(default_factory=list)
    checkpoint: str | None = None
    model_dir: str | None = None
    model_name: str | None = None
    resumed_from: int | None = None  # the step the run resumed at

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------
# Logging: a long-format CSV (step, epoch, metric, value) and TensorBoard events, rank 0 only.


class MetricLog:
    def __init__(self, out: Path, tensorboard: bool, enabled: bool):
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        path = out / "metrics.csv"
        new = not path.exists()
        self.file = path.open("a", newline="", encoding="utf-8")
        self.csv = csv.writer(self.file)
        if new:
            self.csv.writerow(["step", "epoch", "metric", "value"])
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print("warning: tensorboard is not installed, so only metrics.csv is written "
                      "(pip install 'polymodal[train]')", file=sys.stderr)
            else:
                self.writer = SummaryWriter(str(out / "tensorboard"))

    def write(self, step: int, epoch: float, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in metrics.items():
            self.csv.writerow([step, f"{epoch:.4f}", name, f"{value:.6g}"])
            if self.writer is not None:
                self.writer.add_scalar(name, value, step)
        self.file.flush()

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.writer is not None:
                self.writer.close()


# ----------------------------------------------------------------------------------------------


def open_dataset(config: TrainConfig):
    """The training data named by `config.data`: a captions file, class folders, or shards."""
    from polymodal.train import data

    path = Path(config.data)
    is_shards = any(ch in config.data for ch in "{*?") or path.suffix == ".tar" or (
        path.is_dir() and any(path.glob("*.tar")))
    if is_shards:
        return data.ShardStream(config.data, seed=config.seed)
    if path.is_dir():
        return data.PairDataset.from_class_folders(path)
    if not path.is_file():
        raise InvalidInputError(f"training data {config.data!r} does not exist; give a captions .jsonl/.csv, "
                                f"a folder of class folders, or WebDataset .tar shards")
    return data.PairDataset.from_file(path, images=parse_slice(config.images), captions=config.captions)


def _loss_fn(objective: str, world: World):
    from polymodal.models.losses import ClipLoss, SigLipLoss

    if objective == "clip":
        return ClipLoss(distributed="gather" if world.distributed else None)
    return SigLipLoss(distributed="ring" if world.distributed else None)


class Trainer:
    """One training run. `Trainer(config).run()`; `train(config)` is the same in one call."""

    def __init__(self, config: TrainConfig, *, progress: bool | None = None, trainable=None, dataset=None):
        config.check()
        if config.export_name:
            from polymodal.train.export import check_export_name

            # a bad or reserved name fails now, not after the training; re-running a job replaces
            # its own earlier export of the same name
            check_export_name(config.export_name, overwrite=True)
        self.config = config
        self.world = init_world()
        self.out = Path(config.out)
        self.progress = (sys.stderr.isatty() if progress is None else progress) and self.world.main
        torch.manual_seed(config.seed)
        if trainable is None:
            from polymodal.train.trainable import build_trainable

            trainable = build_trainable(config.model, mode=config.mode, objective=config.objective,
                                        lora_rank=config.lora_rank, lora_alpha=config.lora_alpha, seed=config.seed)
        self.trainable = trainable
        self.dataset = dataset if dataset is not None else open_dataset(config)
        self.loss_fn = _loss_fn(config.objective, self.world)
        self.model = trainable
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            # DDP broadcasts rank 0's weights here, so every rank starts from the same model
            self.model = DistributedDataParallel(trainable)
        self.optimizer = make_optimizer(trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.position = ckpt.Position()
        self.resumed_from = None
        self._batches = None  # the TrainLoader, made on first use

    # -- settings -----------------------------------------------------------------------------

    def settings(self) -> dict:
        return {**self.config.to_dict(), "world_size": self.world.size}

    def _loader(self, epoch: int, start_batch: int):
        # one TrainLoader for the run: its worker processes keep decoding across epoch boundaries
        if self._batches is None:
            from polymodal.train.data import TrainLoader

            t = self.trainable
            self._batches = TrainLoader(self.dataset, batch_size=self.config.batch_size, image_size=t.image_size,
                                        interpolation=t.interpolation, seed=self.config.seed, rank=self.world.rank,
                                        world_size=self.world.size, workers=self.config.workers,
                                        augment=self.config.augment, crop_scale=self.config.crop_scale)
        return self._batches.epoch(epoch, start_batch)

    def steps_per_epoch(self) -> int | None:
        try:
            batches = len(self._loader(0, 0))
        except TypeError:  # a stream has no length
            return None
        steps = batches // self.config.accum_steps
        if steps < 1:
            raise InvalidInputError(
                f"one epoch has {batches} batches of {self.config.batch_size} per rank, fewer than one optimizer step "
                f"({self.config.accum_steps} batches): lower --batch-size or --accum-steps, or add data")
        return steps

    def total_steps(self, per_epoch: int | None) -> int:
        if self.config.max_steps is not None:
            return self.config.max_steps
        return self.config.epochs * per_epoch

    # -- resume -------------------------------------------------------------------------------

    def maybe_resume(self) -> None:
        found = ckpt.list_checkpoints(self.out) if self.config.resume else []
        if not found:
            return
        path = found[-1]
        payload = ckpt.load_checkpoint(path)
        ckpt.check_resumable(payload["settings"], self.settings(), path)
        self.trainable.load_trainable_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        ckpt.set_rng_state(payload["rng"])
        self.position = payload["position"]
        self.resumed_from = self.position.step

    def save(self) -> Path | None:
        path = None
        if self.world.main:
            path = ckpt.save_checkpoint(self.out, model_state=self.trainable.trainable_state_dict(),
                                        optimizer_state=self.optimizer.state_dict(), position=self.position,
                                        settings=self.settings(), keep=self.config.keep_checkpoints)
        barrier(self.world)
        return path

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        """Held-out retrieval and zero-shot accuracy, on rank 0; {} when neither is configured."""
        cfg = self.config
        metrics: dict[str, float] = {}
        if self.world.main and (cfg.val_data or cfg.zeroshot):
            self.trainable.eval()
            embedder = self.trainable.embedder()
            if cfg.val_data:
                from polymodal.eval.retrieval import evaluate_retrieval, read_captions

                result = evaluate_retrieval(embedder, read_captions(cfg.val_data, parse_slice(cfg.val_images)))
                metrics.update({f"val/text_to_image_{k}": v for k, v in result["text_to_image"].items()})
                metrics.update({f"val/image_to_text_{k}": v for k, v in result["image_to_text"].items()})
            if cfg.zeroshot:
                from polymodal.eval.zeroshot import evaluate_zeroshot

                result = evaluate_zeroshot(embedder, cfg.zeroshot, per_class=cfg.zeroshot_per_class)
                metrics["zeroshot/top1"] = float(result["accuracy"])
            self.trainable.train()
        barrier(self.world)
        return metrics

    # -- the loop -----------------------------------------------------------------------------

    def _micro_step(self, batch: dict, scale_by: float) -> float:
        t = self.trainable
        images = t.image_inputs(batch["pixels"], batch["sizes"])
        texts = t.text_inputs(batch["captions"])
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.config.precision == "bf16" else nullcontext()
        with autocast:
            image_features, text_features, scale, bias = self.model(images, texts)
        args = (image_features.float(), text_features.float(), scale.float())
        if self.config.objective == "siglip":
            args = (*args, bias.float())
        loss = self.loss_fn(*args)
        (loss * scale_by).backward()
        return float(loss.detach())

    def _optimizer_step(self) -> float:
        cfg = self.config
        params = [p for p in self.trainable.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip is not None else float("inf"))
        set_lr(self.optimizer, self._lr(self.position.step))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, p in self.trainable.named_parameters():
                if name.endswith("logit_scale") and p.requires_grad:
                    p.clamp_(0.0, MAX_LOG_SCALE)
        return float(norm)

    def _lr(self, step: int) -> float:
        cfg = self.config
        return lr_at(step, base_lr=cfg.lr, total_steps=self._total, warmup_steps=cfg.warmup_steps,
                     min_lr_ratio=cfg.min_lr_ratio)

    def run(self) -> TrainResult:
        cfg, world = self.config, self.world
        if world.main:
            self.out.mkdir(parents=True, exist_ok=True)
        barrier(world)
        per_epoch = self.steps_per_epoch()
        self._total = self.total_steps(per_epoch)
        self.maybe_resume()
        if world.main:
            (self.out / "config.json").write_text(json.dumps(self.settings(), indent=2) + "\n")
        log = MetricLog(self.out, cfg.tensorboard, enabled=world.main)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=self._total, initial=self.position.step, unit="step", desc="train", file=sys.stderr)
        evaluations: list[dict] = []
        window: list[float] = []
        last_loss = None
        train_time, train_samples = 0.0, 0
        last_ckpt = None
        self.trainable.train()
        try:
            while self.position.step < self._total:
                epoch = self.position.epoch
                loader = self._loader(epoch, self.position.batch)
                accumulated, losses = 0, []
                tick = time.perf_counter()
                epoch_done = True
                for batch in loader:
                    boundary = accumulated + 1 == cfg.accum_steps
                    sync = self.model.no_sync() if world.distributed and not boundary else nullcontext()
                    with sync:
                        losses.append(self._micro_step(batch, 1.0 / cfg.accum_steps))
                    accumulated += 1
                    if not boundary:
                        continue
                    grad_norm = self._optimizer_step()
                    train_time += time.perf_counter() - tick
                    train_samples += cfg.batch_size * cfg.accum_steps * world.size
                    self.position = ckpt.Position(self.position.step + 1, epoch,
                                                  self.position.batch + cfg.accum_steps)
                    window.append(sum(losses) / len(losses))
                    accumulated, losses = 0, []
                    step = self.position.step
                    epoch_float = epoch + (self.position.batch / (per_epoch * cfg.accum_steps) if per_epoch else 0.0)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{window[-1]:.4f}")
                    if step % cfg.log_every == 0 or step == self._total:
                        last_loss = mean_over_ranks(sum(window) / len(window), world)
                        window = []
                        metrics = {"train/loss": last_loss, "train/lr": self._lr(step - 1), "train/grad_norm": grad_norm,
                                   "train/logit_scale": float(self._scale()),
                                   "train/samples_per_second": train_samples / max(train_time, 1e-9)}
                        log.write(step, epoch_float, metrics)
                    end_of_epoch = per_epoch is not None and self.position.batch // cfg.accum_steps >= per_epoch
                    if (cfg.eval_every and step % cfg.eval_every == 0) or (
                            not cfg.eval_every and (end_of_epoch or step == self._total)):
                        metrics = self.evaluate()
                        if metrics:
                            log.write(step, epoch_float, metrics)
                            evaluations.append({"step": step, **metrics})
                    if (cfg.save_every and step % cfg.save_every == 0) or (
                            not cfg.save_every and end_of_epoch) or step == self._total:
                        last_ckpt = self.save()
                    tick = time.perf_counter()
                    if step >= self._total:
                        epoch_done = False
                        break
                    if end_of_epoch:
                        break
                if epoch_done:
                    # the epoch ended (a stream's too): start the next from its first batch;
                    # a partial accumulation group at the end is dropped
                    self.position = ckpt.Position(self.position.step, epoch + 1, 0)
        except KeyboardInterrupt:
            # the last completed step is a consistent state: keep it, so a rerun resumes there
            if self.position.step > 0:
                self.save()
            raise
        finally:
            if bar is not None:
                bar.close()
            log.close()
            if self._batches is not None:
                self._batches.close()
        model_dir, model_name = self._export()
        return TrainResult(
            out=str(self.out), steps=self.position.step,
            epochs_done=round(self.position.epoch + (self.position.batch / (per_epoch * cfg.accum_steps)
                                                     if per_epoch else 0.0), 4),
            loss=last_loss, samples_per_second=(train_samples / train_time) if train_time > 0 else None,
            evaluations=evaluations, checkpoint=str(last_ckpt) if last_ckpt else None,
            model_dir=model_dir, model_name=model_name, resumed_from=self.resumed_from)

    def _scale(self) -> float:
        for name, p in self.trainable.named_parameters():
            if name.endswith("logit_scale"):
                return float(p.detach().exp())
        return float("nan")

    def _export(self) -> tuple[str | None, str | None]:
        model_dir = name = None
        if self.world.main:
            name = self.config.export_name or f"trained-{self.out.resolve().name}"
            model_dir = str(self.trainable.export(self.out / "model", name))
            if self.config.export_name:
                from polymodal.train.export import export_named

                model_dir = str(export_named(self.trainable, self.config.export_name, overwrite=True))
        barrier(self.world)
        return model_dir, name


def train(config: TrainConfig, **kwargs) -> TrainResult:
    """Run one training job (see Trainer); returns its TrainResult."""
    return Trainer(config, **kwargs).run()
