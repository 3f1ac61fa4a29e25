"""The sanitised copy: does masking remove the injection, and how much else does it erase?

    python benchmarks/guard_sanitize.py               # 8 kit cases per pixel technique + 40 hand-written
    python benchmarks/guard_sanitize.py --quick       # 3 per technique + 10 hand-written
    python benchmarks/guard_sanitize.py --json F      # the figures as JSON too

Attack images are drawn by `guard.attacks.render`, which also returns the same image without the
injection, so the injected ink is known pixel by pixel: the kit's own instructions for every pixel
technique (coco-mini photos as backgrounds, cycled), and the English and Russian injections of the
hand-written validation slice (guard/dataset.py) drawn visibly and inside a document page between
two benign paragraphs. Each image is scanned once; for each flagged image two masks are written
from the same findings, and compared:

- baseline: every flagged finding's box filled (sanitize before 2026-12-06);
- shipped:  `scan.masked_boxes` (a flagged block only when no flagged line or sentence lies inside).

Per mask: the share of the injected ink pixels erased; the share of the image erased away from
the injection (more than 8 px outside its ink box); on document pages, the share of the benign
paragraphs' ink erased; and whether the masked copy, scanned again, is still flagged. Printed with
the ratio of the shipped mask's collateral to the baseline's, and the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import machine  # one description of the machine

PIXEL_TECHNIQUES = ("visible", "small_corner", "low_contrast", "rotated", "tiled", "document")
NEAR = 8  # pixels around the injection's ink box that still count as the injection's place
RULES = ("baseline", "shipped")


def cases(per_technique: int, handwritten: int) -> list[tuple[str, object, object, object]]:
    """(group, clean, attacked, AttackCase) for every image to sanitise."""
    from polymodal.guard.attacks import make_canary, render
    from polymodal.guard.dataset import handwritten_examples

    photos = sorted((DATA / "coco-mini" / "images").glob("*.jpg"))
    if not photos:
        raise SystemExit(f"no coco-mini photos under {DATA}: put ../shared beside the repository")
    rng = np.random.default_rng(11)
    out = []
    for technique in PIXEL_TECHNIQUES:
        for i in range(per_technique):
            clean, attacked, case = render(technique, make_canary(rng), seed=100 + i,
                                           base_image=photos[(7 * i + len(out)) % len(photos)])
            if attacked is not None:
                out.append((f"kit {technique}", clean, attacked, case))
    texts = [e.text for e in handwritten_examples(copies=0) if e.split == "validation" and e.label
             and e.noise == "clean" and e.granularity == "text" and e.language in ("en", "ru")][:handwritten]
    for i, text in enumerate(texts):
        for technique in ("visible", "document"):
            clean, attacked, case = render(technique, "", seed=200 + i, base_image=photos[(3 * i) % len(photos)],
                                           instruction=text)
            out.append((f"hand-written {technique}", clean, attacked, case))
    return out


def _luma(img) -> np.ndarray:
    return np.asarray(img.convert("L"), dtype=np.float32)


def measure(clean, attacked, case, masked) -> dict:
    """Injected ink erased, erased area away from the injection, benign text erased (documents)."""
    before = np.asarray(attacked.convert("RGB"))
    erased = np.any(np.asarray(masked.convert("RGB")) != before, axis=-1)
    ink = np.abs(_luma(attacked) - _luma(clean)) > 0.5
    h, w = erased.shape
    near = np.zeros_like(erased)
    if case.box:
        x0, y0, x1, y1 = case.box
        near[max(0, y0 - NEAR):y1 + NEAR, max(0, x0 - NEAR):x1 + NEAR] = True
    out = {"ink_erased": float((erased & ink).sum() / max(1, ink.sum())),
           "collateral": float((erased & ~near).sum() / (h * w))}
    if case.technique == "document":
        benign = (_luma(clean) < 200) & ~ink  # dark glyphs of the title and benign paragraphs
        out["benign_text_erased"] = float((erased & benign).sum() / max(1, benign.sum()))
    return out


def run(per_technique: int, handwritten: int) -> dict:
    from polymodal.guard.scan import mask, masked_boxes, scan_images

    todo = cases(per_technique, handwritten)
    start = time.perf_counter()
    reports = scan_images([attacked for _, _, attacked, _ in todo])
    flagged = [(t, r) for t, r in zip(todo, reports) if r.flagged]
    copies = {
        "baseline": [mask(t[2], [f.box for f in r.findings if f.flagged and f.box is not None]) for t, r in flagged],
        "shipped": [mask(t[2], masked_boxes(r.findings)) for t, r in flagged],
    }
    again = {rule: scan_images(images) for rule, images in copies.items()}
    groups: dict[str, dict] = {}
    for (group, *_), report in zip(todo, reports):
        g = groups.setdefault(group, {"images": 0, "flagged": 0, **{rule: [] for rule in RULES}})
        g["images"] += 1
        g["flagged"] += int(report.flagged)
    for k, ((group, clean, attacked, case), _) in enumerate(flagged):
        for rule in RULES:
            row = measure(clean, attacked, case, copies[rule][k])
            row["still_flagged"] = bool(again[rule][k].flagged)
            groups[group][rule].append(row)
    summary = {}
    for group, g in groups.items():
        s = {"images": g["images"], "flagged": g["flagged"]}
        for rule in RULES:
            rows = g[rule]
            s[rule] = {key: round(float(np.mean([r[key] for r in rows])), 4) if rows else None
                       for key in ("ink_erased", "collateral", "benign_text_erased") if not rows or key in rows[0]}
            s[rule]["still_flagged"] = sum(r["still_flagged"] for r in rows)
        summary[group] = s
    return {"machine": machine(), "groups": summary, "seconds": round(time.perf_counter() - start, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-technique", type=int, default=8, help="kit images per pixel technique")
    ap.add_argument("--handwritten", type=int, default=40, help="hand-written validation injections (each twice)")
    ap.add_argument("--quick", action="store_true", help="3 per technique and 10 hand-written texts")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.quick:
        args.per_technique, args.handwritten = 3, 10
    result = run(args.per_technique, args.handwritten)
    print(f"machine: {result['machine']}")
    print(f"{'group':24s} {'flagged':>9s} | {'ink erased':>17s} | {'erased elsewhere':>19s} | "
          f"{'benign text erased':>19s} | {'still flagged':>13s}")
    print(f"{'':24s} {'':>9s} | {'baseline  shipped':>17s} | {'baseline   shipped':>19s} | "
          f"{'baseline   shipped':>19s} | {'base  shipped':>13s}")
    totals = {rule: 0.0 for rule in RULES}
    for group, s in result["groups"].items():
        b, n = s["baseline"], s["shipped"]

        def pair(key, b=b, n=n):
            if b.get(key) is None:
                return f"{'-':>8s}   {'-':>7s}"
            return f"{100 * b[key]:7.2f}%  {100 * n[key]:7.2f}%"

        print(f"{group:24s} {s['flagged']:4d}/{s['images']:<4d} | {pair('ink_erased')} | {pair('collateral')}  | "
              f"{pair('benign_text_erased')}  | {b['still_flagged']:4d}  {n['still_flagged']:4d}")
        for rule in RULES:
            totals[rule] += (s[rule].get("collateral") or 0.0) * s["flagged"]
    if totals["baseline"]:
        print(f"area erased away from the injections, shipped / baseline: {totals['shipped'] / totals['baseline']:.2f}")
    print(f"({result['seconds']} s)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
