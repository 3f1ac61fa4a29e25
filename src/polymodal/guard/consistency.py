"""Cross-modal consistency: does the image support what a caption (or a model's answer) claims?

Two steps, both small and explainable:

1. `extract_claims(text)` splits the text into claims with rules, no parser model (offline): the
   objects it names (nouns and noun phrases from a vocabulary, `data/object_vocab.tsv`: the 80
   COCO categories with synonyms and plurals, everyday objects, people words, animals, scenes),
   the colours, sizes and materials attached to them ("a red car", "the car is red"), and
   explicit counts ("two dogs", "3 people"). Negated mentions ("no dogs", "without a hat") are
   not claims.
2. `ConsistencyChecker` scores each claim against the image with a dual encoder (default `lite`)
   and calibrates the score against contrasting claims, because a raw cosine means little on its
   own (cosines of one image against any text sit in a narrow band that moves from image to
   image):
   - object and scene claims: the prompt "there is a dog" against the same prompt for every
     vocabulary term of another concept; score = z = (s - mean(c)) / std(c + [s]), with s the
     claim's cosine and c the contrasts' cosines. A claim is checked at the level of its concept: s is the best cosine over
     the concept's terms ("a woman" and "a person" are both backed by any of person, man, woman,
     child, ...; "a bird" by sparrow, duck, ...), so fine distinctions inside a concept are not
     checked.
   - colour, size, material: "there is a red car" against "there is a <other colour> car"; counts:
     "there are two dogs" against one, three, four, five, many dogs; the same z, over that set.
   A claim is supported when z >= the threshold of its kind (THRESHOLDS, chosen on calibration
   splits, see docs/guard/consistency.md and benchmarks/consistency_auc.py --calibrate).

The contrast prompts do not depend on the image: their embeddings are computed once per model
(the vocabulary's in one batch, attribute and count prompts in one batch per call) and cached.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from polymodal.errors import InvalidInputError

__all__ = ["THRESHOLDS", "Claim", "ConsistencyChecker", "ConsistencyReport", "Term", "check_consistency", "checker_for",
           "extract_claims", "roc_auc", "shared_model", "vocabulary"]

VOCAB_FILE = Path(__file__).with_name("data") / "object_vocab.tsv"

# z-score thresholds per claim kind: a claim is supported when its z reaches this. Chosen with
# `python benchmarks/consistency_auc.py --calibrate` (Youden's J, rounded), with the default `lite`:
# objects and scenes on present vs absent COCO categories of coco-mini (J at 0.949); colours on
# true vs swapped colours of Flickr images 500-599 (0.84, 30 pairs); counts on true vs wrong
# counts of coco-mini instances (-0.14). Sizes and materials have no labelled data here and take
# the colour threshold (a size has one contrast, so its z is +-2: the likelier of small/large).
THRESHOLDS = {"object": 0.95, "scene": 0.95, "colour": 0.85, "size": 0.85, "material": 0.85, "count": -0.15}

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white",
           "gray", "silver", "gold")
SIZES = ("small", "large")
MATERIALS = ("wooden", "metal", "plastic", "glass", "stone", "brick", "leather", "paper")
# Surface words that map onto the canonical values above.
_ATTRIBUTE_WORDS = {
    **{c: ("colour", c) for c in COLOURS}, "grey": ("colour", "gray"), "golden": ("colour", "gold"),
    "small": ("size", "small"), "tiny": ("size", "small"), "large": ("size", "large"),
    "big": ("size", "large"), "huge": ("size", "large"), "giant": ("size", "large"),
    **{m: ("material", m) for m in MATERIALS}, "wood": ("material", "wooden"),
    "metallic": ("material", "metal"), "steel": ("material", "metal"),
}
_COUNT_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}
_NUMBER_NAMES = {v: k for k, v in _COUNT_WORDS.items()}
COUNT_CONTRASTS = ("one", "two", "three", "four", "five", "many")
# Words that may stand between a determiner and its noun without being claims themselves.
_FILLER_ADJECTIVES = set("""young old little adult baby fluffy furry wet dry happy smiling
    sleeping shaggy long short tall bright dark light striped spotted colorful colourful
    empty full open closed clean dirty new old-fashioned fresh sliced cut half single double
    blond blonde bald shirtless muddy snowy sandy grassy rocky busy crowded quiet modern antique
    toy stuffed cute pretty beautiful nice other same big-eyed curly-haired dark-haired
    long-haired short-haired middle-aged elderly older younger asian african american""".split())
_DETERMINERS = set("""a an the this that these those some several many few his her their its my
    your our each every another any both lots of""".split())
_NEGATIONS = {"no", "without", "not", "never", "nor", "neither"}
_COPULAS = {"is", "are", "was", "were", "looks", "look", "appears", "appear"}

_TOKEN = re.compile(r"[a-z]+(?:-[a-z]+)*|\d+|'s|[.!?;:,()\n]")
_BREAKS = set(".!?;:()\n")


@dataclass(frozen=True)
class Term:
    term: str      # singular surface form ("dog", "fire hydrant")
    plural: str
    concept: str   # terms of one concept are synonyms or hyponyms and never contrast each other
    kind: str      # person | animal | object | scene
    coco: str | None
    det: bool      # ambiguous word: a noun only after a determiner, number, possessive or adjective
    form: str      # count | mass | plural: how a prompt names it


@lru_cache(maxsize=1)
def vocabulary() -> tuple[Term, ...]:
    """The claim vocabulary, in file order."""
    rows = [line.split("\t") for line in VOCAB_FILE.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")]
    header, rows = rows[0], rows[1:]
    if header != ["term", "plural", "concept", "kind", "coco", "det", "form"]:
        raise InvalidInputError(f"{VOCAB_FILE} has an unexpected header {header}")
    return tuple(Term(t, p, c, k, None if coco == "-" else coco, det == "1", form)
                 for t, p, c, k, coco, det, form in rows)


@lru_cache(maxsize=1)
def _term_index() -> dict[str, int]:
    return {t.term: i for i, t in enumerate(vocabulary())}


@lru_cache(maxsize=1)
def _lexicon() -> tuple[dict[tuple[str, ...], tuple[int, bool]], int]:
    """Token tuple -> (vocabulary index, is plural), and the longest term in tokens."""
    lexicon: dict[tuple[str, ...], tuple[int, bool]] = {}
    for i, t in enumerate(vocabulary()):
        lexicon.setdefault(tuple(t.term.split()), (i, t.form == "plural"))
        if t.plural != t.term:
            lexicon.setdefault(tuple(t.plural.split()), (i, True))
    return lexicon, max(len(k) for k in lexicon)


# ---------------------------------------------------------------------------------------------
# Claims


@dataclass
class Claim:
    kind: str                 # object | scene | colour | size | material | count
    subject: str              # the vocabulary term (singular): "dog"
    concept: str
    value: str | None         # "black" for a colour, "two" for a count, None for objects/scenes
    prompt: str               # the sentence scored: "there is a black dog"
    span: tuple[int, int]     # [start, end) of the mention in the text
    phrase: str               # the text under the span
    score: float | None = None      # calibrated: z against the contrasts
    cosine: float | None = None     # raw cosine of the image and the prompt
    supported: bool | None = None
    alternative: str | None = None  # the best-scoring contrast ("cat", "brown", "three")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["span"] = list(self.span)
        return d


def _render(term: Term, value: str | None = None, count: str | None = None) -> str:
    """The claim sentence: "there is a dog", "there is an old car" -> article by sound."""
    if count is not None:
        noun = term.term if count == "one" else term.plural
        return f"there is one {noun}" if count == "one" else f"there are {count} {noun}"
    noun = f"{value} {term.term}" if value else term.term
    if term.form == "plural":
        return f"there are {noun}"
    if term.form == "mass":
        return f"there is {noun}"
    vowel = noun[0] in "aeiou" and not noun.startswith(("uni", "use", "eu", "one"))
    return f"there is {'an' if vowel else 'a'} {noun}"


def _tokens(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text.lower())]


def _count_of(token: str) -> int | None:
    if token.isdigit():
        return int(token) if 0 < int(token) < 1000 else None
    return _COUNT_WORDS.get(token)


def extract_claims(text: str) -> list[Claim]:
    """Objects, scenes, attributes and counts that `text` asserts, in order of mention, each once.

    Rules (no parser model): the longest vocabulary match at each position; an ambiguous word
    (a verb or colour too: "train", "orange", "tie") counts only after a determiner, number,
    possessive or adjective; a noun directly followed by another noun is a modifier ("car door":
    the claim is the door); colour, size and material words before the noun, or after it with a
    copula ("the car is red"), attach to it; a number before the noun is a count.
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"text must be a string, not {type(text).__name__}")
    lexicon, longest = _lexicon()
    vocab = vocabulary()
    tokens = _tokens(text)
    words = [t for t, _, _ in tokens]
    found: list[tuple[int, int, int, bool]] = []  # (start token, end token, vocab index, plural)
    i = 0
    while i < len(tokens):
        for n in range(min(longest, len(tokens) - i), 0, -1):
            hit = lexicon.get(tuple(words[i:i + n]))
            if hit is not None:
                found.append((i, i + n, *hit))
                i += n
                break
        else:
            i += 1
    claims: list[Claim] = []
    seen: set[tuple[str, str, str | None]] = set()

    def add(claim: Claim):
        key = (claim.kind, claim.subject, claim.value)
        if key not in seen:
            seen.add(key)
            claims.append(claim)

    for k, (start, end, index, plural) in enumerate(found):
        term = vocab[index]
        nxt = found[k + 1] if k + 1 < len(found) else None
        if nxt is not None and nxt[0] == end and not plural:
            continue  # a noun modifier: "car door", "pizza box", "tennis court"
        if term.term in _ATTRIBUTE_WORDS and nxt is not None and nxt[0] == end:
            continue  # "an orange shirt": the colour, not the fruit
        # walk left over the modifiers: "two small black dogs", "a black and white cat"
        j, modifiers = start - 1, []
        while j >= 0 and (words[j] in _ATTRIBUTE_WORDS or words[j] in _FILLER_ADJECTIVES
                          or (words[j] in {"and", ","} and j > 0 and words[j - 1] in _ATTRIBUTE_WORDS)):
            if words[j] in _ATTRIBUTE_WORDS:
                modifiers.append(j)
            j -= 1
        before = words[j] if j >= 0 else None
        if before in _NEGATIONS or (before in _DETERMINERS and j > 0 and words[j - 1] in _NEGATIONS):
            continue
        compound = k > 0 and found[k - 1][1] == start  # "pizza box": a noun before it
        if term.det and not (j < start - 1 or compound or before in _DETERMINERS or before == "'s"
                             or (before is not None and _count_of(before) is not None)):
            continue  # "to train", "bear with", "orange" on its own
        lo = tokens[j][1] if j >= 0 and (before in _DETERMINERS or _count_of(before or "") is not None) \
            else tokens[start][1]
        hi = tokens[end - 1][2]
        kind = "scene" if term.kind == "scene" else "object"
        add(Claim(kind, term.term, term.concept, None, _render(term), (lo, hi), text[lo:hi]))
        # predicate attributes: "the dog is black", "the chairs are wooden"
        p = end
        if p < len(words) and words[p] in _COPULAS:
            p += 1
            while p < len(words) and (words[p] in _ATTRIBUTE_WORDS or words[p] in {"and", "very", "all"}):
                if words[p] in _ATTRIBUTE_WORDS:
                    modifiers.append(p)
                p += 1
        if term.kind != "person":
            _attribute_claims(term, sorted(modifiers), tokens, text, add)
        if before is not None and term.form == "count":
            count = _count_of(before)
            if count is not None and count <= 12 and ((count > 1) == plural or term.plural == term.term):
                name = _NUMBER_NAMES[count]
                add(Claim("count", term.term, term.concept, name, _render(term, count=name),
                          (tokens[j][1], hi), text[tokens[j][1]:hi]))
    return claims


def _attribute_claims(term: Term, positions: list[int], tokens, text: str, add) -> None:
    # Colours of people are skin or hair colours, and sizes of people are ages ("little girl"):
    # neither is checked (callers only get attributes of animals, objects and scenes).
    by_kind: dict[str, list[tuple[str, int]]] = {}
    for p in positions:
        kind, value = _ATTRIBUTE_WORDS[tokens[p][0]]
        if all(v != value for v, _ in by_kind.get(kind, [])):
            by_kind.setdefault(kind, []).append((value, p))
    for kind, values in by_kind.items():
        value = " and ".join(v for v, _ in values)  # "black and white"
        lo, hi = tokens[values[0][1]][1], tokens[values[-1][1]][2]
        add(Claim(kind, term.term, term.concept, value, _render(term, value), (lo, hi), text[lo:hi]))


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass
class ConsistencyReport:
    model: str
    score: float               # fraction of claims the image supports (1.0 when there are none)
    claims: list[Claim]
    thresholds: dict = field(default_factory=lambda: dict(THRESHOLDS))

    @property
    def unsupported(self) -> list[Claim]:
        return [c for c in self.claims if c.supported is False]

    @property
    def consistent(self) -> bool:
        return not self.unsupported

    def to_dict(self) -> dict:
        return {"model": self.model, "score": self.score, "consistent": self.consistent,
                "claims": [c.to_dict() for c in self.claims],
                "unsupported": [c.to_dict() for c in self.unsupported], "thresholds": self.thresholds}


def _z(s: float, contrasts: np.ndarray) -> float:
    # The spread includes the claim itself, so that a set of one contrast (small vs large) gives
    # a bounded +-1 instead of a division by zero; with hundreds of contrasts it changes nothing.
    spread = float(np.std(np.append(contrasts, s)))
    return float((s - contrasts.mean()) / max(spread, 1e-6))


class ConsistencyChecker:
    """Scores claims against images with one model; contrast embeddings are computed once.

    `model` is an Embedder. `thresholds` overrides THRESHOLDS per claim kind.
    """

    def __init__(self, model, *, thresholds: dict | None = None, cache_size: int = 4096):
        unknown = set(thresholds or {}) - set(THRESHOLDS)
        if unknown:
            raise InvalidInputError(f"unknown claim kinds in thresholds: {sorted(unknown)}; known: {sorted(THRESHOLDS)}")
        self.model = model
        self.thresholds = {**THRESHOLDS, **(thresholds or {})}
        self.vocab = vocabulary()
        concepts = np.array([t.concept for t in self.vocab])
        self._concept_terms = {c: np.flatnonzero(concepts == c) for c in dict.fromkeys(concepts)}
        self._contrast_mask = {c: concepts != c for c in self._concept_terms}
        self._vocab_vectors: np.ndarray | None = None  # (T, D), "there is a <term>" for every term
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # -- text side, cached ------------------------------------------------------------------------

    def vocab_vectors(self) -> np.ndarray:
        if self._vocab_vectors is None:
            self._vocab_vectors = self.model.encode_texts([_render(t) for t in self.vocab])
        return self._vocab_vectors

    def _texts(self, prompts: list[str]) -> dict[str, np.ndarray]:
        """Embeddings of `prompts`; the ones not cached are encoded together in one batch."""
        with self._lock:
            missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
            if missing:
                for p, v in zip(missing, self.model.encode_texts(missing)):
                    self._cache[p] = v
            out = {}
            for p in prompts:
                self._cache.move_to_end(p)
                out[p] = self._cache[p]
            while len(self._cache) > max(self._cache_size, len(out)):
                self._cache.popitem(last=False)
            return out

    def _contrast_prompts(self, claim: Claim) -> list[tuple[str, str]]:
        """(label, prompt) of the contrasts of an attribute or count claim."""
        term = self.vocab[_term_index()[claim.subject]]
        if claim.kind == "count":
            return [(c, _render(term, count=c)) for c in COUNT_CONTRASTS if c != claim.value]
        values = {"colour": COLOURS, "size": SIZES, "material": MATERIALS}[claim.kind]
        claimed = set(claim.value.split(" and "))
        return [(v, _render(term, v)) for v in values if v not in claimed]

    # -- scoring ----------------------------------------------------------------------------------

    def score_claims(self, image_vector: np.ndarray, claims: list[Claim]) -> list[Claim]:
        """Fill in score, cosine, supported and alternative of each claim (in place; returned)."""
        image_vector = np.asarray(image_vector, np.float32).reshape(-1)
        sims = self.vocab_vectors() @ image_vector  # (T,) cosine with "there is a <term>"
        extra = [c for c in claims if c.kind not in ("object", "scene")]
        plan = {id(c): self._contrast_prompts(c) for c in extra}
        vectors = self._texts([c.prompt for c in extra] + [p for c in extra for _, p in plan[id(c)]])
        for claim in claims:
            if claim.kind in ("object", "scene"):
                mask = self._contrast_mask[claim.concept]
                contrasts = sims[mask]
                # a claim is checked at the level of its concept: "a woman" is backed by the best
                # of person, man, woman, child, ... (the model cannot tell them apart reliably:
                # checked one by one, 68% of true person words in held-out Flickr captions failed)
                s = float(sims[self._concept_terms[claim.concept]].max())
                claim.cosine = float(sims[_term_index()[claim.subject]])
                claim.alternative = self.vocab[int(np.flatnonzero(mask)[contrasts.argmax()])].term
            else:
                labels = [label for label, _ in plan[id(claim)]]
                contrasts = np.array([vectors[p] @ image_vector for _, p in plan[id(claim)]])
                s = claim.cosine = float(vectors[claim.prompt] @ image_vector)
                claim.alternative = labels[int(contrasts.argmax())]
            claim.score = round(_z(s, contrasts), 4)
            claim.cosine = round(claim.cosine, 4)
            claim.supported = claim.score >= self.thresholds[claim.kind]
        return claims

    def check_vector(self, image_vector: np.ndarray, text: str) -> ConsistencyReport:
        """Like `check`, for an image already embedded by this checker's model."""
        claims = self.score_claims(image_vector, extract_claims(text))
        score = float(np.mean([c.supported for c in claims])) if claims else 1.0
        return ConsistencyReport(self.model.name, round(score, 4), claims, dict(self.thresholds))

    def check(self, image, text: str) -> ConsistencyReport:
        """Check `text` against `image` (a path, bytes, PIL image or array)."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("text is empty: give the caption or answer to check against the image")
        return self.check_vector(self.model.encode_images([image])[0], text)


# ---------------------------------------------------------------------------------------------
# Measuring


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve of `scores` for binary `labels` (1 = positive).

    Computed as the Mann-Whitney U statistic: the probability that a random positive scores
    above a random negative, ties counting one half; ranks (ties averaged) make it O(n log n).
    """
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise InvalidInputError(f"{scores.size} scores but {labels.size} labels")
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise InvalidInputError(f"ROC AUC needs both classes; got {n_pos} positives and {n_neg} negatives")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size)
    sorted_scores = scores[order]
    # average rank (1-based) over each run of tied scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], scores.size]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


# ---------------------------------------------------------------------------------------------
# Entry point


_MODELS: dict[str, object] = {}
_CHECKERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_MODELS_LOCK = threading.Lock()


def shared_model(model=None):
    """An Embedder for `model` (an Embedder, a name or path, or None for the default `lite`);
    models named by string are loaded once per process and shared by the guard checks."""
    from polymodal.embed.base import Embedder

    if isinstance(model, Embedder):
        return model
    from polymodal.embed.resolve import load_embedder

    key = "lite" if model is None else str(model)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_embedder(key)
        return _MODELS[key]


def checker_for(model=None) -> ConsistencyChecker:
    """The process-wide ConsistencyChecker of `model` (see `shared_model`): its text-side cache
    is shared by every caller of that model."""
    embedder = shared_model(model)
    with _MODELS_LOCK:
        checker = _CHECKERS.get(embedder)
        if checker is None:
            checker = _CHECKERS[embedder] = ConsistencyChecker(embedder)
        return checker


def check_consistency(image, text: str, *, model=None) -> ConsistencyReport:
    """Which claims of `text` (a caption or a model's answer) does `image` support?

    `model`: an Embedder, a model name or path, or None for the default `lite`. The report lists
    every claim with its calibrated score (z against contrasting claims), its raw cosine and a
    supported/unsupported verdict; `report.unsupported` are the claims the image does not back.
    """
    return checker_for(model).check(image, text)
