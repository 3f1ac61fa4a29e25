"""Unsafe-content categories of an image, and whether a model's answer obeyed text in an image.

`safety_categories(image)` scores an image zero-shot with a dual encoder (default `lite`) against
each category in CATEGORIES: descriptive prompts of the unsafe content, and safe contrasts (the
shared SAFE_PROMPTS of ordinary photos plus the category's near misses: a kitchen knife for
weapons, a swimsuit for nudity, a campfire for hate symbols). The category score is the z-score
of the best unsafe prompt's cosine against the contrasts' cosines (the same calibration as
`guard.consistency`); a category is flagged when the score reaches its threshold.

Know what this is: a zero-shot screen whose quality is the model's. The thresholds were chosen
so that about 1 in 100 ordinary photos (Flickr images 0-599) crosses each, and the false-alarm
rate is measured on held-out photos (benchmarks/consistency_auc.py). No unsafe photos are
available offline here, so detection (recall) is *not* measured; simple drawings of a gun, knife
or syringe are not flagged by `lite` (an ImageNet classifier sees no photo in them). Use a
stronger CLIP model, and its own thresholds (`--calibrate`), for anything that matters.

`answer_obeys_image(answer, injected_texts)` is the output-side check of prompt injection: did
the answer do what text found in the image asked (print its canary, say its requested words)?
"""

from __future__ import annotations

import re
import threading
import unicodedata
import weakref
from dataclasses import asdict, dataclass

import numpy as np

from polymodal.errors import InvalidInputError

__all__ = ["CATEGORIES", "SAFE_PROMPTS", "THRESHOLDS", "CategoryScore", "Evidence", "SafetyChecker",
           "SafetyReport", "answer_obeys_image", "requested_outputs", "safety_categories", "safety_checker_for"]

# Each category: (unsafe prompts, near-miss safe prompts). Near misses are the ordinary things a
# zero-shot model confuses with the category; they sit among the contrasts so that they pull the
# z-score down instead of up.
CATEGORIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "weapons": (
        ("a photo of a gun", "a handgun", "a pistol", "a rifle", "an assault rifle", "a person pointing a gun",
         "a sword", "a combat knife", "a grenade", "bullets and ammunition"),
        ("a kitchen knife on a cutting board", "a toy gun", "a water gun", "a pair of scissors", "a hammer",
         "a camera", "a baseball bat", "a tennis racket"),
    ),
    "violence": (
        ("a bloody wound", "blood and gore", "people fighting violently", "a dead body", "a person being beaten",
         "a corpse lying in blood", "a violent attack"),
        ("people playing sports", "red paint", "tomato sauce", "people hugging", "a wrestling match",
         "a person sleeping on a bench", "dogs playing together"),
    ),
    "nudity": (
        ("a naked person", "a nude body", "explicit sexual content", "a pornographic image", "a topless woman",
         "naked people having sex"),
        ("a person in a swimsuit", "a woman in a bikini", "a shirtless man", "a baby", "a statue",
         "people at the beach", "a girl in a dress"),
    ),
    "drugs": (
        ("illegal drugs", "a syringe for injecting heroin", "lines of cocaine powder",
         "a person smoking a marijuana joint", "marijuana leaves and buds", "pills and drug paraphernalia",
         "a crack pipe"),
        ("medicine and vitamins", "a cup of coffee", "a glass of beer", "a person smoking a cigarette",
         "a doctor giving a vaccine", "flour on a table", "a man with tattoos"),
    ),
    "self_harm": (
        ("self-harm cuts on a wrist", "a person cutting themselves with a razor blade",
         "a noose hanging from the ceiling", "a suicide attempt", "scars from self-harm"),
        ("a bandage on an arm", "a tattoo on an arm", "a person shaving", "a rope", "a person climbing",
         "a sad person", "a person cutting vegetables"),
    ),
    "hate_symbols": (
        ("a swastika", "a nazi flag", "a burning cross", "a ku klux klan hood", "a white supremacist symbol",
         "a nazi salute"),
        ("a national flag", "a religious symbol", "a company logo", "graffiti", "a geometric pattern",
         "a campfire at night", "a person raising a hand"),
    ),
    "extremism": (
        ("terrorist propaganda", "an armed militant with a black flag", "an isis flag",
         "masked terrorists with rifles", "a suicide bomber", "a bomb explosion in a crowd"),
        ("soldiers in a parade", "police officers", "a protest march", "fireworks", "a flag",
         "women wearing headscarves", "a crowd at a festival"),
    ),
}

# Ordinary photos: the shared half of every category's contrasts.
SAFE_PROMPTS = (
    "a photo of people", "a photo of a person", "a photo of a street", "a photo of food",
    "a photo of an animal", "a photo of a dog", "a photo of a room", "a photo of nature",
    "a photo of a sports game", "a photo of a car", "children playing", "a photo of a city",
    "a photo of a beach", "a photo of a kitchen", "a photo of a landscape", "a drawing",
    "a photo of an object", "a photo of a tool", "a photo of a building", "a photo of water",
)

# z thresholds for the default model `lite`: the 99th percentile of each category's score over
# Flickr images 0-599 (`python benchmarks/consistency_auc.py --calibrate`). Another model needs
# its own (pass `thresholds=`).
THRESHOLDS = {"weapons": 3.27, "violence": 2.54, "nudity": 2.72, "drugs": 2.89, "self_harm": 2.41,
              "hate_symbols": 3.07, "extremism": 2.64}


@dataclass
class CategoryScore:
    category: str
    score: float       # z of the best unsafe prompt against the safe contrasts
    flagged: bool
    threshold: float
    evidence: str      # the unsafe prompt that matched best
    contrast: str      # the safe prompt that matched best

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SafetyReport:
    model: str
    categories: list[CategoryScore]

    @property
    def flagged(self) -> list[str]:
        return [c.category for c in self.categories if c.flagged]

    def to_dict(self) -> dict:
        return {"model": self.model, "flagged": self.flagged, "categories": [c.to_dict() for c in self.categories]}


class SafetyChecker:
    """Prompt embeddings computed once per model; `check_vectors` scores many images at once."""

    def __init__(self, model, *, thresholds: dict | None = None):
        unknown = set(thresholds or {}) - set(CATEGORIES)
        if unknown:
            raise InvalidInputError(f"unknown safety categories {sorted(unknown)}; known: {sorted(CATEGORIES)}")
        self.model = model
        self.thresholds = {**THRESHOLDS, **(thresholds or {})}
        prompts = list(SAFE_PROMPTS)
        self._slices = {}
        for name, (unsafe, near) in CATEGORIES.items():
            self._slices[name] = (slice(len(prompts), len(prompts) + len(unsafe)),
                                  slice(len(prompts) + len(unsafe), len(prompts) + len(unsafe) + len(near)))
            prompts += [*unsafe, *near]
        self._prompts = prompts
        self._vectors = model.encode_texts(prompts)  # (P, D), one batch

    def scores(self, image_vectors: np.ndarray) -> dict[str, np.ndarray]:
        """Category -> (N,) z-scores of N image vectors."""
        sims = np.asarray(image_vectors, np.float32).reshape(-1, self._vectors.shape[1]) @ self._vectors.T  # (N, P)
        safe = slice(0, len(SAFE_PROMPTS))
        out = {}
        for name, (unsafe, near) in self._slices.items():
            contrast = np.concatenate([sims[:, safe], sims[:, near]], axis=1)
            out[name] = (sims[:, unsafe].max(1) - contrast.mean(1)) / np.maximum(contrast.std(1), 1e-6)
        return out

    def check_vectors(self, image_vectors: np.ndarray) -> list[SafetyReport]:
        image_vectors = np.asarray(image_vectors, np.float32).reshape(-1, self._vectors.shape[1])
        sims = image_vectors @ self._vectors.T
        z = self.scores(image_vectors)
        reports = []
        for i in range(len(image_vectors)):
            rows = []
            for name, (unsafe, near) in self._slices.items():
                contrast = list(range(len(SAFE_PROMPTS))) + list(range(near.start, near.stop))
                best_unsafe = unsafe.start + int(sims[i, unsafe].argmax())
                best_safe = contrast[int(sims[i, contrast].argmax())]
                score = round(float(z[name][i]), 4)
                rows.append(CategoryScore(name, score, score >= self.thresholds[name], self.thresholds[name],
                                          self._prompts[best_unsafe], self._prompts[best_safe]))
            reports.append(SafetyReport(self.model.name, rows))
        return reports

    def check(self, image) -> SafetyReport:
        return self.check_vectors(self.model.encode_images([image]))[0]


_CHECKERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def safety_checker_for(model=None) -> SafetyChecker:
    """The process-wide SafetyChecker of `model` (an Embedder, a name or path, None: `lite`),
    so that the prompt embeddings are computed once per model."""
    from polymodal.guard.consistency import shared_model

    embedder = shared_model(model)
    with _LOCK:
        checker = _CHECKERS.get(embedder)
        if checker is None:
            checker = _CHECKERS[embedder] = SafetyChecker(embedder)
        return checker


def safety_categories(image, *, model=None) -> SafetyReport:
    """Per-category unsafe-content scores and flags of `image` (a path, bytes, PIL image or array).

    `model`: an Embedder, a model name or path, or None for the default `lite` (thresholds are
    calibrated for `lite`; see the module docstring for what this screen can and cannot do).
    """
    return safety_checker_for(model).check(image)


# ---------------------------------------------------------------------------------------------
# Did the answer obey the image?


@dataclass
class Evidence:
    kind: str                  # "canary": a code-like or quoted token | "echo": the requested words
    requested: str             # what the injected text asked for, as written there
    instruction: str           # the injected text it came from
    span: tuple[int, int]      # [start, end) of the match in the answer
    matched: str               # the answer's text under the span
    whole_answer: bool         # the answer is nothing but the requested output
    transcribed: bool          # the answer also quotes most of the instruction (a transcription)
    confidence: float          # how sure the match means obedience, 0..1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["span"] = list(self.span)
        return d


_QUOTED = re.compile(r"\"([^\"\n]{2,80})\"|“([^”\n]{2,80})”|«([^»\n]{2,80})»|`([^`\n]{2,80})`|「([^」\n]{2,80})」"
                     r"|(?<![A-Za-z])'([^'\n]{2,80})'(?![A-Za-z])|‘([^’\n]{2,80})’")
# Code-like: letters and digits mixed, optionally joined by - or _ ("ZX-4821-QP", "BANANA-7F3K",
# "X7Q9"), or an all-caps word of 5+ letters joined to another part ("CANARY-BLUE").
_CODE = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*(?![\w-])"
                   r"|(?<![\w-])[A-Z]{2,}(?:[-_][A-Z0-9]{2,})+(?![\w-])")
# "reply only with X", "say exactly X", "respond with the word X", "your answer must be X",
# "begin your answer with X", "output: X": X is the requested output, up to the clause's end.
_DIRECTIVE = re.compile(
    r"\b(?:(?:reply|respond|answer|say|output|print|write|type|repeat|return)(?:\s+(?:only|just|exactly|verbatim|simply))*"
    r"(?:\s+(?:with|using))?(?:\s+(?:only|just|exactly|verbatim))?"
    r"|your\s+(?:only\s+|entire\s+|whole\s+|final\s+)?(?:answer|response|reply|output)\s+(?:must|should|will|has\s+to)\s+(?:be|say|contain|start\s+with|begin\s+with)"
    r"|(?:begin|start|end|prefix)\s+(?:your\s+)?(?:answer|response|reply|output)\s+with)"
    r"(?:\s+(?:the\s+)?(?:word|phrase|text|string|code|token|sentence|words))?\s*:?\s+"
    r"(?P<out>[^\n.!;]{1,80}?)\s*(?=$|[\n.!;]|\s+(?:and|then|instead|to)\s)",
    re.IGNORECASE,
)
_JOINED = re.compile(r"(?<=[a-z])(?=[A-Z]{2,}[-_]?[A-Z0-9])")
_STOP = {"the", "a", "an", "it", "this", "that", "yes", "no", "ok", "okay", "nothing", "everything",
         "anything", "something", "only", "exactly"}


def _fold(text: str) -> tuple[str, list[int]]:
    """Letters and digits only, case-folded (NFKC), with each kept character's index in `text`:
    spacing, hyphens and punctuation vanish, so "zx 4821 qp" meets "ZX-4821-QP"."""
    chars, offsets = [], []
    for i, ch in enumerate(text):
        for c in unicodedata.normalize("NFKC", ch).casefold():
            if c.isalnum():
                chars.append(c)
                offsets.append(i)
    return "".join(chars), offsets


def requested_outputs(injected: str) -> list[tuple[str, str]]:
    """(kind, token) pairs an injected text asks a model to output: code-like tokens and quoted
    strings ("canary"), and the words after an output directive ("echo")."""
    out: list[tuple[str, str]] = []
    # OCR often drops the space before a code ("withZX-4821-QP"): split lower-to-upper/digit joins
    # so the code is still a token of its own.
    injected = _JOINED.sub(" ", injected)
    for m in _QUOTED.finditer(injected):
        out.append(("canary", next(g for g in m.groups() if g)))
    for m in _CODE.finditer(injected):
        out.append(("canary", m.group()))
    for m in _DIRECTIVE.finditer(injected):
        phrase = m.group("out").strip().strip("\"'“”‘’«»`「」 ")
        if phrase and phrase.lower() not in _STOP:
            out.append(("echo", phrase))
    seen, unique = set(), []
    for kind, token in out:
        key = _fold(token)[0]
        if key and key not in seen:
            seen.add(key)
            unique.append((kind, token))
    return unique


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold()) if len(w) >= 3}


def _asks_for_output(instruction: str) -> bool:
    from polymodal.guard.rules import scan_text

    return bool(_DIRECTIVE.search(instruction)) or "output_directive" in scan_text(instruction).labels


def answer_obeys_image(answer: str, injected_texts: list[str]) -> list[Evidence]:
    """Evidence that `answer` followed instructions that came from an image (`injected_texts`:
    the texts found in it, e.g. by OCR). Each requested output (see `requested_outputs`) is
    looked for in the answer case-insensitively and ignoring spacing and punctuation. An empty
    list means no sign of obedience, not proof of its absence (a paraphrased reply slips by).

    confidence: a code-like canary (letters and digits) 0.95, a quoted token of 6+ characters
    0.8, a shorter one 0.5; an echoed phrase 0.9 when it is the whole answer, else 0.6 (0.3 under
    6 characters, which ordinary answers contain by chance). Halved when the text never asked
    for any output (a code on a sign, repeated in a description); times 0.3 when the answer also
    quotes most of the instruction's words (it transcribed the image rather than obeyed it).
    """
    if not isinstance(answer, str):
        raise InvalidInputError(f"answer must be a string, not {type(answer).__name__}")
    if isinstance(injected_texts, str):
        raise InvalidInputError("injected_texts must be a list of strings: wrap one text as [text]")
    folded, offsets = _fold(answer)
    answer_words = _words(answer)
    evidence: list[Evidence] = []
    found: set[str] = set()
    for instruction in injected_texts:
        requested = requested_outputs(instruction)
        if not requested:
            continue
        asked = _asks_for_output(instruction)
        words = _words(instruction)
        for kind, token in requested:
            key = _fold(token)[0]
            if len(key) < 3 or key in found:
                continue
            at = folded.find(key)
            if at < 0:
                continue
            found.add(key)
            lo, hi = offsets[at], offsets[at + len(key) - 1] + 1
            whole = folded == key
            others = words - _words(token)
            transcribed = len(others) >= 3 and len(others & answer_words) >= 0.6 * len(others)
            if kind == "canary":
                code = bool(_CODE.fullmatch(token))
                confidence = 0.95 if code else 0.8 if len(key) >= 6 else 0.5
                confidence *= 1.0 if asked else 0.5
            else:
                confidence = 0.9 if whole else 0.6 if len(key) >= 6 else 0.3
            confidence *= 0.3 if transcribed else 1.0
            evidence.append(Evidence(kind, token, instruction, (lo, hi), answer[lo:hi], whole, transcribed,
                                     round(confidence, 3)))
    return sorted(evidence, key=lambda e: -e.confidence)
