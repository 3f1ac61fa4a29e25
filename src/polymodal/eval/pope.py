"""Object hallucination probed with yes/no questions, in the style of POPE (Li et al., EMNLP 2023).

For each image, the objects its COCO instance annotations name are asked about ("Is there a dog in
the image?", truth: yes) alongside as many absent objects (truth: no). Absent objects are drawn in
one of three ways, which make the probe progressively harder:
- ``random``: any category the image does not contain;
- ``popular``: the categories most frequent in the whole annotation file, first;
- ``adversarial``: the categories that most often appear together with the image's own objects.
A model's free-text answer counts as "no" when it contains the word no or not, as POPE reads
answers, and "yes" otherwise. Metrics: accuracy, precision, recall and F1 of "yes" as the positive
class, and the share of "yes" answers (a model that always says yes has 0.5 on a balanced set).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from polymodal.errors import InvalidInputError

STRATEGIES = ("random", "popular", "adversarial")
QUESTION = "Is there a {} in the image?"


@dataclass(frozen=True)
class Probe:
    """One yes/no question about one image."""

    question_id: str
    image: str          # file name from the annotations
    object: str         # category name asked about
    question: str
    label: str          # "yes" or "no"

    def to_dict(self) -> dict:
        return {"question_id": self.question_id, "image": self.image, "object": self.object,
                "question": self.question, "label": self.label}


def read_instances(path: str | Path) -> tuple[dict[str, set[str]], Counter, dict[str, Counter]]:
    """COCO ``instances.json`` -> (objects per image file, image count per category, co-occurrence)."""
    try:
        data = json.loads(Path(path).read_text())
        names = {category["id"]: category["name"] for category in data["categories"]}
        files = {image["id"]: image["file_name"] for image in data["images"]}
        objects: dict[str, set[str]] = defaultdict(set)
        for annotation in data["annotations"]:
            objects[files[annotation["image_id"]]].add(names[annotation["category_id"]])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"{path}: not a COCO instances file with images, annotations and "
                                f"categories ({exc})") from None
    frequency: Counter = Counter(name for present in objects.values() for name in present)
    together: dict[str, Counter] = defaultdict(Counter)
    for present in objects.values():
        for name in present:
            together[name].update(other for other in present if other != name)
    for name in names.values():
        frequency.setdefault(name, 0)
    return dict(objects), frequency, together


def build_probes(instances: str | Path, *, strategy: str = "random", per_image: int = 3,
                 seed: int = 0) -> list[Probe]:
    """Balanced yes/no probes: up to ``per_image`` present objects and as many absent ones per image."""
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"unknown POPE strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if per_image < 1:
        raise InvalidInputError(f"per_image must be at least 1, got {per_image}")
    objects, frequency, together = read_instances(instances)
    categories = sorted(frequency)
    rng = random.Random(seed)
    probes: list[Probe] = []
    for image in sorted(objects):
        present = sorted(objects[image])
        asked = rng.sample(present, min(per_image, len(present)))
        absent = [name for name in categories if name not in objects[image]]
        if strategy == "random":
            negatives = rng.sample(absent, min(len(asked), len(absent)))
        else:
            if strategy == "popular":
                score = {name: frequency[name] for name in absent}
            else:
                score = {name: sum(together[p][name] for p in present) for name in absent}
            negatives = sorted(absent, key=lambda name: (-score[name], name))[:len(asked)]
        for label, names in (("yes", asked), ("no", negatives)):
            for name in names:
                probes.append(Probe(f"{image}#{name}", image, name, QUESTION.format(name), label))
    return probes


_NEGATIVE = re.compile(r"\b(no|not)\b")


def answer_is_yes(answer: str) -> bool:
    """POPE's reading of a free-text answer: "no" when it says no or not, else "yes"."""
    return _NEGATIVE.search(answer.lower()) is None


def score_probes(probes: list[Probe], answers: dict[str, str]) -> dict:
    """Accuracy, precision, recall, F1 and yes-ratio of ``answers {question_id: text}``."""
    missing = [probe.question_id for probe in probes if probe.question_id not in answers]
    if missing:
        raise InvalidInputError(f"{len(missing)} probes have no answer (first: {missing[0]!r})")
    if not probes:
        raise InvalidInputError("no probes to score")
    tp = fp = tn = fn = 0
    for probe in probes:
        said_yes = answer_is_yes(answers[probe.question_id])
        if probe.label == "yes":
            tp, fn = tp + said_yes, fn + (not said_yes)
        else:
            fp, tn = fp + said_yes, tn + (not said_yes)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"questions": len(probes), "accuracy": (tp + tn) / len(probes), "precision": precision,
            "recall": recall, "f1": f1, "yes_ratio": (tp + fp) / len(probes)}
