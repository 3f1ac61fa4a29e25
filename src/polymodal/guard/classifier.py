"""The learned stage of the injection judge: is this (OCR'd) text an instruction aimed at a model?

A multi-output logistic regression over two blocks of features of the normalised text
(`rules.normalize`: homoglyphs, leetspeak, letter spacing and case folded):
- the sentence embedding of the default model's text tower (`load_embedder("lite").encode_texts`,
  all-MiniLM-L6-v2, 384-d): semantics, so paraphrases of known attacks score high. MiniLM is
  English-centric, hence the second block;
- hashed character n-grams (n = 1..6) of the normalised text with its whitespace removed, signed
  feature hashing into 2**16 buckets, log counts, L2-normalised: language-agnostic (Russian and
  Chinese), and blind to the spaces OCR drops, merges or inserts. Grams up to 6 hold whole short
  words and word pairs ("нетправил"), which is what carries Russian, for which MiniLM knows little
  (n and the bucket count were chosen on validation recall: benchmarks/RESULTS.md).

Outputs: column 0 is P(injection); columns 1..5 are P(technique) for the five labels of
`rules.LABELS` (multi-label heads, trained on the same features). The weights ship in
guard/data/injection_classifier.safetensors with its config JSON; both are produced by
`lab/guard_injection/train_injection_classifier.py` from `guard.dataset` (deterministic).
"""

from __future__ import annotations

import functools
import json
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polymodal.errors import CheckpointError, InvalidInputError
from polymodal.guard.ocrfix import repair_ocr
from polymodal.guard.rules import LABELS, normalize

__all__ = ["DATA_DIR", "HASH_DIM", "NGRAMS", "ClassifierOutput", "InjectionClassifier", "as_meant", "check_texts",
           "default_classifier", "fit", "hashed_ngrams", "text_embedder"]

DATA_DIR = Path(__file__).parent / "data"
WEIGHTS = DATA_DIR / "injection_classifier.safetensors"
CONFIG = DATA_DIR / "injection_classifier.json"
HASH_DIM = 2 ** 16
NGRAMS = (1, 2, 3, 4, 5, 6)
EMBED_DIM = 384
HEADS = ("injection",) + LABELS


def check_texts(texts, what: str = "texts") -> list[str]:
    """`texts` as a list of non-empty strings, or InvalidInputError naming the bad item."""
    if isinstance(texts, str) or not hasattr(texts, "__iter__"):
        raise InvalidInputError(f"{what} must be a list of strings, got a {type(texts).__name__}: wrap one text as [text]")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"{what}[{i}] is a {type(text).__name__}, not a string: pass the text itself")
        if not text.strip():
            raise InvalidInputError(f"{what}[{i}] is empty ({text!r}): drop empty texts before judging them")
    return texts


# ---------------------------------------------------------------------------------------------
# Features

def hashed_ngrams(text: str, dim: int = HASH_DIM, ngrams: tuple[int, ...] = NGRAMS) -> tuple[np.ndarray, np.ndarray]:
    """(bucket indices, values) of the signed hashed character n-grams of normalised `text`.

    Whitespace is removed first, so "ignoreprevious" and "ignore previous" share their n-grams.
    Values are log(1 + count) with the hash's sign, L2-normalised over the text.
    """
    squashed = "".join(normalize(text).split())
    counts: dict[int, float] = {}
    for n in ngrams:
        for k in range(len(squashed) - n + 1):
            h = zlib.crc32(squashed[k:k + n].encode("utf-8"))  # stable across processes, unlike hash()
            bucket, sign = h % dim, 1.0 if h >> 31 else -1.0   # low bits -> bucket, top bit -> sign
            counts[bucket] = counts.get(bucket, 0.0) + sign
    if not counts:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    idx = np.fromiter(counts.keys(), np.int64, len(counts))
    raw = np.fromiter(counts.values(), np.float32, len(counts))
    vals = np.sign(raw) * np.log1p(np.abs(raw))
    norm = float(np.linalg.norm(vals))
    return idx, (vals / norm if norm > 0 else vals).astype(np.float32)


@dataclass
class Features:
    dense: np.ndarray            # (N, 384) float32 sentence embeddings
    rows: np.ndarray             # (nnz,) row of each hashed feature (CSR-like triplets)
    cols: np.ndarray             # (nnz,) bucket
    vals: np.ndarray             # (nnz,) value

    def __len__(self) -> int:
        return len(self.dense)

    def subset(self, index: np.ndarray) -> "Features":
        index = np.asarray(index)
        new_row = -np.ones(len(self), np.int64)
        new_row[index] = np.arange(len(index))
        keep = new_row[self.rows] >= 0
        return Features(self.dense[index], new_row[self.rows[keep]], self.cols[keep], self.vals[keep])


@functools.lru_cache(maxsize=1)
def text_embedder():
    """The default model `lite`, loaded once per process (its MiniLM text tower gives the
    sentence features)."""
    from polymodal.embed.resolve import load_embedder

    return load_embedder("lite")


def as_meant(texts: list[str]) -> list[str]:
    """`texts` as the MiniLM readers (this classifier's dense block, `guard.tuned`) read them: as OCR
    meant them (`ocrfix.repair_ocr`: "Al" for "AI" and glued words undone), then normalised."""
    out = []
    for text in texts:
        repaired = repair_ocr(text)
        out.append(normalize(repaired) or repaired)  # normalize("\u200b") == "": keep the text then
    return out


def dense_features(texts: list[str], *, embedder=None, batch_size: int = 64) -> np.ndarray:
    """(N, 384) sentence embeddings of `texts` (already checked) read `as_meant`, in training and
    judging alike."""
    return np.asarray((embedder or text_embedder()).encode_texts(as_meant(texts), batch_size=batch_size), np.float32)


def hashed_features(texts: list[str], *, dim: int = HASH_DIM, ngrams=NGRAMS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, vals) triplets of the hashed n-gram block of `texts`, repaired like
    `dense_features` reads them (the n-grams ignore spaces, so only "Al" -> "AI" matters here)."""
    rows, cols, vals = [], [], []
    for i, text in enumerate(texts):
        idx, v = hashed_ngrams(repair_ocr(text), dim, ngrams)
        rows.append(np.full(len(idx), i, np.int64))
        cols.append(idx)
        vals.append(v)
    cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    return cat(rows, np.int64), cat(cols, np.int64), cat(vals, np.float32)


def featurize(texts: list[str], *, embedder=None, dim: int = HASH_DIM, ngrams=NGRAMS) -> Features:
    """Both feature blocks of `texts` (already checked)."""
    return Features(dense_features(texts, embedder=embedder), *hashed_features(texts, dim=dim, ngrams=ngrams))


# ---------------------------------------------------------------------------------------------
# Model

@dataclass
class ClassifierOutput:
    probability: np.ndarray      # (N,) P(injection)
    techniques: np.ndarray       # (N, 5) P(technique), columns in rules.LABELS order

    def labels(self, i: int, threshold: float = 0.5) -> list[str]:
        return [label for label, p in zip(LABELS, self.techniques[i]) if p >= threshold]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


class InjectionClassifier:
    """Weights `w_dense` (384, 6), `w_hash` (dim, 6), `bias` (6,); `config` says how features are made."""

    def __init__(self, w_dense: np.ndarray, w_hash: np.ndarray, bias: np.ndarray, config: dict | None = None,
                 *, embedder=None):
        self.w_dense = np.asarray(w_dense, np.float32)
        self.w_hash = np.asarray(w_hash, np.float32)
        self.bias = np.asarray(bias, np.float32)
        self.config = dict(config or {})
        self.hash_dim = int(self.config.get("hash_dim", self.w_hash.shape[0]))
        self.ngrams = tuple(self.config.get("ngrams", NGRAMS))
        self.embedder = embedder
        self.folder: Path | None = None   # where it was loaded from: its tuned model (config "tuned") is there
        self._tuned = None
        if self.w_dense.shape != (EMBED_DIM, len(HEADS)) or self.w_hash.shape != (self.hash_dim, len(HEADS)) \
                or self.bias.shape != (len(HEADS),):
            raise CheckpointError(
                f"injection classifier weights have shapes {self.w_dense.shape}, {self.w_hash.shape}, "
                f"{self.bias.shape}; expected ({EMBED_DIM}, 6), ({self.hash_dim}, 6), (6,): retrain with "
                "scripts/train_injection_classifier.py")

    # -- I/O --------------------------------------------------------------------------------------

    @classmethod
    def load(cls, weights: Path | str = WEIGHTS, config: Path | str | None = None, *, embedder=None) -> "InjectionClassifier":
        from safetensors.numpy import load_file

        weights = Path(weights)
        config = Path(config) if config else weights.with_suffix(".json")
        if not weights.is_file() or not config.is_file():
            raise CheckpointError(f"injection classifier files {weights} / {config} are missing: run "
                                  "python scripts/train_injection_classifier.py to build them")
        tensors = load_file(str(weights))
        try:
            model = cls(tensors["w_dense"], tensors["w_hash"], tensors["bias"],
                        json.loads(config.read_text(encoding="utf-8")), embedder=embedder)
        except KeyError as exc:
            raise CheckpointError(f"{weights} has no tensor {exc}: retrain with scripts/train_injection_classifier.py") from None
        model.folder = weights.parent
        return model

    def save(self, weights: Path | str = WEIGHTS) -> None:
        """Weights as safetensors (the hashed block in float16: 2**16 x 6 x 2 bytes), config as JSON."""
        from safetensors.numpy import save_file

        weights = Path(weights)
        weights.parent.mkdir(parents=True, exist_ok=True)
        save_file({"w_dense": self.w_dense, "w_hash": self.w_hash.astype(np.float16), "bias": self.bias}, str(weights))
        config = {**self.config, "hash_dim": self.hash_dim, "ngrams": list(self.ngrams), "heads": list(HEADS)}
        weights.with_suffix(".json").write_text(json.dumps(config, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    def tuned(self):
        """The fine-tuned MiniLM scorer (`guard.tuned`) this classifier's judge parameters were
        fitted with, loaded once; None when the config names none."""
        name = self.config.get("tuned")
        if not name:
            return None
        if self._tuned is None:
            from polymodal.guard.tuned import TunedScorer

            if self.folder is None:
                raise CheckpointError(f"this classifier names a tuned model ({name}) but was not loaded from a "
                                      "folder: load it with InjectionClassifier.load, or attach one with set_tuned")
            self._tuned = TunedScorer.load(self.folder / name, encoder=getattr(self.embedder, "text", None))
        return self._tuned

    def set_tuned(self, scorer, name: str) -> None:
        """Attach a tuned scorer (training): `save` writes nothing for it, the config records `name`."""
        self._tuned = scorer
        self.config["tuned"] = name

    # -- inference --------------------------------------------------------------------------------

    def featurize(self, texts: list[str]) -> Features:
        return featurize(texts, embedder=self.embedder, dim=self.hash_dim, ngrams=self.ngrams)

    def logits(self, feats: Features) -> np.ndarray:
        out = feats.dense @ self.w_dense + self.bias                       # (N, 6)
        np.add.at(out, feats.rows, feats.vals[:, None] * self.w_hash[feats.cols])
        return out

    def predict_features(self, feats: Features) -> ClassifierOutput:
        p = _sigmoid(self.logits(feats))
        return ClassifierOutput(p[:, 0], p[:, 1:])

    def predict(self, texts) -> ClassifierOutput:
        """P(injection) and P(technique) for each text of `texts` (a list of non-empty strings)."""
        texts = check_texts(texts)
        if not texts:
            return ClassifierOutput(np.zeros(0, np.float32), np.zeros((0, len(LABELS)), np.float32))
        return self.predict_features(self.featurize(texts))


@functools.lru_cache(maxsize=1)
def default_classifier() -> InjectionClassifier:
    """The shipped classifier, loaded once per process."""
    return InjectionClassifier.load()


# ---------------------------------------------------------------------------------------------
# Training

def fit(feats: Features, labels: np.ndarray, techniques: np.ndarray, *, l2: float = 1e-5,
        l2_dense: float | None = None, technique_weight: float = 0.5, max_iter: int = 300,
        hash_dim: int = HASH_DIM, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-batch L-BFGS on the class-balanced logistic loss; returns (w_dense, w_hash, bias).

    loss = mean_i c_i * BCE(z_i0, y_i) + technique_weight * mean_i,k BCE(z_ik, t_ik)   (t_ik NaN: skipped)
           + l2_dense * |W_dense|^2 + l2 * |W_hash|^2
    with c_i = w_i W / (2 W_class(y_i)) for example weights w_i (`weights`, default 1, scaled to
    mean 1; W sums them over all examples, W_class over the example's class), so both classes
    weigh the same whatever their counts. The
    sentence-embedding block has its own penalty (`l2_dense`, default `l2`): its 384 dense
    dimensions separate training templates easily and generalise less than the n-grams.
    Deterministic: float64, full batch, no sampling.
    """
    import torch

    n = len(feats)
    l2_dense = l2 if l2_dense is None else l2_dense
    labels = np.asarray(labels, np.float64)
    if labels.shape != (n,) or np.asarray(techniques).shape != (n, len(LABELS)):
        raise InvalidInputError(f"fit needs {n} labels and a ({n}, {len(LABELS)}) technique matrix, "
                                f"got {labels.shape} and {np.asarray(techniques).shape}")
    dense = torch.from_numpy(feats.dense.astype(np.float64))
    with warnings.catch_warnings():  # torch's notes that sparse CSR is "beta" are noise here
        warnings.simplefilter("ignore", UserWarning)
        sparse = torch.sparse_coo_tensor(np.stack([feats.rows, feats.cols]), feats.vals.astype(np.float64),
                                         (n, hash_dim)).coalesce().to_sparse_csr()
    techniques = np.asarray(techniques, np.float64)
    known = torch.from_numpy(~np.isnan(techniques)).to(torch.float64)     # (N, 5): NaN = no technique named
    y = torch.from_numpy(np.concatenate([labels[:, None], np.nan_to_num(techniques)], 1))  # (N, 6)
    positives = labels.sum()
    if positives == 0 or positives == n:
        raise InvalidInputError("fit needs both injections (label 1) and benign texts (label 0)")
    w = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (n,) or not np.all(w > 0):
        raise InvalidInputError(f"fit needs {n} positive example weights (one per example, each > 0), got "
                                f"shape {w.shape}" + (f", smallest {w.min():g}" if w.size else ""))
    w = w / w.mean()  # only relative weights matter: the penalties keep their strength
    w_pos, w_all = w[labels > 0].sum(), w.sum()
    c = torch.from_numpy(w * np.where(labels > 0, w_all / (2 * w_pos), w_all / (2 * (w_all - w_pos))))
    head_weight = torch.tensor([1.0] + [technique_weight] * len(LABELS), dtype=torch.float64)
    w_dense = torch.zeros(dense.shape[1], len(HEADS), dtype=torch.float64, requires_grad=True)
    w_hash = torch.zeros(hash_dim, len(HEADS), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(len(HEADS), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w_dense, w_hash, bias], lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = dense @ w_dense + torch.sparse.mm(sparse, w_hash) + bias              # (N, 6)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")
        technique_bce = (bce[:, 1:] * known).sum(0) / known.sum(0).clamp(min=1)   # (5,) mean over known rows
        loss = (bce[:, 0] * c).mean() + (technique_bce * head_weight[1:]).sum() / len(LABELS) \
            + l2_dense * w_dense.pow(2).sum() + l2 * w_hash.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (w_dense.detach().numpy().astype(np.float32), w_hash.detach().numpy().astype(np.float32),
            bias.detach().numpy().astype(np.float32))
