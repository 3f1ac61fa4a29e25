"""Visual question answering accuracy as the official VQA evaluation computes it.

An answer is normalised the official way (Antol et al. 2015, VQA v2 evaluation code): newlines and
tabs become spaces; punctuation is removed (or replaced by a space when it stands inside a word and
the text holds no digit-comma-digit), periods not followed by a digit are dropped; words are
lower-cased, number words up to ten become digits, the articles a/an/the are dropped, and
apostrophe-less contractions get their apostrophes ("dont" -> "don't") from the official table.

Accuracy of an answer against the 10 human answers of a question is min(#matching humans / 3, 1),
averaged over the 10 leave-one-out subsets of 9 humans. The human answers themselves are only
punctuation-normalised, and only when they disagree, as the official code does. A test checks the
scores against the official evaluation code on generated answers.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from polymodal.errors import InvalidInputError

# The official evaluation's contraction table: a key as annotators type it -> its canonical form.
_CONTRACTIONS = dict(pair.split("=", 1) for pair in """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've
couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've
hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's
howd=how'd howll=how'll hows=how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd
itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am mightnt=mightn't
mightnt've=mightn't've mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've
neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at
'ow'sat='ow's'at shant=shan't shed've=she'd've she'dve=she'd've she's=she's shouldve=should've
shouldnt=shouldn't shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd
somebodyd've=somebody'd've somebody'dve=somebody'd've somebodyll=somebody'll
somebodys=somebody's someoned=someone'd someoned've=someone'd've someone'dve=someone'd've
someonell=someone'll someones=someone's somethingd=something'd somethingd've=something'd've
something'dve=something'd've somethingll=something'll thats=that's thered=there'd
thered've=there'd've there'dve=there'd've therere=there're theres=there's theyd=they'd
theyd've=they'd've they'dve=they'd've theyll=they'll theyre=they're theyve=they've twas='twas
wasnt=wasn't wed've=we'd've we'dve=we'd've weve=we've werent=weren't whatll=what'll
whatre=what're whats=what's whatve=what've whens=when's whered=where'd wheres=where's
whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's
whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll
yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've
you'dve=you'd've youll=you'll youre=you're youve=you've
""".split())

_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
            "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = frozenset({"a", "an", "the"})
_PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@",
                "`", ",", "?", "!"]
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
# A period not followed by a digit ("3.5" keeps its period). The official pattern also carries a
# look-ahead that never matches before a period, so this is its whole effect.
_LONE_PERIOD = re.compile(r"\.(?!\d)")


def normalize_punctuation(text: str) -> str:
    """Remove punctuation the official way: delete it, or replace it by a space inside a word."""
    out = text
    has_digit_comma = _DIGIT_COMMA_DIGIT.search(text) is not None
    for mark in _PUNCTUATION:
        if mark + " " in text or " " + mark in text or has_digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _LONE_PERIOD.sub("", out)


def normalize_words(text: str) -> str:
    """Lower-case, number words to digits, drop articles, restore contractions' apostrophes."""
    words = [_NUMBERS.get(word, word) for word in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES)


def normalize_answer(answer: str) -> str:
    """A predicted answer as the official evaluation compares it."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return normalize_words(normalize_punctuation(answer))


def vqa_accuracy(prediction: str, human_answers: list[str]) -> float:
    """Accuracy in [0, 1] of one predicted answer against a question's human answers (usually 10)."""
    if not human_answers:
        raise InvalidInputError("a question needs at least one human answer to score against")
    predicted = normalize_answer(prediction)
    humans = list(human_answers)
    if len(set(humans)) > 1:
        humans = [normalize_punctuation(answer) for answer in humans]
    total = 0.0
    for left_out in range(len(humans)):
        matches = sum(1 for i, answer in enumerate(humans) if i != left_out and answer == predicted)
        total += min(1.0, matches / 3)
    return total / len(humans)


@dataclass
class VQAScores:
    """Overall accuracy (0-100), by answer type and by question type, and per question."""

    overall: float
    per_answer_type: dict[str, float] = field(default_factory=dict)
    per_question_type: dict[str, float] = field(default_factory=dict)
    per_question: dict = field(default_factory=dict)
    questions: int = 0

    def to_dict(self) -> dict:
        return {"questions": self.questions, "accuracy": self.overall,
                "per_answer_type": self.per_answer_type, "per_question_type": self.per_question_type,
                "per_question": self.per_question}


def evaluate_vqa(predictions: dict, annotations: dict) -> VQAScores:
    """Score ``predictions {question_id: answer}`` against ``annotations {question_id: {...}}``.

    An annotation holds ``answers`` (the human answers, strings or ``{"answer": ...}`` dicts) and
    optionally ``answer_type`` and ``question_type``. Every predicted question must be annotated.
    """
    if not predictions:
        raise InvalidInputError("no predictions to score: give at least one {question_id: answer}")
    missing = [key for key in predictions if key not in annotations]
    if missing:
        raise InvalidInputError(f"{len(missing)} predicted questions have no annotation "
                                f"(first: {missing[0]!r}); check that the question ids match")
    per_question, by_answer, by_question = {}, defaultdict(list), defaultdict(list)
    for key, answer in predictions.items():
        note = annotations[key]
        humans = [a["answer"] if isinstance(a, dict) else a for a in note.get("answers", [])]
        accuracy = vqa_accuracy(str(answer), humans)
        per_question[key] = 100 * accuracy
        by_answer[note.get("answer_type", "all")].append(accuracy)
        by_question[note.get("question_type", "all")].append(accuracy)

    def mean(values):
        return 100 * sum(values) / len(values)

    return VQAScores(overall=mean([v / 100 for v in per_question.values()]),
                     per_answer_type={k: mean(v) for k, v in by_answer.items()},
                     per_question_type={k: mean(v) for k, v in by_question.items()},
                     per_question=per_question, questions=len(per_question))
