"""Caption metrics as the COCO caption evaluation defines them: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D.

Inputs are ``references: {image: [caption, ...]}`` and ``predictions: {image: caption}`` with the
same keys. Captions are tokenised with :mod:`polymodal.eval.ptb_tokenize` first, as the reference
code does with Stanford's tokenizer. BLEU, ROUGE-L and CIDEr-D are computed here in Python and equal
the `pycocoevalcap` scores within 1e-6 (tests/test_eval_captioning.py); METEOR needs Java and the
METEOR 1.5 jar (:mod:`polymodal.backends.meteor`) and is left out, said so, when they are missing.

Definitions (Papineni et al. 2002; Lin 2004; Vedantam et al. 2015, as coded by coco-caption):
- BLEU-n: corpus-level. Clipped n-gram matches and candidate n-grams are summed over all images;
  the brevity penalty uses, per image, the reference length closest to the candidate's (the shorter
  one on a tie). BLEU-n is the geometric mean of the 1..n precisions.
- ROUGE-L: per image, F-measure (beta = 1.2) of the best LCS precision and the best LCS recall over
  the references; averaged over images.
- CIDEr-D: per n in 1..4, TF-IDF vectors of n-gram counts with document frequencies from the
  reference sets; the candidate's weights are clipped at the reference's; cosine times a Gaussian
  length penalty (sigma = 6) on the difference in bigram counts (the reference code's measure of
  length); averaged over references and n, times 10; averaged over images.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from polymodal.errors import InvalidInputError
from polymodal.eval.ptb_tokenize import tokenize_all

_MAX_N = 4
_CIDER_SIGMA = 6.0
_ROUGE_BETA = 1.2
# BLEU's smoothing constants from the reference code: tiny keeps a zero precision zero, small
# avoids a division by zero on an empty corpus.
_TINY, _SMALL = 1e-15, 1e-9


@dataclass
class CaptionScores:
    """Corpus scores (keys ``BLEU-1`` ... ``CIDEr-D``) and per-image scores for ROUGE-L and CIDEr-D."""

    corpus: dict[str, float]
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)
    images: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"images": self.images, "scores": self.corpus, "per_image": self.per_image,
                "notes": self.notes}


def _ngrams(tokens: list[str], n_max: int = _MAX_N) -> Counter:
    """All 1..n_max-grams of a token list with their counts."""
    return Counter(tuple(tokens[i:i + n]) for n in range(1, n_max + 1) for i in range(len(tokens) - n + 1))


def bleu(references: dict, predictions: dict) -> list[float]:
    """Corpus BLEU-1..4 over tokenised captions (strings of space-separated tokens)."""
    correct = [0] * _MAX_N
    guessed = [0] * _MAX_N
    test_length = ref_length = 0
    for key, candidate in predictions.items():
        tokens = candidate.split()
        counts = _ngrams(tokens)
        max_ref_counts: Counter = Counter()
        for reference in references[key]:
            for gram, count in _ngrams(reference.split()).items():
                max_ref_counts[gram] = max(max_ref_counts[gram], count)
        for gram, count in counts.items():
            correct[len(gram) - 1] += min(count, max_ref_counts[gram])
        for n in range(1, _MAX_N + 1):
            guessed[n - 1] += max(0, len(tokens) - n + 1)
        test_length += len(tokens)
        lengths = [len(reference.split()) for reference in references[key]]
        ref_length += min(lengths, key=lambda length: (abs(length - len(tokens)), length))
    scores, product = [], 1.0
    for n in range(_MAX_N):
        product *= (correct[n] + _TINY) / (guessed[n] + _SMALL)
        scores.append(product ** (1.0 / (n + 1)))
    ratio = (test_length + _TINY) / (ref_length + _SMALL)
    if ratio < 1:
        scores = [score * math.exp(1 - 1 / ratio) for score in scores]
    return scores


def _lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)) dynamic programme)."""
    previous = [0] * (len(b) + 1)
    for token_a in a:
        current = [0]
        for j, token_b in enumerate(b):
            current.append(previous[j] + 1 if token_a == token_b else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, references: list[str]) -> float:
    """ROUGE-L F-measure of one tokenised candidate against its references."""
    tokens = candidate.split(" ")
    precision = recall = 0.0
    for reference in references:
        ref_tokens = reference.split(" ")
        common = _lcs_length(ref_tokens, tokens)
        precision = max(precision, common / len(tokens))
        recall = max(recall, common / len(ref_tokens))
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + _ROUGE_BETA ** 2) * precision * recall / (recall + _ROUGE_BETA ** 2 * precision)


class _TfIdf:
    """TF-IDF n-gram vectors with document frequencies counted over reference sets."""

    def __init__(self, reference_sets: list[list[str]]):
        self.document_frequency: Counter = Counter()
        for references in reference_sets:
            self.document_frequency.update({gram for ref in references for gram in _ngrams(ref.split())})
        self.log_documents = math.log(float(len(reference_sets)))

    def vector(self, caption: str) -> tuple[list[dict], list[float], int]:
        """(weights per n, norm per n, bigram count) of one tokenised caption."""
        weights: list[dict] = [{} for _ in range(_MAX_N)]
        norms = [0.0] * _MAX_N
        bigrams = 0
        for gram, count in _ngrams(caption.split()).items():
            n = len(gram) - 1
            idf = self.log_documents - math.log(max(1.0, self.document_frequency[gram]))
            weights[n][gram] = count * idf
            norms[n] += (count * idf) ** 2
            if n == 1:
                bigrams += count
        return weights, [math.sqrt(norm) for norm in norms], bigrams


def _cider_similarity(candidate, reference) -> np.ndarray:
    """Clipped cosine per n times the Gaussian length penalty: shape (4,)."""
    (weights, norms, length), (ref_weights, ref_norms, ref_length) = candidate, reference
    penalty = math.exp(-((length - ref_length) ** 2) / (2 * _CIDER_SIGMA ** 2))
    similarity = np.zeros(_MAX_N)
    for n in range(_MAX_N):
        dot = sum(min(weight, ref_weights[n].get(gram, 0.0)) * ref_weights[n].get(gram, 0.0)
                  for gram, weight in weights[n].items())
        if norms[n] != 0 and ref_norms[n] != 0:
            dot /= norms[n] * ref_norms[n]
        similarity[n] = dot * penalty
    return similarity


def cider_d(references: dict, predictions: dict) -> dict:
    """CIDEr-D of each image's tokenised candidate: ``{image: score}``."""
    keys = list(predictions)
    tfidf = _TfIdf([references[key] for key in keys])
    scores = {}
    for key in keys:
        candidate = tfidf.vector(predictions[key])
        total = sum(_cider_similarity(candidate, tfidf.vector(ref)) for ref in references[key])
        scores[key] = float(np.mean(total) / len(references[key]) * 10.0)
    return scores


def _check(references: dict, predictions: dict) -> None:
    if not predictions:
        raise InvalidInputError("no predictions to score: give at least one {image: caption}")
    missing = [key for key in predictions if not references.get(key)]
    if missing:
        raise InvalidInputError(f"{len(missing)} predicted images have no reference captions "
                         f"(first: {missing[0]!r}); predictions and references must name the same images")


def evaluate_captions(references: dict, predictions: dict, *, meteor: bool = True) -> CaptionScores:
    """Score ``predictions {image: caption}`` against ``references {image: [caption, ...]}``.

    Only the predicted images are scored (each must have references). ``meteor=False`` skips
    METEOR; when Java or the METEOR jar is missing it is skipped with a note saying how to add it.
    """
    _check(references, predictions)
    keys = list(predictions)
    refs = tokenize_all({key: list(references[key]) for key in keys})
    preds = {key: text[0] for key, text in tokenize_all({key: [predictions[key]] for key in keys}).items()}
    corpus = {f"BLEU-{n + 1}": score for n, score in enumerate(bleu(refs, preds))}
    notes: list[str] = []
    if meteor:
        # Optional: a Java process; imported here so the pure-Python metrics need nothing else.
        from polymodal.backends.meteor import MeteorUnavailable, meteor_scores

        try:
            corpus["METEOR"], _ = meteor_scores(refs, preds)
        except MeteorUnavailable as exc:
            notes.append(f"METEOR skipped: {exc}")
    rouge = {key: rouge_l(preds[key], refs[key]) for key in keys}
    cider = cider_d(refs, preds)
    corpus["ROUGE-L"] = float(np.mean(list(rouge.values())))
    corpus["CIDEr-D"] = float(np.mean(list(cider.values())))
    per_image = {key: {"ROUGE-L": rouge[key], "CIDEr-D": cider[key]} for key in keys}
    return CaptionScores(corpus=corpus, per_image=per_image, images=len(keys), notes=notes)
