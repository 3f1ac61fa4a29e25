"""Caption metrics: polymodal's scorer against pycocoevalcap on the same captions, same run.

    python benchmarks/caption_metrics.py                 # all 6,891 flickr8k images, METEOR included
    python benchmarks/caption_metrics.py --images 1000 --no-meteor --json

The predictions are human captions: each image's first flickr8k caption, scored against its other
four. That gives the human level a captioning model is compared with, and a check on real text:
every metric must equal pycocoevalcap's (its Java PTB tokenizer, its scorers) within 1e-6.
Reported: the scores, the largest difference, and the wall time of each scorer with their ratio
(polymodal's tokeniser is pure Python; pycocoevalcap starts Java for its tokenizer and METEOR).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import machine  # noqa: E402  (one description of the machine for every benchmark)

from polymodal.eval.captioning import evaluate_captions  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k" / "captions.jsonl"


def load(n_images: int | None) -> tuple[dict, dict]:
    captions = defaultdict(list)
    for line in DATA.read_text().splitlines():
        row = json.loads(line)
        captions[row["image"]].append(row["caption"])
    keys = sorted(captions)[:n_images]
    return {k: captions[k][1:] for k in keys}, {k: captions[k][0] for k in keys}


def reference_scores(references: dict, predictions: dict, meteor: bool) -> dict:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in references.items()})
    res = tokenizer.tokenize({k: [{"caption": c}] for k, c in predictions.items()})
    scores = dict(zip([f"BLEU-{n}" for n in range(1, 5)], Bleu(4).compute_score(gts, res, verbose=0)[0]))
    if meteor:
        scores["METEOR"] = Meteor().compute_score(gts, res)[0]
    scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr-D"] = float(Cider().compute_score(gts, res)[0])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="the first N images (default all 6,891)")
    parser.add_argument("--no-meteor", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    references, predictions = load(args.images)
    began = time.perf_counter()
    ours = evaluate_captions(references, predictions, meteor=not args.no_meteor)
    ours_s = time.perf_counter() - began
    began = time.perf_counter()
    theirs = reference_scores(references, predictions, meteor=not args.no_meteor)
    theirs_s = time.perf_counter() - began
    report = {"machine": machine(), "images": len(predictions), "scores": ours.corpus, "notes": ours.notes,
              "max_abs_difference": max(abs(ours.corpus[k] - theirs[k]) for k in theirs if k in ours.corpus),
              "polymodal_s": round(ours_s, 2), "pycocoevalcap_s": round(theirs_s, 2),
              "speed_ratio": round(theirs_s / ours_s, 2)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['usable_cpus']} cores; {report['images']} flickr8k images, first caption vs other four")
    for name, value in ours.corpus.items():
        print(f"  {name:8s} {value:.4f}   (pycocoevalcap {theirs[name]:.4f})")
    print(f"largest difference {report['max_abs_difference']:.2e}; polymodal {ours_s:.1f} s, "
          f"pycocoevalcap {theirs_s:.1f} s: x{report['speed_ratio']}")


if __name__ == "__main__":
    main()
