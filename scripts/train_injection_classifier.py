"""Train the injection classifier and fit the judge; or evaluate the shipped ones.

    python scripts/train_injection_classifier.py              # train, fit, save, evaluate
    python scripts/train_injection_classifier.py --evaluate   # evaluate the shipped files only

1. Build the data set (`polymodal.guard.dataset.build_dataset`, deterministic) and its features
   (MiniLM sentence embeddings of `load_embedder("lite")` + hashed character n-grams), cached by
   the data set's digest in $POLYMODAL_CACHE or ~/.cache/polymodal.
2. Fit the logistic regression (`classifier.fit`) on the train split for each L2 strength of a
   small grid, hand-written examples weighted --handwritten-weight (4) against generated ones;
   keep the one with the best validation recall at <= --max-fpr false positives.
3. On the validation split: fit the judge's 2-feature logistic (logit of the model score, rule
   score), then the thresholds (judge, and classifier alone for the report) that keep benign
   false positives <= --max-fpr.
4. Save guard/data/injection_classifier.safetensors + .json (weights, judge parameters, data
   digest, validation figures); with --image-dump, also the scanner's hidden-text prior,
   calibrated on validation images within --prior-budget (`calibrate_prior`).
5. Report recall and false-positive rate per language and technique for rules alone, the
   classifier alone and the judge, on the test split (templates never seen in training) and on
   the hand-written out-of-distribution list, clean and with OCR-like noise, and on the sealed
   list (guard/data/injection_sealed.json, written blind to all of this) and the short-texts
   list (guard/data/injection_short.json, measured only); plus the false-
   positive rate on real captions (coco-mini and flickr8k-subset, English) when ../shared/data is
   there. Evaluation runs the real `judge_texts` path.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from polymodal.guard import classifier as C  # noqa: E402
from polymodal.guard.dataset import (LANGUAGES, TECHNIQUES, build_dataset, dataset_digest, latin_ocr_copies,  # noqa: E402
                                     handwritten_examples, ood_examples, sealed_examples, short_examples)
from polymodal.guard.judge import _logit, judge_texts, model_part  # noqa: E402
from polymodal.guard.tuned import TunedScorer, train_tuned, tuned_path  # noqa: E402
from polymodal.guard.rules import DEFAULT_THRESHOLD, LABELS, scan_text  # noqa: E402

# (l2 of the n-gram block, l2 of the MiniLM block). Measured on validation (recall at 2% FPR, data
# set v2): n-grams only 0.818 (v1), both blocks with one l2=1e-5 0.637 (v1), l2_dense 1e-3 0.800,
# 1e-2 0.797; l2 1e-4..3e-3 were worse (0.57..0.45, v1); data v4 with 1-6-grams: l2 3e-6 0.728,
# 1e-5 0.732, 3e-5 0.723. Pass --l2/--l2-dense lists to search again.
L2_GRID = ((1e-5, 1e-3),)
# Weight of a hand-written example (its copies and fragments too) against a generated one in the
# injection loss. The hand-written lists are a tenth of the data and the ones like what images
# carry; on data v5, weight 4 against 1 lifted the ROC AUC of the clean hand-written validation
# texts 0.939 -> 0.946 (recall at 5% FP 0.698 -> 0.732) with the generated validation texts' recall
# at 2% FP 0.818 -> 0.822, and on the fourth list, not yet written then, 0.830 -> 0.852; weight 10
# did less on all three.
HANDWRITTEN_WEIGHT = 4.0
SHARED = REPO.parent / "shared" / "data"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Features, cached

def cached_features(examples, *, use_cache: bool = True) -> C.Features:
    """Features of `examples`; the sentence embeddings are cached per text (blake2b key) in
    $POLYMODAL_CACHE or ~/.cache/polymodal, so editing the data set re-embeds only new texts."""
    texts = [e.text for e in examples]
    # v2: texts are repaired (guard/ocrfix.py) before they are embedded
    cache = Path(os.environ.get("POLYMODAL_CACHE") or Path.home() / ".cache" / "polymodal") / "guard-minilm-v2.npz"
    keys = np.array([int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little", signed=True)
                     for t in texts], np.int64)
    known: dict[int, np.ndarray] = {}
    if use_cache and cache.is_file():
        z = np.load(cache)
        known = dict(zip(z["keys"].tolist(), z["dense"]))
    missing = [i for i, k in enumerate(keys.tolist()) if k not in known]
    if missing:
        t = time.time()
        vectors = C.dense_features([texts[i] for i in missing])
        log(f"embedded {len(missing)} texts in {time.time() - t:.0f} s")
        known.update(zip(keys[missing].tolist(), vectors))
        if use_cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, keys=np.array(list(known), np.int64), dense=np.stack(list(known.values())))
    dense = np.stack([known[k] for k in keys.tolist()]).astype(np.float32)
    return C.Features(dense, *C.hashed_features(texts))


def targets(examples) -> tuple[np.ndarray, np.ndarray]:
    y = np.array([e.label for e in examples], np.float64)
    # NaN: the example names no technique (hand-written kinds such as "tool_hijack"); fit skips it
    t = np.array([[np.nan] * len(LABELS) if e.techniques is None else [float(label in e.techniques) for label in LABELS]
                  for e in examples])
    return y, t


# ---------------------------------------------------------------------------------------------
# Thresholds and the judge's combiner

def threshold_at_fpr(benign_scores: np.ndarray, max_fpr: float) -> float:
    """The smallest threshold (flag when score >= threshold) with at most max_fpr of the benign
    scores at or above it: just above the (k+1)-th highest benign score, k = floor(max_fpr * n)."""
    s = np.sort(np.asarray(benign_scores, np.float64))[::-1]
    k = int(np.floor(max_fpr * len(s) + 1e-9))
    if k >= len(s):
        return float(s[-1])
    return float(np.nextafter(s[k], np.inf))


def recall_at_fpr(scores: np.ndarray, y: np.ndarray, max_fpr: float) -> float:
    t = threshold_at_fpr(scores[y == 0], max_fpr)
    return float((scores[y == 1] >= t).mean())


def fit_combiner(model_p: np.ndarray, rule_s: np.ndarray, y: np.ndarray, *, tuned_logit: np.ndarray | None = None,
                 l2: float = 1e-3, steps: int = 50) -> dict:
    """Class-balanced logistic regression on (logit(model_p), rule_s[, tuned_logit]) by Newton's
    method (3 or 4 parameters; deterministic). Returns {a, b, c[, d]}."""
    columns = [_logit(model_p), rule_s] + ([] if tuned_logit is None else [np.asarray(tuned_logit, np.float64)])
    x = np.stack(columns + [np.ones_like(rule_s)], 1)                      # (N, 3 or 4)
    w_class = np.where(y > 0, len(y) / (2 * y.sum()), len(y) / (2 * (len(y) - y.sum())))
    theta = np.zeros(x.shape[1])
    reg = np.array([l2] * (x.shape[1] - 1) + [0.0]) * len(y)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ theta)))
        grad = x.T @ (w_class * (p - y)) + reg * theta
        hess = (x * (w_class * p * (1 - p))[:, None]).T @ x + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    params = {"a": float(theta[0]), "b": float(theta[1]), "c": float(theta[-1])}
    if tuned_logit is not None:
        params["d"] = float(theta[2])
    return params


# ---------------------------------------------------------------------------------------------
# Training

def train(examples, feats: C.Features, *, max_fpr: float, l2_grid=L2_GRID,
          handwritten_weight: float = HANDWRITTEN_WEIGHT, tuned=None) -> tuple[C.InjectionClassifier, dict]:
    """The classifier, with the judge's combiner fitted on validation (over the `tuned` scorer's
    logits too, when one is given; `model.set_tuned` records it)."""
    split = np.array([e.split for e in examples])
    tr, va = np.flatnonzero(split == "train"), np.flatnonzero(split == "validation")
    y, t = targets(examples)
    ftr, fva = feats.subset(tr), feats.subset(va)
    weights = np.where([examples[i].family.startswith("hw.") for i in tr], handwritten_weight, 1.0)
    best = None
    for l2, l2_dense in l2_grid:
        t0 = time.time()
        w = C.fit(ftr, y[tr], t[tr], l2=l2, l2_dense=l2_dense, max_iter=200, weights=weights)
        model = C.InjectionClassifier(*w, {"hash_dim": C.HASH_DIM, "ngrams": list(C.NGRAMS)})
        p = model.predict_features(fva).probability
        r = recall_at_fpr(p, y[va], max_fpr)
        log(f"l2={l2:g} l2_dense={l2_dense:g}: validation recall {r:.4f} at FPR <= {max_fpr} ({time.time() - t0:.0f} s)")
        if best is None or r > best[0] + 1e-9:
            best = (r, (l2, l2_dense), model, p)
    recall, l2, model, p_val = best
    rule_val = np.array([scan_text(examples[i].text).score for i in va])
    tuned_val = tuned.logits([examples[i].text for i in va]) if tuned is not None else None
    params = fit_combiner(p_val, rule_val, y[va], tuned_logit=tuned_val)
    z_val = model_part(p_val, tuned_val, params) + params["b"] * rule_val + params["c"]
    params["z_threshold"] = threshold_at_fpr(z_val[y[va] == 0], max_fpr)
    model_threshold = threshold_at_fpr(p_val[y[va] == 0], max_fpr)
    judged = z_val >= params["z_threshold"]
    info = {"l2": l2[0], "l2_dense": l2[1], "handwritten_weight": handwritten_weight, "max_fpr": max_fpr, "validation": {
        "model_recall": recall, "judge_recall": float(judged[y[va] == 1].mean()),
        **({} if tuned_val is None else {"tuned_recall": recall_at_fpr(tuned_val, y[va], max_fpr)}),
        "judge_fpr": float(judged[y[va] == 0].mean()), "n": int(len(va))}}
    model.config.update({"judge": params, "model_threshold": model_threshold, "training": info})
    return model, info


def fit_tuned(examples, *, handwritten_weight: float, epochs: int, seed: int) -> TunedScorer:
    """`guard.tuned.train_tuned` on the train split, weighted like the classifier."""
    tr = [e for e in examples if e.split == "train"]
    weights = np.where([e.family.startswith("hw.") for e in tr], handwritten_weight, 1.0)
    return train_tuned([e.text for e in tr], np.array([e.label for e in tr]), weights, epochs=epochs, seed=seed,
                       log=log)


# ---------------------------------------------------------------------------------------------
# The scanner's prior for hidden text, calibrated on validation images

def image_scores(model: C.InjectionClassifier, dump: Path):
    """(cases, per case a list of (judge score, hiddenness the prior sees) of every text the
    scanner judged) from a `benchmarks/guard_detection.py --split validation --dump FILE` run: the
    texts OCR found in each validation image (lines and blocks), re-judged by `model` as the
    scanner reads them (a line that breaks a sentence with its neighbours: the dump's "context")."""
    from polymodal.guard.scan import prior_hiddenness

    cases = [json.loads(line) for line in dump.read_text(encoding="utf-8").split("\n") if line.strip()]
    cases = [c for c in cases if "findings" in c]
    if cases and not all("context" in f for c in cases for f in c["findings"]):
        raise SystemExit(f"{dump} is a dump from before lines were judged in context (no \"context\" per finding): "
                         "write a new one with benchmarks/guard_detection.py --split validation --dump FILE")
    read = [[f["context"] or f["text"] for f in c["findings"]] for c in cases]
    unique = list(dict.fromkeys(t for texts in read for t in texts))
    score = dict(zip(unique, (j.score for j in judge_texts(unique, classifier=model)))) if unique else {}
    return cases, [[(score[t], prior_hiddenness(t, f["hidden"])) for t, f in zip(texts, c["findings"])]
                   for texts, c in zip(read, cases)]


# The share of its 2% false-alarm budget (issue 6) the prior may spend in any group of benign
# images with text. Hidden benign text (fine print, watermarks) is where it spends it; the
# judge's own false alarms come first.
PRIOR_ALARM_BUDGET = 0.01
BENIGN_GROUPS = ("ordinary", "hard", "hidden", "hand-written-benign", "photo")
# Photos without text may have no false alarm at all (issue 6), and the validation split holds
# only 64 hidden texts in photos (real scene text, small or faint), so the prior may not lift any
# of them to this score, not merely to 0.5. Added after a test run (2026-12-06): calibrated
# without it, the prior came to +1.25, where validation photos' hidden texts reached at most
# 0.32, and it flagged 2 of the 240 test photos (hidden scene text judged 0.26 and 0.23 alone,
# 0.55 and 0.51 with the prior).
PHOTO_CEILING = 0.3


# Quarter steps: with half steps one image could decide between +0.5 and +1.0 (2026-12-05).
PRIOR_GRID = tuple(k / 4 for k in range(13)) + (3.5, 4.0)


def calibrate_prior(cases, scored, *, grid=PRIOR_GRID, budget: float = PRIOR_ALARM_BUDGET,
                    photo_ceiling: float = PHOTO_CEILING) -> tuple[float, list]:
    """The hidden-text log-odds: the last value of the ascending `grid` before the first that
    adds more false alarms on the validation images without an injection (beyond those the judge
    makes without a prior) than `budget` of a benign group's images (ordinary, hard and hidden
    benign text, the hand-written slice's benign text), or lifts a hidden text in a photo to
    `photo_ceiling` or above; with the recall, false alarms and that highest photo score of each
    candidate."""
    from polymodal.guard.scan import HIDDEN, with_prior

    sizes = {g: sum(c["group"] == g for c in cases) for g in BENIGN_GROUPS}
    table = []
    for log_odds in grid:
        flags = [any(with_prior(s, h, log_odds) >= 0.5 for s, h in rows) for rows in scored]
        recall = np.mean([f for c, f in zip(cases, flags) if c["group"] == "attack"])
        alarms = {g: int(sum(f for c, f in zip(cases, flags) if c["group"] == g)) for g in BENIGN_GROUPS}
        photo_hidden = max((with_prior(s, h, log_odds) for c, rows in zip(cases, scored) if c["group"] == "photo"
                            for s, h in rows if h >= HIDDEN), default=0.0)
        table.append({"log_odds": log_odds, "attack_recall": float(recall), "false_alarms": alarms,
                      "photo_hidden_max": round(float(photo_hidden), 4)})
        log(f"hidden log-odds {log_odds}: validation image recall {recall:.3f}, false alarms {alarms}, "
            f"highest hidden text in a photo {photo_hidden:.3f}")
    base = table[0]["false_alarms"]
    allowed = {g: 0 if g == "photo" else int(budget * sizes[g]) for g in BENIGN_GROUPS}
    chosen = table[0]["log_odds"]
    for row in table:  # the grid ascends; stop at the first value over budget
        if any(row["false_alarms"][g] - base[g] > allowed[g] for g in base) or row["photo_hidden_max"] >= photo_ceiling:
            break
        chosen = row["log_odds"]
    return chosen, table


# ---------------------------------------------------------------------------------------------
# Evaluation

def _rate(flags: list[bool]) -> str:
    return f"{sum(flags) / len(flags):.3f} ({sum(flags)}/{len(flags)})" if flags else "-"


def evaluate(examples, model: C.InjectionClassifier, name: str) -> dict:
    """Recall (injections) and FPR (benign) of rules / classifier / judge, per language and technique."""
    t0 = time.time()
    judgements = judge_texts([e.text for e in examples], classifier=model)
    t_model = model.config["model_threshold"]
    per = defaultdict(lambda: {"rules": [], "model": [], "judge": []})
    tech_ok = []
    for e, j in zip(examples, judgements):
        flags = {"rules": j.rule_score >= DEFAULT_THRESHOLD, "model": j.model_score >= t_model, "judge": j.flagged}
        keys = [("all", "all"), (e.language, "all")]
        if e.label:
            keys += [("all", e.category), (e.language, e.category)]
            if j.flagged and e.category in LABELS:  # lists without technique labels name kinds instead
                tech_ok.append(e.category in j.techniques)
        for key in keys:
            for k, v in flags.items():
                per[(e.label,) + key][k].append(v)
    result = {"set": name, "n": len(examples), "seconds": round(time.time() - t0, 1), "rows": [],
              "technique_named": sum(tech_ok) / len(tech_ok) if tech_ok else None}
    print(f"\n== {name}: {len(examples)} texts "
          f"({sum(e.label for e in examples)} injections, {sum(1 - e.label for e in examples)} benign)")
    print(f"{'':4}{'language':9}{'technique':18}{'rules':>20}{'classifier':>20}{'judge':>20}")
    for label, what in ((1, "recall"), (0, "false positives")):
        print(f"  {what}")
        for lang in ("all",) + LANGUAGES:
            for tech in ("all",) + (TECHNIQUES if label else ()):
                flags = per.get((label, lang, tech))
                if not flags:
                    continue
                print(f"{'':4}{lang:9}{tech:18}{_rate(flags['rules']):>20}{_rate(flags['model']):>20}{_rate(flags['judge']):>20}")
                result["rows"].append({"metric": what, "language": lang, "technique": tech, "n": len(flags["judge"]),
                                       **{k: sum(v) / len(v) for k, v in flags.items()}})
    # by granularity (whole texts, OCR-line fragments, blocks of lines) and by benign kind
    by = defaultdict(list)
    for e, j in zip(examples, judgements):
        by[(e.label, "granularity", e.granularity)].append(j.flagged)
        if not e.label:
            by[(0, "kind", e.kind or "-")].append(j.flagged)
    print("  judge by granularity / benign kind")
    for (label, axis, value), flags in sorted(by.items()):
        what = "recall" if label else "false positives"
        print(f"{'':4}{what:18}{axis + '=' + value:24}{_rate(flags):>20}")
        result["rows"].append({"metric": what, axis: value, "n": len(flags), "judge": sum(flags) / len(flags)})
    if tech_ok:
        print(f"  flagged injections whose core technique is named: {result['technique_named']:.3f}")
    return result


def caption_examples():
    """Real English captions (benign) from ../shared/data, when present."""
    from polymodal.guard.dataset import Example

    out = []
    for folder in ("coco-mini", "flickr8k-subset"):
        path = SHARED / folder / "captions.jsonl"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    out.append(Example(json.loads(line)["caption"], 0, "en", (), "caption", folder, "captions"))
    return out


def attach_prior(model, image_dump: Path, budget: float = PRIOR_ALARM_BUDGET) -> None:
    """Calibrate the scanner's hidden-text prior on the validation images of `image_dump` and
    store it (with its table) in the model's config, under "scan"."""
    cases, scored = image_scores(model, image_dump)
    log_odds, table = calibrate_prior(cases, scored, budget=budget)
    model.config["scan"] = {"hidden_log_odds": log_odds, "calibration": table,
                            "image_set": f"validation images ({len(cases)}) of {image_dump.name}"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--evaluate", action="store_true", help="evaluate the shipped classifier; do not train")
    ap.add_argument("--calibrate", action="store_true", help="with --image-dump: calibrate the hidden-text prior of "
                    "the weights at --out and save it; do not train")
    ap.add_argument("--out", type=Path, default=C.WEIGHTS, help="where to write the weights (.safetensors; .json beside)")
    ap.add_argument("--max-fpr", type=float, default=0.02, help="false-positive budget on benign validation texts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-family", type=int, default=24)
    ap.add_argument("--benign-per-family", type=int, default=40)
    ap.add_argument("--l2", type=float, nargs="+", help="l2 values of the n-gram block to search")
    ap.add_argument("--l2-dense", type=float, nargs="+", help="l2 values of the MiniLM block to search")
    ap.add_argument("--no-cache", action="store_true", help="recompute the features")
    ap.add_argument("--latin-rate", type=float, default=0.5, help="share of Russian texts also given as a Latin-only "
                    "OCR reads them (dataset.latin_ocr_copies); 0 for none")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--no-handwritten", action="store_true", help="train on the generated data set only")
    ap.add_argument("--image-dump", type=Path, help="calibrate the scanner's hidden-text prior on validation images: "
                    "the --dump of `benchmarks/guard_detection.py --split validation`")
    ap.add_argument("--report", type=Path, help="also write the evaluation as JSON here")
    ap.add_argument("--handwritten-weight", type=float, default=HANDWRITTEN_WEIGHT,
                    help="weight of a hand-written example against a generated one in the loss (> 0)")
    ap.add_argument("--tuned-from", type=Path, help="use this fine-tuned MiniLM (a *_tuned.safetensors) instead of "
                    "training one (about 12 min on 2 cores)")
    ap.add_argument("--no-tuned", action="store_true", help="no fine-tuned MiniLM: the judge combines rules and "
                    "the classifier only")
    ap.add_argument("--tuned-epochs", type=int, default=2, help="epochs of fine-tuning MiniLM's top layers")
    ap.add_argument("--prior-budget", type=float, default=PRIOR_ALARM_BUDGET,
                    help="share of each benign group's validation images the hidden-text prior may add "
                    "false alarms on (0: none; photos never)")
    args = ap.parse_args(argv)
    if not args.handwritten_weight > 0:
        ap.error(f"--handwritten-weight must be above 0, got {args.handwritten_weight}")
    if not 0 <= args.prior_budget < 1:
        ap.error(f"--prior-budget is a share of images, from 0 up to 1; got {args.prior_budget}")

    examples = build_dataset(seed=args.seed, per_family=args.per_family, benign_per_family=args.benign_per_family)
    if not args.no_handwritten:
        examples += handwritten_examples(seed=args.seed)
    digest = dataset_digest(examples)
    latin = latin_ocr_copies(examples, rate=args.latin_rate) if args.latin_rate > 0 else []
    log(f"data set {digest}: {len(examples)} examples, + {len(latin)} Russian ones as a Latin-only OCR reads them")
    examples = examples + latin
    if args.evaluate or args.calibrate:
        model = C.InjectionClassifier.load(args.out)
        if args.calibrate:  # only the scanner's prior, on the shipped (or --out) weights
            if not args.image_dump:
                ap.error("--calibrate needs --image-dump")
            attach_prior(model, args.image_dump, args.prior_budget)
            model.save(args.out)
            log(f"hidden-text prior {model.config['scan']['hidden_log_odds']} log-odds saved in "
                f"{args.out.with_suffix('.json')}")
        if model.config.get("dataset") != digest:
            log(f"note: the weights were trained on data set {model.config.get('dataset')}, this is {digest}")
    else:
        feats = cached_features(examples, use_cache=not args.no_cache)
        grid = [(a, b) for a in args.l2 or [L2_GRID[0][0]] for b in args.l2_dense or [L2_GRID[0][1]]]
        if not args.l2 and not args.l2_dense:
            grid = list(L2_GRID)
        tuned = None
        if args.tuned_from:
            tuned = TunedScorer.load(args.tuned_from)
        elif not args.no_tuned:
            tuned = fit_tuned(examples, handwritten_weight=args.handwritten_weight, epochs=args.tuned_epochs,
                              seed=args.seed)
        model, info = train(examples, feats, max_fpr=args.max_fpr, l2_grid=grid, handwritten_weight=args.handwritten_weight,
                            tuned=tuned)
        if tuned is not None:
            tuned.save(tuned_path(args.out))
            model.set_tuned(tuned, tuned_path(args.out).name)
        model.config.update({"dataset": digest, "seed": args.seed, "latin_copies": len(latin)})
        if args.image_dump:
            attach_prior(model, args.image_dump, args.prior_budget)
        model.save(args.out)
        log(f"saved {args.out} ({args.out.stat().st_size // 1024} KB): {json.dumps(info)}")
    if args.skip_eval:
        return 0
    reports = [evaluate([e for e in examples if e.split == "test" and e.noise != "latin"], model,
                        "test split (unseen template families)"),
               evaluate([e for e in examples if e.split == "validation" and e.family.startswith("hw.")
                         and e.noise == "clean" and e.granularity == "text"], model,
                        "hand-written validation slice, clean (selection and thresholds saw it; not a test)")]
    if latin:
        reports.append(evaluate([e for e in examples if e.split == "test" and e.noise == "latin"], model,
                                "test split, Russian as a Latin-only OCR reads it"))
    for noise in ("clean", "light", "heavy"):
        reports.append(evaluate(ood_examples(noise=noise, seed=args.seed), model, f"hand-written OOD list, noise={noise}"))
    for noise in ("clean", "light"):
        reports.append(evaluate(sealed_examples(noise=noise, seed=args.seed), model,
                                f"sealed list (written blind to rules and generator), noise={noise}"))
    reports.append(evaluate(short_examples(), model, "short-texts list (written blind to the texts; never trained on)"))
    captions = caption_examples()
    if captions:
        reports.append(evaluate(captions, model, "real captions (coco-mini + flickr8k-subset), benign"))
    if args.report:
        args.report.write_text(json.dumps(reports, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
