"""`polymodal eval caption | vqa | pope`: scores of generated captions and answers (polymodal.eval)."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from polymodal.errors import InvalidInputError

EXIT_OK = 0


def register(evaluate, add_json) -> None:
    """Add the generative-model metrics to the `eval` command's verbs."""
    p = evaluate.add_parser(
        "caption", help="BLEU-1..4, METEOR, ROUGE-L and CIDEr-D of predicted captions (COCO caption evaluation)",
        description="Scores predicted captions against reference captions as the COCO caption evaluation does "
                    "(PTB tokenisation; METEOR needs Java: apt-get install -y default-jre-headless). "
                    "Only the images that have a prediction are scored.")
    p.add_argument("predictions", metavar="PREDICTIONS.jsonl",
                   help='lines of {"image": ..., "caption": ...}, one per image')
    p.add_argument("--references", required=True, metavar="CAPTIONS.jsonl",
                   help='lines of {"image": ..., "caption": ...}, several per image (the shared data format)')
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts a Java process)")
    p.add_argument("--per-image", action="store_true", help="also print each image's ROUGE-L and CIDEr-D")
    add_json(p)
    p.set_defaults(func=cmd_eval_caption)

    p = evaluate.add_parser(
        "vqa", help="VQA accuracy of predicted answers (official normalisation, min(#humans/3, 1))")
    p.add_argument("predictions", metavar="PREDICTIONS.jsonl", help='lines of {"question_id": ..., "answer": ...}')
    p.add_argument("--annotations", required=True, metavar="FILE",
                   help='lines of {"question_id", "answers": [10 human answers], "answer_type", "question_type"}, '
                        'or an official VQA annotations .json')
    add_json(p)
    p.set_defaults(func=cmd_eval_vqa)

    p = evaluate.add_parser(
        "pope", help="object hallucination: build yes/no probes from COCO instances, or score answers to them")
    p.add_argument("predictions", nargs="?", metavar="ANSWERS.jsonl",
                   help='lines of {"question_id": ..., "answer": ...}; leave out with --build')
    p.add_argument("--instances", required=True, metavar="instances.json", help="COCO instance annotations")
    p.add_argument("--strategy", default="random", choices=["random", "popular", "adversarial"],
                   help="how absent objects are drawn (default random)")
    p.add_argument("--per-image", type=int, default=3, metavar="N", help="present objects asked per image (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--build", metavar="OUT.jsonl", default=None, help="write the probes here and stop")
    add_json(p)
    p.set_defaults(func=cmd_eval_pope)


def _read_jsonl(path: str, required: tuple[str, ...]) -> list[dict]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or any(key not in row for key in required):
            raise InvalidInputError(f"{path}:{number}: each line needs the keys {', '.join(required)}")
        rows.append(row)
    if not rows:
        raise InvalidInputError(f"{path} holds no lines")
    return rows


def _print(args, result: dict, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(lines))


def cmd_eval_caption(args) -> int:
    from polymodal.eval.captioning import evaluate_captions

    references: dict[str, list[str]] = defaultdict(list)
    for row in _read_jsonl(args.references, ("image", "caption")):
        references[row["image"]].append(row["caption"])
    predictions: dict[str, str] = {}
    for row in _read_jsonl(args.predictions, ("image", "caption")):
        if row["image"] in predictions:
            raise InvalidInputError(f"{args.predictions}: image {row['image']!r} is predicted twice")
        predictions[row["image"]] = row["caption"]
    scores = evaluate_captions(references, predictions, meteor=not args.no_meteor)
    result = scores.to_dict()
    if not args.per_image:
        result.pop("per_image")
    lines = [f"images: {scores.images}", *(f"{name}: {value:.4f}" for name, value in scores.corpus.items())]
    if args.per_image:
        lines += [f"{key}\tROUGE-L {value['ROUGE-L']:.4f}\tCIDEr-D {value['CIDEr-D']:.4f}"
                  for key, value in scores.per_image.items()]
    for note in scores.notes:
        print(note, file=sys.stderr)
    _print(args, result, lines)
    return EXIT_OK


def _read_vqa_annotations(path: str) -> dict:
    if path.endswith(".json"):
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return {note["question_id"]: note for note in data["annotations"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(f"{path}: not an official VQA annotations file ({exc})") from None
    return {row["question_id"]: row for row in _read_jsonl(path, ("question_id", "answers"))}


def cmd_eval_vqa(args) -> int:
    from polymodal.eval.vqa import evaluate_vqa

    annotations = _read_vqa_annotations(args.annotations)
    predictions = {row["question_id"]: row["answer"]
                   for row in _read_jsonl(args.predictions, ("question_id", "answer"))}
    scores = evaluate_vqa(predictions, annotations)
    result = scores.to_dict()
    result.pop("per_question")
    lines = [f"questions: {scores.questions}", f"accuracy: {scores.overall:.2f}",
             *(f"  {kind}: {value:.2f}" for kind, value in sorted(scores.per_answer_type.items()))]
    _print(args, result, lines)
    return EXIT_OK


def cmd_eval_pope(args) -> int:
    from polymodal.eval.pope import build_probes, score_probes

    probes = build_probes(args.instances, strategy=args.strategy, per_image=args.per_image, seed=args.seed)
    if args.build:
        Path(args.build).write_text("".join(json.dumps(p.to_dict()) + "\n" for p in probes), encoding="utf-8")
        _print(args, {"probes": len(probes), "out": args.build},
               [f"wrote {len(probes)} probes ({args.strategy}) to {args.build}"])
        return EXIT_OK
    if not args.predictions:
        raise InvalidInputError("give the answers file to score, or --build OUT.jsonl to write the probes")
    answers = {row["question_id"]: str(row["answer"])
               for row in _read_jsonl(args.predictions, ("question_id", "answer"))}
    result = {"strategy": args.strategy, **score_probes(probes, answers)}
    _print(args, result, [f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}"
                          for key, value in result.items()])
    return EXIT_OK
