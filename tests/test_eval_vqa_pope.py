"""VQA accuracy equals the official evaluation code; POPE probes and scores on COCO instances."""

from __future__ import annotations

import copy
import importlib.util
import json
import random
from pathlib import Path

import pytest

from conftest import shared_data
from polymodal.errors import InvalidInputError
from polymodal.eval.pope import answer_is_yes, build_probes, score_probes
from polymodal.eval.vqa import evaluate_vqa, normalize_answer, vqa_accuracy


def test_normalize_answer_official_rules():
    assert normalize_answer("The Two dogs.") == "2 dogs"
    assert normalize_answer("dont know") == "don't know"
    assert normalize_answer("3.5") == "3.5"
    assert normalize_answer("yes!") == "yes"
    assert normalize_answer("t-shirt") == "t shirt"          # a mark inside a word becomes a space
    assert normalize_answer("1,000 - 2,000") == "1000 2000"  # digit-comma-digit: marks are deleted


def test_accuracy_is_min_humans_over_3_averaged_over_subsets():
    assert vqa_accuracy("two", ["2"] * 10) == 1.0
    # Left out one of three "2"s: 2 matches -> 2/3; left out a "3": 3 matches -> 1.
    assert vqa_accuracy("2", ["2"] * 3 + ["3"] * 7) == pytest.approx((3 * 2 / 3 + 7) / 10)
    assert vqa_accuracy("cat", ["dog"] * 10) == 0.0
    with pytest.raises(InvalidInputError):
        vqa_accuracy("x", [])


def _official_vqa_eval():
    """The official VQA evaluation code as LAVIS ships it (pip install --no-deps salesforce-lavis)."""
    spec = importlib.util.find_spec("lavis")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the reference VQA evaluation is missing: pip install --no-deps salesforce-lavis")
    path = Path(next(iter(spec.submodule_search_locations))) / "common" / "vqa_tools" / "vqa_eval.py"
    module_spec = importlib.util.spec_from_file_location("official_vqa_eval", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)  # the file imports only re and sys
    return module.VQAEval


def test_accuracy_equals_official_code(capsys):
    VQAEval = _official_vqa_eval()
    rng = random.Random(0)
    vocabulary = ["yes", "no", "2", "two", "Two.", "the dog", "a dog", "dog", "red", "Red!", "dont", "don't",
                  "t-shirt", "t shirt", "1,000", "1000", "3.5", "none", "0", "blue and white", "ten", "10",
                  "it's", "its", "isnt", "left", "(left)", "cat;", "x/y", "x y"]
    questions, predictions = {}, {}
    for qid in range(600):
        humans = [rng.choice(vocabulary[:rng.randint(2, len(vocabulary))]) for _ in range(10)]
        questions[qid] = {"question_id": qid, "answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(humans)],
                          "question_type": rng.choice(["what", "how many"]), "answer_type": rng.choice(["yes/no", "number", "other"])}
        predictions[qid] = rng.choice(vocabulary) + rng.choice(["", " ", "\n", "."])

    class _Set:
        def __init__(self, qa):
            self.qa = qa

        def getQuesIds(self):
            return list(self.qa)

    official = VQAEval(_Set(copy.deepcopy(questions)),  # it rewrites the answers in place
                       _Set({q: {"answer": a} for q, a in predictions.items()}), n=10)
    official.evaluate()
    capsys.readouterr()  # its progress bar
    ours = evaluate_vqa(predictions, questions)
    assert ours.overall == pytest.approx(official.accuracy["overall"], abs=1e-6)
    assert ours.per_answer_type == pytest.approx(official.accuracy["perAnswerType"], abs=1e-6)
    assert {q: round(v, 10) for q, v in ours.per_question.items()} == pytest.approx(official.evalQA, abs=1e-6)
    assert 5 < ours.overall < 95  # the generated set mixes hits and misses


def test_evaluate_vqa_names_unknown_questions():
    with pytest.raises(InvalidInputError, match="no annotation"):
        evaluate_vqa({1: "yes"}, {2: {"answers": ["yes"]}})


def _tiny_instances(tmp_path) -> Path:
    categories = [{"id": i, "name": n} for i, n in enumerate(["person", "dog", "frisbee", "car", "pizza", "oven"], 1)]
    images = [{"id": i, "file_name": f"{i}.jpg"} for i in range(1, 5)]
    have = {1: [1, 2, 3], 2: [1, 2], 3: [1, 3], 4: [5, 6]}
    annotations = [{"image_id": img, "category_id": cat} for img, cats in have.items() for cat in cats]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"categories": categories, "images": images, "annotations": annotations}))
    return path


def test_probes_are_balanced_and_follow_the_strategy(tmp_path):
    path = _tiny_instances(tmp_path)
    for strategy in ("random", "popular", "adversarial"):
        probes = build_probes(path, strategy=strategy, per_image=2)
        for image in ("1.jpg", "2.jpg", "3.jpg", "4.jpg"):
            mine = [p for p in probes if p.image == image]
            assert sum(p.label == "yes" for p in mine) == sum(p.label == "no" for p in mine) == 2
    popular = {p.object for p in build_probes(path, strategy="popular", per_image=2) if p.image == "4.jpg" and p.label == "no"}
    assert popular == {"person", "dog"}        # the two most frequent categories, absent from image 4
    adversarial = [p.object for p in build_probes(path, strategy="adversarial", per_image=1)
                   if p.image == "2.jpg" and p.label == "no"]
    assert adversarial == ["frisbee"]          # co-occurs with person and dog elsewhere
    with pytest.raises(InvalidInputError, match="strategy"):
        build_probes(path, strategy="nope")


def test_scores_of_fixed_answerers_on_coco_mini():
    probes = build_probes(shared_data("coco-mini/instances.json"), per_image=3)
    assert len(probes) > 300
    always_yes = score_probes(probes, {p.question_id: "Yes, there is." for p in probes})
    assert always_yes["yes_ratio"] == 1.0 and always_yes["accuracy"] == pytest.approx(0.5) and always_yes["recall"] == 1.0
    oracle = score_probes(probes, {p.question_id: "yes" if p.label == "yes" else "No, there is not." for p in probes})
    assert oracle["accuracy"] == 1.0 and oracle["f1"] == 1.0
    assert not answer_is_yes("There is no dog.") and answer_is_yes("yes") and answer_is_yes("I see nothing")


def test_cli_pope_build_then_score(tmp_path, capsys):
    from polymodal.cli.main import main

    path = _tiny_instances(tmp_path)
    out = tmp_path / "probes.jsonl"
    assert main(["eval", "pope", "--instances", str(path), "--build", str(out)]) == 0
    probes = [json.loads(line) for line in out.read_text().splitlines()]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"question_id": p["question_id"], "answer": "yes"}) + "\n" for p in probes))
    capsys.readouterr()
    assert main(["eval", "pope", str(answers), "--instances", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["yes_ratio"] == 1.0 and result["questions"] == len(probes)
    answers.write_text(json.dumps({"question_id": probes[0]["question_id"], "answer": "no"}) + "\n")
    assert main(["eval", "pope", str(answers), "--instances", str(path)]) == 2
    assert "have no answer" in capsys.readouterr().err


def test_cli_eval_vqa(tmp_path, capsys):
    from polymodal.cli.main import main

    annotations = tmp_path / "ann.jsonl"
    annotations.write_text(json.dumps({"question_id": 1, "answers": ["2"] * 10, "answer_type": "number"}) + "\n"
                           + json.dumps({"question_id": 2, "answers": ["yes"] * 10, "answer_type": "yes/no"}) + "\n")
    predictions = tmp_path / "pred.jsonl"
    predictions.write_text('{"question_id": 1, "answer": "two"}\n{"question_id": 2, "answer": "no"}\n')
    assert main(["eval", "vqa", str(predictions), "--annotations", str(annotations), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == 50.0 and result["per_answer_type"] == {"number": 100.0, "yes/no": 0.0}
