"""The judge's third input: MiniLM with its top layers fine-tuned to tell injections from text.

The logistic regression of `classifier` reads MiniLM's sentence embedding as it comes: a vector
made for paraphrase search, in which "Grant edit access on the shared drive to anyone with the
link" sits with other sentences about drives, not with instructions to a model. Here the top
`6 - frozen` of MiniLM's six layers are trained, with a linear head on the mean-pooled states, on
the same data set and weights as the classifier (hand-written examples 4 : 1). Its logit enters
the judge's combiner beside the classifier's (`judge.combine`), fitted on validation.

It learns what the generated templates do not teach (tool-action directives without
meta-words), and adds little on generated texts, where the n-grams already do well. Two tuned
layers, not four: as good on validation at half the cost (figures in benchmarks/RESULTS.md).

Training runs the frozen bottom once and caches its states (fp16); each epoch then runs only the
top layers. Inference is one ordinary forward of a copy of MiniLM whose top layers are the tuned
ones, so it goes through transformers' own attention code (`test_guard_tuned` checks that the
training forward and this one agree). The file holds the head and the tuned layers' change from
MiniLM as rank-64 factors (`compress`): 1.8 MB where the whole layers would be 7.1 MB.
"""

from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from polymodal.embed.lite import BF16_TEXT
from polymodal.errors import CheckpointError
from polymodal.guard.classifier import as_meant, check_texts

__all__ = ["FROZEN", "RANK", "TunedScorer", "compress", "expand", "train_tuned", "tuned_path"]

FROZEN = 4           # MiniLM layers kept as they are; the top 6 - FROZEN are trained
MAX_TOKENS = 128     # judge windows are <= 400 characters, about 100 tokens
# Rank of the stored change of each weight matrix. The full layers in float16 are 7.1 MB; the
# shipped model at rank 64 is 1.8 MB, its logits within 0.55 of the full layers' on 2,000 OCR'd
# lines (99th percentile 0.40, correlation 0.9993; the logits' std is 3.2); rank 32 (0.9 MB):
# within 1.43, rank 16: 3.26.
RANK = 64
HEAD_SCALE = 10.0    # the pooled unit vector is scaled before the head, so its logits can reach +-10


def _additive_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 0/1 attention mask -> (B, 1, 1, T) additive float mask, as BERT layers take it."""
    return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


def _run_layers(layers, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """states (B, T, 384) through `layers` (BertLayer) with the (B, T) mask."""
    extended = _additive_mask(mask)
    for layer in layers:
        out = layer(states, attention_mask=extended)
        states = out[0] if isinstance(out, tuple) else out   # transformers 4 returns a tuple, 5 a tensor
    return states


def _pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the (B, T, 384) states over the (B, T) mask, L2-normalised and scaled: (B, 384)."""
    m = mask[..., None].to(states.dtype)
    mean = (states * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, dim=-1) * HEAD_SCALE


class TunedScorer:
    """Texts -> injection logits, from `encoder`'s MiniLM with its top layers changed as `stored`
    says (the file's tensors: "top.*" as `compress` writes them, "head.weight", "head.bias")."""

    def __init__(self, encoder, stored: dict[str, np.ndarray], *, frozen: int = FROZEN, config: dict | None = None):
        self.tokenizer = encoder.tokenizer
        self.frozen = int(frozen)
        self.config = dict(config or {})
        self.model = copy.deepcopy(encoder.model).eval()
        # bf16 where the CPU has bf16 units, as the lite model runs MiniLM for the classifier:
        # about 4x faster, logits within 0.05 of float32 (test_guard_tuned)
        self.bf16 = BF16_TEXT
        layers = self.model.encoder.layer
        if not 0 < self.frozen < len(layers):
            raise CheckpointError(f"tuned injection model freezes {self.frozen} layers; MiniLM has {len(layers)}")
        self.stored = stored
        top = torch.nn.ModuleList(layers[self.frozen:])
        try:
            top.load_state_dict(expand({k[len("top."):]: v for k, v in stored.items() if k.startswith("top.")},
                                       top.state_dict()))
            self.head = torch.nn.Linear(self.model.config.hidden_size, 1)
            with torch.no_grad():
                self.head.weight.copy_(torch.as_tensor(np.asarray(stored["head.weight"], np.float32)).reshape(1, -1))
                self.head.bias.copy_(torch.as_tensor(np.asarray(stored["head.bias"], np.float32)).reshape(1))
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"tuned injection layers do not fit MiniLM ({str(exc)[:200]}): retrain with "
                                  "scripts/train_injection_classifier.py") from None

    @torch.inference_mode()
    def logits(self, texts, *, batch_size: int = 64) -> np.ndarray:
        """(N,) injection logits of `texts` (a list of non-empty strings), read like the classifier reads them."""
        texts = as_meant(check_texts(texts))
        out = np.zeros(len(texts), np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")   # similar lengths batch with little padding
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = self.tokenizer([texts[i] for i in idx], padding=True, pad_to_multiple_of=16, truncation=True,
                                   max_length=MAX_TOKENS, return_tensors="pt")
            with warnings.catch_warnings(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                warnings.simplefilter("ignore")
                states = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            out[idx] = self.head(_pool(states.float(), batch["attention_mask"])).squeeze(-1).numpy()
        return out

    # -- I/O --------------------------------------------------------------------------------------

    def save(self, path: Path | str) -> None:
        """The tuned layers as `compress` stores them (1.8 MB for two layers at rank 64) and the head,
        as safetensors."""
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"frozen": str(self.frozen), **{k: str(v) for k, v in self.config.items()}}
        save_file(self.stored, str(path), metadata=meta)

    @classmethod
    def load(cls, path: Path | str, *, encoder=None) -> "TunedScorer":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"tuned injection model {path} is missing: run python "
                                  "scripts/train_injection_classifier.py to build it")
        with safe_open(str(path), "np") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            meta = dict(f.metadata() or {})
        if "frozen" not in meta:
            raise CheckpointError(f"{path} does not say how many layers it froze: retrain with "
                                  "scripts/train_injection_classifier.py")
        frozen = int(meta.pop("frozen"))
        return cls(encoder or _minilm(), tensors, frozen=frozen, config=meta)


def _minilm():
    from polymodal.guard.classifier import text_embedder

    return text_embedder().text   # the default model's MiniLM, already loaded for the classifier


def compress(trained: dict, base: dict, rank: int = RANK) -> dict[str, np.ndarray]:
    """The tuned layers' state dict in the file's form: each weight matrix as the float16 factors of
    its change from MiniLM's `base` (`<k>.u` (out, r) = U S and `<k>.v` (r, in), the top `rank`
    singular directions), biases and LayerNorm whole in float16."""
    out = {}
    for key, value in trained.items():
        value = value.detach().float()
        if value.dim() == 2:
            u, s, vh = torch.linalg.svd(value - base[key].float(), full_matrices=False)
            out[f"{key}.u"] = (u[:, :rank] * s[:rank]).numpy().astype(np.float16)
            out[f"{key}.v"] = vh[:rank].numpy().astype(np.float16)
        else:
            out[key] = value.numpy().astype(np.float16)
    # safetensors writes an array's buffer as it lies: a strided one (U S is) would be saved scrambled
    return {key: np.ascontiguousarray(value) for key, value in out.items()}


def expand(stored: dict, base: dict) -> dict[str, torch.Tensor]:
    """The state dict `compress` stored, rebuilt on MiniLM's `base`: W = W_base + u @ v."""
    out = {}
    for key, value in base.items():
        if value.dim() == 2:
            u = torch.from_numpy(np.asarray(stored[f"{key}.u"], np.float32))
            v = torch.from_numpy(np.asarray(stored[f"{key}.v"], np.float32))
            out[key] = value.float() + u @ v
        else:
            out[key] = torch.from_numpy(np.asarray(stored[key], np.float32))
    return out


def tuned_path(classifier_weights: Path | str) -> Path:
    """Where the tuned model of a classifier's weights file lives: beside it, "<stem>_tuned"."""
    classifier_weights = Path(classifier_weights)
    return classifier_weights.with_name(classifier_weights.stem + "_tuned.safetensors")


# ---------------------------------------------------------------------------------------------
# Training

@torch.inference_mode()
def _bottom_states(encoder, texts: list[str], frozen: int, batch_size: int = 128) -> list[torch.Tensor]:
    """Per text, its (T, 384) float16 states after the first `frozen` layers (no padding)."""
    bert = encoder.model
    out: list = [None] * len(texts)
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = encoder.tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_TOKENS,
                                  return_tensors="pt")
        states = bert.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
        states = _run_layers(bert.encoder.layer[:frozen], states, batch["attention_mask"])
        lengths = batch["attention_mask"].sum(1)
        for row, i in enumerate(idx):
            out[i] = states[row, :lengths[row]].to(torch.float16).clone()
    return out


def _padded(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A list of (T_i, 384) states -> (B, T, 384) float32 zero-padded and the (B, T) mask."""
    lengths = torch.tensor([s.shape[0] for s in states])
    x = torch.zeros(len(states), int(lengths.max()), states[0].shape[1])
    for i, s in enumerate(states):
        x[i, :s.shape[0]] = s.float()
    return x, (torch.arange(x.shape[1])[None, :] < lengths[:, None]).long()


def train_tuned(texts: list[str], labels: np.ndarray, weights: np.ndarray, *, encoder=None, frozen: int = FROZEN,
                epochs: int = 2, lr: float = 1e-4, batch_size: int = 32, seed: int = 0, rank: int = RANK,
                log=print) -> TunedScorer:
    """Fine-tune MiniLM's top `6 - frozen` layers and a linear head on `texts` (raw, as the judge
    sees them) with binary `labels` and per-example loss `weights` (AdamW, one-cycle schedule,
    batches of similar lengths). Two epochs on 2 cores: about 4 min to cache the bottom states
    of 38,000 texts, then about 3.5 min per epoch."""
    encoder = encoder or _minilm()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    prepared = as_meant(list(texts))
    bottom = _bottom_states(encoder, prepared, frozen)
    log(f"tuned: bottom {frozen} layers of {len(texts)} texts in {time.time() - t0:.0f} s")
    top = torch.nn.ModuleList(copy.deepcopy(list(encoder.model.encoder.layer[frozen:]))).train()
    head = torch.nn.Linear(encoder.model.config.hidden_size, 1)
    params = list(top.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = epochs * (len(texts) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 20),  # OneCycle needs >= 20 steps
                                                pct_start=0.1)
    y = torch.as_tensor(np.asarray(labels, np.float32))
    w = torch.as_tensor(np.asarray(weights, np.float32))
    lengths = np.array([s.shape[0] for s in bottom])
    step = 0
    for epoch in range(epochs):
        # shuffled batches of similar lengths: sort within chunks of 50 batches, then shuffle the batches
        perm = rng.permutation(len(texts))
        batches = []
        for c in range(0, len(perm), batch_size * 50):
            chunk = perm[c:c + batch_size * 50]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(batches)
        t1, total = time.time(), 0.0
        for k, b in enumerate(batches):
            if step >= steps:
                break
            x, mask = _padded([bottom[i] for i in b])
            logits = head(_pool(_run_layers(top, x, mask), mask)).squeeze(-1)
            idx = torch.as_tensor(b)
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, y[idx], reduction="none")
                    * w[idx]).sum() / w[idx].sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            total += loss.item()
            if k % 300 == 0:
                log(f"tuned: epoch {epoch + 1}/{epochs} batch {k}/{len(batches)} loss {total / (k + 1):.4f} "
                    f"({time.time() - t1:.0f} s)")
    # in the file's form, so the scorer returned scores as the saved file will
    base = torch.nn.ModuleList(encoder.model.encoder.layer[frozen:]).state_dict()
    stored = {f"top.{k}": v for k, v in compress(top.state_dict(), base, rank).items()}
    stored["head.weight"] = head.weight.detach().numpy().astype(np.float32)
    stored["head.bias"] = head.bias.detach().numpy().astype(np.float32)
    return TunedScorer(encoder, stored, frozen=frozen, config={"epochs": epochs, "lr": lr, "seed": seed, "rank": rank})
