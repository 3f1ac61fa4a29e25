"""Cross-modal consistency checker (polymodal.guard.consistency) on real annotations.

    python benchmarks/consistency_auc.py [--model lite] [--json] [--calibrate]

1. COCO presence (coco-mini, 80 photos x 80 categories, labels from instances.json): the claim
   "there is a <category>" goes through `extract_claims` and `ConsistencyChecker.score_claims`
   for every image and category; ROC AUC of present vs absent for the calibrated score (z
   against the contrasting vocabulary), for the raw cosine of the same prompt, and two ablations
   (calibration without the head word's concept expansion; expansion without calibration).
2. COCO counts: for each present category with 1-5 instances (no crowd boxes), "there are N
   <things>" with the true N against the same claim with another N: pairwise AUC and verdicts.
3. Flickr hallucinations (images 600-799, held out from every shipped model's training; one
   caption each): one object of the true caption swapped for an object of another concept
   (any kind, or the same kind: animal for animal, object for object). Reported: how often the
   swapped claim is flagged unsupported, how often the true one is, both right, and the AUC of
   true vs swapped claim scores. The same for a swapped colour ("a black dog" -> "a red dog").
4. --calibrate: the thresholds (`THRESHOLDS` in consistency.py) these data suggest: objects from
   COCO presence (Youden's J), colours from Flickr colour swaps on images 500-599 (the default
   model's validation split), counts from the COCO count claims; safety thresholds as the 99th
   percentile of each category's score on Flickr images 0-599.
5. Safety categories (polymodal.guard.safety): the false-alarm rate per category on held-out
   ordinary photos (coco-mini + Flickr 600-799; there are no unsafe photos in the data), and the
   scores of simple drawings (pistol, knife, syringe, swastika): weak evidence either way.

Note: the default model's learned head (`lite`) was fitted on coco-mini *captions* (not on the
instance labels) and Flickr images 0-499, so its coco-mini figures are not held out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from polymodal.errors import InvalidInputError
from polymodal.eval.retrieval import read_captions
from polymodal.guard.consistency import (COLOURS, THRESHOLDS, ConsistencyChecker, checker_for, extract_claims,
                                         roc_auc, shared_model, vocabulary)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO = DATA / "coco-mini"
FLICKR = DATA / "flickr8k-subset" / "captions.jsonl"


def youden(pos, neg) -> tuple[float, float, float]:
    """(threshold, TPR, FPR) maximising TPR - FPR, supported meaning score >= threshold."""
    pos, neg = np.asarray(pos), np.asarray(neg)
    best = (-1.0, 0.0, 0.0, 0.0)
    for t in np.unique(np.r_[pos, neg]):
        tpr, fpr = float((pos >= t).mean()), float((neg >= t).mean())
        if tpr - fpr > best[0]:
            best = (tpr - fpr, float(t), tpr, fpr)
    return best[1], best[2], best[3]


# ---------------------------------------------------------------------------------------------
# COCO


def coco_labels():
    data = json.loads((COCO / "instances.json").read_text())
    cats = [c["name"] for c in data["categories"]]
    col = {c["id"]: j for j, c in enumerate(data["categories"])}
    row = {im["id"]: i for i, im in enumerate(data["images"])}
    counts = np.zeros((len(row), len(cats)), int)
    crowd = np.zeros_like(counts, bool)
    for a in data["annotations"]:
        counts[row[a["image_id"]], col[a["category_id"]]] += 1
        crowd[row[a["image_id"]], col[a["category_id"]]] |= bool(a.get("iscrowd"))
    paths = [str(COCO / "images" / im["file_name"]) for im in data["images"]]
    return paths, cats, counts, crowd


def _one(text: str, kind: str):
    claims = [c for c in extract_claims(text) if c.kind == kind]
    if len(claims) != 1:
        raise InvalidInputError(f"{text!r} gave {len(claims)} {kind} claims, expected one")
    return claims[0]


def coco_presence(checker: ConsistencyChecker, images: np.ndarray, cats, counts) -> dict:
    labels = counts > 0
    z = np.zeros(labels.shape)
    cosine = np.zeros(labels.shape)
    for j, cat in enumerate(cats):
        template = _one(f"there is a {cat}", "object")
        for i, vector in enumerate(images):
            claim = checker.score_claims(vector, [dataclasses.replace(template)])[0]
            z[i, j], cosine[i, j] = claim.score, claim.cosine
    # Ablations straight from the cached vocabulary scores (same formula as score_claims).
    vocab = vocabulary()
    sims = images @ checker.vocab_vectors().T  # (images, terms)
    concepts = np.array([t.concept for t in vocab])
    own_z, expanded_raw = np.zeros(labels.shape), np.zeros(labels.shape)
    for j, cat in enumerate(cats):
        claim = _one(f"there is a {cat}", "object")
        own = [t.term for t in vocab].index(claim.subject)
        contrast = sims[:, concepts != claim.concept]
        spread = np.concatenate([contrast, sims[:, own:own + 1]], 1).std(1)  # as in consistency._z
        own_z[:, j] = (sims[:, own] - contrast.mean(1)) / spread
        expanded_raw[:, j] = sims[:, concepts == claim.concept].max(1)
    threshold, tpr, fpr = youden(z[labels], z[~labels])
    shipped = THRESHOLDS["object"]
    return {
        "pairs": int(labels.size), "present": int(labels.sum()),
        "auc_calibrated": roc_auc(z, labels), "auc_raw_cosine": roc_auc(cosine, labels),
        "auc_calibrated_no_expansion": roc_auc(own_z, labels), "auc_raw_expanded": roc_auc(expanded_raw, labels),
        "at_threshold": {"threshold": shipped, "present_supported": float((z[labels] >= shipped).mean()),
                         "absent_supported": float((z[~labels] >= shipped).mean())},
        "youden": {"threshold": threshold, "tpr": tpr, "fpr": fpr},
    }


def coco_counts(checker: ConsistencyChecker, images: np.ndarray, cats, counts, crowd, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    vocab = vocabulary()
    true_z, false_z = [], []
    for j, cat in enumerate(cats):
        term = vocab[[t.term for t in vocab].index(_one(f"there is a {cat}", "object").subject)]
        if term.form != "count":
            continue
        for i, vector in enumerate(images):
            n = counts[i, j]
            if not 1 <= n <= 5 or crowd[i, j]:
                continue
            wrong = int(rng.choice([m for m in range(1, 6) if m != n]))
            for value, out in ((n, true_z), (wrong, false_z)):
                text = f"there is one {term.term}" if value == 1 else f"there are {value} {term.plural}"
                out.append(checker.score_claims(vector, [_one(text, "count")])[0].score)
    threshold, tpr, fpr = youden(true_z, false_z)
    shipped = THRESHOLDS["count"]
    return {"pairs": len(true_z), "auc_true_vs_wrong": roc_auc(true_z + false_z, [1] * len(true_z) + [0] * len(false_z)),
            "at_threshold": {"threshold": shipped, "true_supported": float(np.mean(np.array(true_z) >= shipped)),
                             "wrong_supported": float(np.mean(np.array(false_z) >= shipped))},
            "youden": {"threshold": threshold, "tpr": tpr, "fpr": fpr}}


# ---------------------------------------------------------------------------------------------
# Flickr swaps


def swap_noun(text: str, claim, new) -> str:
    """`text` with the noun of `claim` replaced by vocabulary term `new` (number and article kept)."""
    old = vocabulary()[[t.term for t in vocabulary()].index(claim.subject)]
    lo, hi = claim.span
    phrase = text[lo:hi]
    low = phrase.lower()
    plural = low.endswith(old.plural) and old.plural != old.term
    noun = old.plural if plural else old.term
    if not low.endswith(noun):
        return text
    head = phrase[: len(phrase) - len(noun)]
    replacement = new.plural if plural else new.term
    words = head.split(" ")
    if len(words) == 2 and words[0].lower() in ("a", "an"):  # "a " + noun: fix the article
        article = "an" if replacement[0] in "aeiou" else "a"
        head = (article.capitalize() if words[0][0].isupper() else article) + " "
    return text[:lo] + head + replacement + text[hi:]


def swap_word(text: str, span, replacement: str) -> str:
    return text[:span[0]] + replacement + text[span[1]:]


def flickr_swaps(checker, images: np.ndarray, captions: list[str], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    vocab = vocabulary()
    heads = {}
    for t in vocab:
        heads.setdefault(t.concept, t)
    candidates = [t for t in heads.values() if t.kind != "scene" and t.form == "count"]
    out = {}
    for variant in ("any", "same_kind"):
        true_z, swap_z, skipped = [], [], 0
        for vector, caption in zip(images, captions):
            claims = [c for c in extract_claims(caption) if c.kind == "object"]
            if not claims:
                skipped += 1
                continue
            claim = claims[int(rng.integers(len(claims)))]
            kind = vocab[[t.term for t in vocab].index(claim.subject)].kind
            mentioned = {c.concept for c in claims}
            pool = [t for t in candidates if t.concept not in mentioned and (variant == "any" or t.kind == kind)]
            if not pool:
                skipped += 1
                continue
            new = pool[int(rng.integers(len(pool)))]
            swapped = [c for c in extract_claims(swap_noun(caption, claim, new)) if c.kind == "object" and c.subject == new.term]
            if not swapped:
                skipped += 1
                continue
            report = checker.score_claims(vector, [claim, swapped[0]])
            true_z.append(report[0].score)
            swap_z.append(report[1].score)
        out[variant] = _swap_metrics(true_z, swap_z, THRESHOLDS["object"], skipped)
    # colours: "a black dog" -> "a <other colour> dog"
    true_z, swap_z = [], []
    for vector, caption in zip(images, captions):
        for claim in extract_claims(caption):
            if claim.kind != "colour" or " and " in claim.value:
                continue
            other = str(rng.choice([c for c in COLOURS if c != claim.value]))
            swapped = [c for c in extract_claims(swap_word(caption, claim.span, other))
                       if c.kind == "colour" and c.subject == claim.subject and c.value == other]
            if swapped:
                report = checker.score_claims(vector, [claim, swapped[0]])
                true_z.append(report[0].score)
                swap_z.append(report[1].score)
    out["colour"] = _swap_metrics(true_z, swap_z, THRESHOLDS["colour"], 0)
    return out


def _swap_metrics(true_z, swap_z, threshold, skipped) -> dict:
    t, s = np.array(true_z), np.array(swap_z)
    if len(t) == 0:
        return {"cases": 0, "skipped": skipped}
    return {"cases": len(t), "skipped": skipped,
            "swapped_flagged": float((s < threshold).mean()), "true_flagged": float((t < threshold).mean()),
            "both_right": float(((s < threshold) & (t >= threshold)).mean()),
            "auc_true_vs_swapped": roc_auc(np.r_[t, s], np.r_[np.ones(len(t)), np.zeros(len(s))]),
            "true_z_mean": float(t.mean()), "swapped_z_mean": float(s.mean()),
            "youden": dict(zip(("threshold", "tpr", "fpr"), youden(t, s)))}


# ---------------------------------------------------------------------------------------------
# Safety categories


def drawings() -> dict:
    """Flat drawings of a pistol, a knife, a syringe and a swastika (weak positives: no photo)."""
    from PIL import Image, ImageDraw

    def canvas():
        image = Image.new("RGB", (320, 240), (235, 235, 230))
        return image, ImageDraw.Draw(image)

    out = {}
    image, d = canvas()
    d.rectangle([60, 80, 250, 110], fill=(30, 30, 35))  # slide and barrel
    d.polygon([(90, 110), (140, 110), (125, 190), (85, 190)], fill=(30, 30, 35))  # grip
    d.arc([120, 100, 165, 145], 0, 180, fill=(30, 30, 35), width=5)  # trigger guard
    out["pistol"] = image
    image, d = canvas()
    d.polygon([(40, 120), (200, 105), (200, 135), (60, 130)], fill=(190, 195, 200), outline=(90, 90, 90))
    d.rectangle([200, 108, 290, 132], fill=(60, 40, 25))
    out["knife"] = image
    image, d = canvas()
    d.rectangle([80, 105, 220, 135], fill=(225, 240, 250), outline=(60, 60, 80), width=3)  # barrel
    d.line([(30, 120), (80, 120)], fill=(120, 120, 130), width=3)  # needle
    d.rectangle([235, 117, 285, 123], fill=(90, 90, 100))  # plunger
    out["syringe"] = image
    image, d = canvas()
    cx, cy, s, w = 160, 120, 70, 18
    for box in ([cx - w // 2, cy - s, cx + w // 2, cy + s], [cx - s, cy - w // 2, cx + s, cy + w // 2],
                [cx - w // 2, cy - s, cx + s, cy - s + w], [cx + s - w, cy - w // 2, cx + s, cy + s],
                [cx - s, cy + s - w, cx + w // 2, cy + s], [cx - s, cy - s, cx - s + w, cy + w // 2]):
        d.rectangle(box, fill=(10, 10, 10))
    out["swastika"] = image
    return out


def safety(model, held_out: np.ndarray, calibration: np.ndarray | None) -> dict:
    from polymodal.guard.safety import THRESHOLDS as SAFETY_THRESHOLDS
    from polymodal.guard.safety import SafetyChecker

    checker = SafetyChecker(model)
    z = checker.scores(held_out)
    flags = np.stack([z[c] >= SAFETY_THRESHOLDS[c] for c in z], 1)  # (images, categories)
    drawn = drawings()
    drawn_reports = checker.check_vectors(model.encode_images(list(drawn.values())))
    out = {"held_out_images": len(held_out),
           "false_alarm_rate": {c: float(flags[:, k].mean()) for k, c in enumerate(z)},
           "images_with_any_flag": float(flags.any(1).mean()),
           "drawings": {name: {c.category: c.score for c in r.categories} | {"flagged": r.flagged}
                        for name, r in zip(drawn, drawn_reports)}}
    if calibration is not None:
        zc = checker.scores(calibration)
        out["suggested_thresholds"] = {c: round(float(np.quantile(zc[c], 0.99)), 2) for c in zc}
    return out


# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lite")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--calibrate", action="store_true", help="also print the thresholds the data suggest")
    args = parser.parse_args(argv)
    if not (COCO / "instances.json").is_file() or not FLICKR.is_file():
        sys.exit(f"the shared data is missing: expected {COCO} and {FLICKR.parent}")
    start = time.perf_counter()
    model = shared_model(args.model)
    checker = checker_for(model)
    paths, cats, counts, crowd = coco_labels()
    coco_images = model.encode_images(paths)
    held = read_captions(FLICKR, slice(600, 800))
    held_images = model.encode_images(held.images)
    result = {"model": model.name, "thresholds": dict(THRESHOLDS),
              "coco_presence": coco_presence(checker, coco_images, cats, counts),
              "coco_counts": coco_counts(checker, coco_images, cats, counts, crowd),
              "flickr_600_799": flickr_swaps(checker, held_images, held.captions)}
    calibration = None
    if args.calibrate:
        calibration = model.encode_images(read_captions(FLICKR, slice(0, 600)).images)
    result["safety"] = safety(model, np.concatenate([coco_images, held_images]), calibration)
    if args.calibrate:
        val = read_captions(FLICKR, slice(500, 600))
        val_swaps = flickr_swaps(checker, model.encode_images(val.images), val.captions)
        result["calibration"] = {
            "object": result["coco_presence"]["youden"], "count": result["coco_counts"]["youden"],
            "colour (flickr 500-599)": val_swaps["colour"].get("youden"),
            "object swaps (flickr 500-599)": val_swaps["any"].get("youden")}
    result["seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    p, c, f = result["coco_presence"], result["coco_counts"], result["flickr_600_799"]
    print(f"model {model.name}; thresholds {result['thresholds']}")
    print(f"COCO presence, {p['pairs']} image x category pairs ({p['present']} present), ROC AUC:")
    print(f"  calibrated (z vs contrasts, concept expansion)    {p['auc_calibrated']:.4f}")
    print(f"  raw cosine of the same prompt                     {p['auc_raw_cosine']:.4f}")
    print(f"  ablation: z without expansion {p['auc_calibrated_no_expansion']:.4f}; "
          f"expansion without z {p['auc_raw_expanded']:.4f}")
    a = p["at_threshold"]
    print(f"  at z >= {a['threshold']}: present supported {a['present_supported']:.3f}, absent supported {a['absent_supported']:.3f}")
    a = c["at_threshold"]
    print(f"COCO counts, {c['pairs']} true/wrong pairs: AUC {c['auc_true_vs_wrong']:.4f}; "
          f"at z >= {a['threshold']}: true supported {a['true_supported']:.3f}, wrong supported {a['wrong_supported']:.3f}")
    for name, m in f.items():
        if not m.get("cases"):
            print(f"Flickr 600-799 {name} swaps: no cases")
            continue
        print(f"Flickr 600-799 {name} swaps ({m['cases']} captions, {m['skipped']} skipped): swapped flagged "
              f"{m['swapped_flagged']:.3f}, true flagged {m['true_flagged']:.3f}, both right {m['both_right']:.3f}, "
              f"AUC {m['auc_true_vs_swapped']:.4f}")
    sf = result["safety"]
    print(f"safety, {sf['held_out_images']} held-out photos (coco-mini + Flickr 600-799): false alarms "
          + ", ".join(f"{c} {v:.3f}" for c, v in sf["false_alarm_rate"].items())
          + f"; any flag {sf['images_with_any_flag']:.3f}")
    for name, scores in sf["drawings"].items():
        print(f"  drawing of a {name}: flagged {scores['flagged']}, "
              + ", ".join(f"{c} {v:.2f}" for c, v in scores.items() if c != "flagged"))
    if args.calibrate:
        print(f"safety thresholds suggested (99th percentile on Flickr 0-599): {sf['suggested_thresholds']}")
        print("calibration (Youden's J; threshold, TPR, FPR):")
        for name, v in result["calibration"].items():
            print(f"  {name}: {v}")
    print(f"{result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
