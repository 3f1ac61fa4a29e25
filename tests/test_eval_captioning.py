"""Caption metrics equal the COCO caption evaluation (pycocoevalcap) on real captions."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections import defaultdict

import pytest

from conftest import shared_data
from polymodal.errors import InvalidInputError
from polymodal.eval.captioning import bleu, cider_d, evaluate_captions, rouge_l
from polymodal.eval.ptb_tokenize import PUNCTUATION, tokenize, tokenize_all


def _flickr(n_images: int) -> tuple[dict, dict]:
    """First caption of each image as the prediction, the other four as references."""
    captions = defaultdict(list)
    for line in shared_data("flickr8k/captions.jsonl").read_text().splitlines():
        row = json.loads(line)
        captions[row["image"]].append(row["caption"])
    keys = sorted(captions)[:n_images]
    return {k: captions[k][1:] for k in keys}, {k: captions[k][0] for k in keys}


def test_tokenize_splits_like_ptb():
    assert tokenize("A dog's toy (red), can't stop!") == ["a", "dog", "'s", "toy", "-lrb-", "red", "-rrb-", "ca", "n't", "stop"]
    assert tokenize("It is 3.5 m at 5 a.m. in the U.S.") == ["it", "is", "3.5", "m", "at", "5", "a.m.", "in", "the", "u.s."]
    assert tokenize("Mr. Potato Head, 5,000 people.") == ["mr.", "potato", "head", "5,000", "people"]


def test_tokenizer_equals_stanford_ptb_on_shared_captions(tmp_path):
    """Token for token, against the Java PTBTokenizer the COCO evaluation runs."""
    pytest.importorskip("pycocoevalcap")
    if shutil.which("java") is None:
        pytest.skip("java is missing: apt-get install -y default-jre-headless")
    import pycocoevalcap.tokenizer.ptbtokenizer as ptb
    from pathlib import Path

    jar = Path(ptb.__file__).parent / ptb.STANFORD_CORENLP_3_4_1_JAR
    captions = [json.loads(line)["caption"].replace("\n", " ")
                for name in ("flickr8k/captions.jsonl", "coco-mini/captions.jsonl")
                for line in shared_data(name).read_text().splitlines()]
    captions += ["I don't know, can't we? Cannot!", '"Quoted" and \'single\' -- rock \'n\' roll ...',
                 "We're gonna wanna gotta go.", "THE BIG DOG'S BALL.", "5,000 people at 10:30"]
    source = tmp_path / "captions.txt"
    source.write_text("\n".join(captions))
    out = subprocess.run(["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines",
                          "-lowerCase", str(source)], capture_output=True, text=True, check=True).stdout
    expected = [[t for t in line.rstrip().split(" ") if t not in PUNCTUATION] for line in out.split("\n")]
    mismatches = [(c, e) for c, e in zip(captions, expected) if tokenize(c) != e]
    assert len(expected) >= len(captions) > 30000
    assert mismatches == []


def test_bleu_rouge_cider_by_hand():
    refs = {"x": ["a dog runs fast"]}
    # 3 of 3 unigrams, 2 of 2 bigrams, 1 of 1 trigram match; the candidate has no 4-gram, and the
    # reference code's smoothing makes that precision (0 + 1e-15) / (0 + 1e-9), not 0/0.
    scores = bleu(refs, {"x": "a dog runs"})
    brevity = math.exp(1 - 4 / 3)
    assert scores[0] == pytest.approx(brevity, rel=1e-9)
    assert scores[2] == pytest.approx(brevity, rel=1e-9)
    assert scores[3] == pytest.approx(brevity * (1e-15 / 1e-9) ** 0.25, rel=1e-6)
    # LCS 3: precision 1, recall 3/4, F with beta 1.2.
    p, r, b2 = 1.0, 0.75, 1.2 ** 2
    assert rouge_l("a dog runs", ["a dog runs fast"]) == pytest.approx((1 + b2) * p * r / (r + b2 * p))
    assert rouge_l("cat", ["a dog"]) == 0.0
    # An image whose n-grams occur in every reference set has idf 0: CIDEr-D is 0.
    assert cider_d({"x": ["a dog"], "y": ["a dog"]}, {"x": "a dog", "y": "a dog"}) == {"x": 0.0, "y": 0.0}


def test_metrics_equal_pycocoevalcap_on_flickr8k():
    """BLEU, ROUGE-L and CIDEr-D within 1e-6 of the reference scorers on the same tokens."""
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    references, predictions = _flickr(300)
    ours = evaluate_captions(references, predictions, meteor=False)
    gts = tokenize_all(references)
    res = tokenize_all({k: [v] for k, v in predictions.items()})
    theirs_bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    theirs_rouge, _ = Rouge().compute_score(gts, res)
    theirs_cider, per_image = Cider().compute_score(gts, res)
    for n in range(4):
        assert ours.corpus[f"BLEU-{n + 1}"] == pytest.approx(theirs_bleu[n], abs=1e-6)
    assert ours.corpus["ROUGE-L"] == pytest.approx(theirs_rouge, abs=1e-6)
    assert ours.corpus["CIDEr-D"] == pytest.approx(theirs_cider, abs=1e-6)
    assert [ours.per_image[k]["CIDEr-D"] for k in gts] == pytest.approx(list(per_image), abs=1e-6)
    assert 0.3 < ours.corpus["CIDEr-D"] < 2.0  # a human caption scored against four others


@pytest.mark.slow
def test_meteor_equals_pycocoevalcap():
    """METEOR through the Java jar equals pycocoevalcap's wrapper (loads a 61 MB table: slow)."""
    pytest.importorskip("pycocoevalcap")
    if shutil.which("java") is None:
        pytest.skip("java is missing: apt-get install -y default-jre-headless")
    from pycocoevalcap.meteor.meteor import Meteor

    references, predictions = _flickr(40)
    ours = evaluate_captions(references, predictions)
    gts = tokenize_all(references)
    res = tokenize_all({k: [v] for k, v in predictions.items()})
    theirs, _ = Meteor().compute_score(gts, res)
    assert ours.corpus["METEOR"] == pytest.approx(theirs, abs=1e-6)


def test_missing_meteor_is_a_note(monkeypatch):
    monkeypatch.setenv("POLYMODAL_METEOR_JAR", "/nonexistent/meteor.jar")
    scores = evaluate_captions({"x": ["a dog runs"]}, {"x": "a dog runs"})
    assert "METEOR" not in scores.corpus
    assert any("METEOR skipped" in note and "POLYMODAL_METEOR_JAR" in note for note in scores.notes)


def test_bad_input_names_the_problem():
    with pytest.raises(InvalidInputError, match="no reference captions"):
        evaluate_captions({"x": ["a"]}, {"y": "a"}, meteor=False)
    with pytest.raises(InvalidInputError, match="no predictions"):
        evaluate_captions({"x": ["a"]}, {}, meteor=False)


def test_cli_eval_caption(tmp_path, capsys):
    from polymodal.cli.main import main

    references, predictions = _flickr(20)
    refs = tmp_path / "refs.jsonl"
    refs.write_text("".join(json.dumps({"image": k, "caption": c}) + "\n" for k, v in references.items() for c in v))
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"image": k, "caption": c}) + "\n" for k, c in predictions.items()))
    assert main(["eval", "caption", str(preds), "--references", str(refs), "--no-meteor", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = evaluate_captions(references, predictions, meteor=False).corpus
    assert out["images"] == 20 and out["scores"] == pytest.approx(expected)
    preds.write_text('{"image": "nope.jpg"}\n')
    assert main(["eval", "caption", str(preds), "--references", str(refs), "--no-meteor"]) == 2
    assert "needs the keys image, caption" in capsys.readouterr().err
