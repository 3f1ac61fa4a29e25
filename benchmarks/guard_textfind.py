"""Finding injected text in images: recall per hiding technique, findings on text-free photos, cost.

    python benchmarks/guard_textfind.py                 # full run: 40 cases per technique (~15 min)
    python benchmarks/guard_textfind.py --quick         # 6 cases per technique, 20 + 40 photos
    python benchmarks/guard_textfind.py --json          # the same figures as one JSON document
    python benchmarks/guard_textfind.py --skip text_free timing --techniques small_corner tiled \
        --save-misses /tmp/misses                       # recall of two techniques; missed images kept

What is measured, in one run:

* Recall per technique of `guard.attacks`: `--cases` attack images per technique, written to disk
  by `generate_attacks` (the product path: PNG files, metadata in the file), each with its own
  random canary and seed; one in four on the generator's procedural photo, the others on
  coco-mini photos (cycled). A case counts as found when a finding's text contains the canary
  (letters and digits only, up to one OCR edit: "ZX-482l-QP" finds ZX-4821-QP) and, for pixel
  techniques, the finding's box overlaps the case's box. Pixel techniques go through
  `find_text`, "qr" through `qr_text`, "metadata" through `metadata_text`. Also reported: the
  median hiddenness and measured contrast of the finding that holds the canary, next to the
  contrast the generator drew (so the contrast measurement can be checked against the truth).
* Text-free photos: `find_text` on coco-mini (all 80, full size) and the first `--flickr`
  flickr8k-subset photos (sorted by name): the share of images with at least one finding and the
  findings' texts. These photos are not guaranteed free of text (COCO has signs, screens,
  shirts): the texts are printed so that real text can be told from junk.
* Cost on 1-megapixel images (1155 x 866): `--timing` images, half coco-mini photos, half attack
  images, enlarged to 1 MP. Per image, in rotating order: `find_text` (passes="auto"); one plain
  RapidOCR pass as a user would run it (`RapidOCR(intra_op_num_threads=T)(image)`: detection at
  the image's own size here, classification, recognition; its ONNX Runtime sessions spin while
  idle); and the same single pass through polymodal's adapter (`OcrEngine.read` at RapidOCR's
  detection size, the sessions find_text uses: no spinning). Reported: wall and CPU seconds per
  megapixel, p50 and p95, and the ratios of the medians. Also timed: `guard.scan.scan_image`
  end to end (find_text, QR codes, the judge's MiniLM and rules on every line: the product
  path). The machine's other load during the timing is sampled from /proc/stat and printed: on
  a shared machine wall times drift; the ratio and the CPU seconds hold better.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import cpu_busy_seconds, machine  # noqa: E402  (one description of the machine)

PIXEL_TECHNIQUES = ("visible", "small_corner", "low_contrast", "rotated", "tiled", "document")
ONE_MP = (1155, 866)


# ----------------------------------------------------------------------------------------------
# Matching


def overlaps(a, b) -> bool:
    return a is not None and b is not None and a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# ----------------------------------------------------------------------------------------------
# Parts


def recall(cases_per_technique: int, passes: str, techniques=None, save_misses: Path | None = None) -> dict:
    from polymodal.guard.attacks import TECHNIQUES, canary_read, generate_attacks, make_canary
    from polymodal.guard.metadata import metadata_text, qr_text
    from polymodal.guard.textfind import find_text

    photos = sorted((DATA / "coco-mini" / "images").glob("*.jpg"))
    rng = np.random.default_rng(2024)
    per = {t: {"found": 0, "cases": 0, "hidden": [], "contrast": [], "drawn_contrast": [],
               "seconds": [], "missed": []} for t in TECHNIQUES}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(cases_per_technique):
            base = None if i % 4 == 0 or not photos else [photos[i % len(photos)]]
            canary = make_canary(rng)
            cases = generate_attacks(Path(tmp) / str(i), canary=canary, seed=1000 + i, base_images=base)
            for case in cases:
                if case.path is None or (techniques and case.technique not in techniques):
                    continue
                row = per[case.technique]
                t0 = time.perf_counter()
                if case.technique == "metadata":
                    findings = metadata_text(case.path)
                elif case.technique == "qr":
                    findings = qr_text(case.path)
                else:
                    findings = find_text(case.path, passes=passes)
                row["seconds"].append(time.perf_counter() - t0)
                hits = [f for f in findings if canary_read(f.text, canary)
                        and (case.box is None or overlaps(f.box, case.box))]
                row["cases"] += 1
                if hits:
                    row["found"] += 1
                    best = max(hits, key=lambda f: f.confidence)
                    row["hidden"].append(best.hidden)
                    if best.contrast is not None and case.contrast is not None:
                        row["contrast"].append(best.contrast)
                        row["drawn_contrast"].append(case.contrast)
                else:
                    row["missed"].append({"seed": case.seed, "base": str(base[0].name) if base else "procedural",
                                          "texts": [f.text for f in findings][:6]})
                    if save_misses is not None:  # to look at: the attack image as scanned
                        save_misses.mkdir(parents=True, exist_ok=True)
                        shutil.copy(case.path, save_misses / f"{case.technique}_{case.seed}_{canary}.png")
    out = {}
    for t, row in per.items():
        if not row["cases"]:
            continue
        out[t] = {
            "recall": round(row["found"] / row["cases"], 3), "found": row["found"], "cases": row["cases"],
            "median_hidden": _median(row["hidden"]), "median_contrast": _median(row["contrast"]),
            "median_drawn_contrast": _median(row["drawn_contrast"]),
            "median_seconds": _median(row["seconds"]), "missed": row["missed"][:5],
        }
    return out


def text_free(n_coco: int, n_flickr: int, passes: str) -> dict:
    from polymodal.guard.textfind import find_text

    sets = {"coco-mini": sorted((DATA / "coco-mini" / "images").glob("*.jpg"))[:n_coco],
            "flickr8k-subset": sorted((DATA / "flickr8k-subset" / "images").glob("*.jpg"))[:n_flickr]}
    out = {}
    for name, paths in sets.items():
        with_findings, texts, count = 0, [], 0
        for path in paths:
            found = find_text(path, passes=passes)
            count += len(found)
            if found:
                with_findings += 1
                texts.append({"image": path.name, "texts": [f"{f.text} ({f.confidence:.2f}, hidden {f.hidden})"
                                                             for f in found]})
        out[name] = {"images": len(paths), "with_findings": with_findings,
                     "rate": round(with_findings / max(1, len(paths)), 3), "findings": count, "texts": texts}
    return out


def timing(n: int, passes: str, threads: int) -> dict:
    import cv2
    from PIL import Image
    from rapidocr_onnxruntime import RapidOCR

    from polymodal.backends.ocr import get_engine
    from polymodal.guard.attacks import make_canary, render
    from polymodal.guard.scan import scan_image
    from polymodal.guard.textfind import find_text

    photos = sorted((DATA / "coco-mini" / "images").glob("*.jpg"))
    rng = np.random.default_rng(7)
    images = []
    for i in range(n):
        photo = photos[i % len(photos)]
        if i % 2 == 0:
            img = Image.open(photo).convert("RGB")
            kind = "photo"
        else:
            technique = PIXEL_TECHNIQUES[(i // 2) % len(PIXEL_TECHNIQUES)]
            _, img, _ = render(technique, make_canary(rng), seed=i, base_image=photo)
            kind = technique
        images.append((kind, np.asarray(img.resize(ONE_MP, Image.BICUBIC))))
    mp = ONE_MP[0] * ONE_MP[1] / 1e6

    get_engine(threads)  # load before timing
    plain = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)
    find_text(images[0][1], passes=passes, threads=threads)
    plain(cv2.cvtColor(images[0][1], cv2.COLOR_RGB2BGR))
    scan_image(images[1][1])  # loads the judge (MiniLM, classifier) before timing

    engine = get_engine(threads)
    scale = max(1.0, 736 / min(ONE_MP))  # RapidOCR's detector size: short side at least 736
    runs = {
        "find_text": lambda rgb: find_text(rgb, passes=passes, threads=threads),
        "rapidocr": lambda rgb: plain(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)),
        "adapter_pass": lambda rgb: engine.read(rgb, scale=scale),
        # the product path end to end: find_text (auto), QR codes, the judge on every line
        "scan_image": lambda rgb: scan_image(rgb),
    }
    wall = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    kinds = []
    busy0, wall0 = cpu_busy_seconds(), time.perf_counter()
    cpu_self0 = time.process_time()
    names = list(runs)
    for i, (kind, rgb) in enumerate(images):
        for who in names[i % len(names):] + names[:i % len(names)]:  # rotate: drift hits all alike
            c0, t0 = time.process_time(), time.perf_counter()
            runs[who](rgb)
            wall[who].append((time.perf_counter() - t0) / mp)
            cpu[who].append((time.process_time() - c0) / mp)
        kinds.append(kind)
    busy, elapsed = cpu_busy_seconds(), time.perf_counter() - wall0
    others = None
    if busy is not None and busy0 is not None:
        others = round(max(0.0, (busy - busy0) - (time.process_time() - cpu_self0)) / elapsed, 2)
    photo_idx = [i for i, k in enumerate(kinds) if k == "photo"]
    out = {"images": n, "megapixels": round(mp, 3), "threads": threads, "other_load_cores": others}
    for who in runs:
        out[f"{who}_wall_s_per_mp"] = _pcts(wall[who])
        out[f"{who}_cpu_s_per_mp"] = _pcts(cpu[who])
    for base in ("rapidocr", "adapter_pass"):
        out[f"ratio_to_{base}"] = {
            "wall_p50": round(statistics.median(wall["find_text"]) / statistics.median(wall[base]), 2),
            "cpu_p50": round(statistics.median(cpu["find_text"]) / statistics.median(cpu[base]), 2)}
    out["text_free_photos"] = {"find_text_wall_p50": _median([wall["find_text"][i] for i in photo_idx]),
                               "find_text_cpu_p50": _median([cpu["find_text"][i] for i in photo_idx]),
                               "adapter_pass_wall_p50": _median([wall["adapter_pass"][i] for i in photo_idx])}
    return out


def _median(xs):
    return round(float(statistics.median(xs)), 3) if xs else None


def _pcts(xs):
    return {"p50": round(float(np.percentile(xs, 50)), 3), "p95": round(float(np.percentile(xs, 95)), 3)}


# ----------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=40, help="attack images per technique")
    ap.add_argument("--coco", type=int, default=80, help="text-free coco-mini photos")
    ap.add_argument("--flickr", type=int, default=200, help="text-free flickr8k-subset photos")
    ap.add_argument("--timing", type=int, default=40, help="1-MP images timed")
    ap.add_argument("--passes", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all CPUs)")
    ap.add_argument("--quick", action="store_true", help="6 cases per technique, 20 + 40 photos, 12 timed")
    ap.add_argument("--skip", nargs="*", default=[], choices=["recall", "text_free", "timing"])
    ap.add_argument("--techniques", nargs="*", default=None, choices=PIXEL_TECHNIQUES + ("qr", "metadata"),
                    help="recall of these techniques only")
    ap.add_argument("--save-misses", type=Path, default=None, metavar="DIR",
                    help="copy each attack image whose canary was not found into DIR")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.cases, args.coco, args.flickr, args.timing = 6, 20, 40, 12
    for sub in ("coco-mini/images", "flickr8k-subset/images"):
        if not (DATA / sub).is_dir():
            sys.exit(f"guard_textfind: {DATA / sub} is missing: the shared data sets live beside the repository")
    threads = args.threads or len(os.sched_getaffinity(0))

    report = {"machine": machine(), "passes": args.passes}
    if "recall" not in args.skip:
        report["recall"] = recall(args.cases, args.passes, args.techniques, args.save_misses)
    if "text_free" not in args.skip:
        report["text_free"] = text_free(args.coco, args.flickr, args.passes)
    if "timing" not in args.skip:
        report["timing"] = timing(args.timing, args.passes, threads)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print(report)
    return 0


def _print(r: dict) -> None:
    m = r["machine"]
    print(f"machine: {m['cpu']}, {m['usable_cpus']} usable CPUs, Python {m['python']}; passes={r['passes']}")
    if "recall" in r:
        print("\nrecall of the canary per technique (found / cases), median hiddenness of the finding,"
              " measured vs drawn contrast, median seconds per image:")
        for t, row in r["recall"].items():
            print(f"  {t:13s} {row['recall']:.3f} ({row['found']}/{row['cases']})  hidden {row['median_hidden']}"
                  f"  contrast {row['median_contrast']} vs {row['median_drawn_contrast']}"
                  f"  {row['median_seconds']} s")
            for miss in row["missed"][:3]:
                print(f"      missed seed {miss['seed']} on {miss['base']}: {miss['texts'][:3]}")
    if "text_free" in r:
        print("\nphotos meant to be without text: images with at least one finding")
        for name, row in r["text_free"].items():
            print(f"  {name:16s} {row['with_findings']}/{row['images']} = {row['rate']:.3f}  ({row['findings']} findings)")
            for item in row["texts"]:
                print(f"      {item['image']}: {'; '.join(item['texts'][:4])}")
    if "timing" in r:
        t = r["timing"]
        print(f"\ncost on {t['images']} images of {t['megapixels']} MP ({t['threads']} threads; other processes kept"
              f" {t['other_load_cores']} cores busy meanwhile):")
        for who in ("find_text", "scan_image", "rapidocr", "adapter_pass"):
            for unit in ("wall", "cpu"):
                key = f"{who}_{unit}_s_per_mp"
                print(f"  {key:28s} p50 {t[key]['p50']:.3f}  p95 {t[key]['p95']:.3f}")
        for base in ("rapidocr", "adapter_pass"):
            ratio = t[f"ratio_to_{base}"]
            print(f"  find_text / {base} (p50): wall {ratio['wall_p50']}x, CPU {ratio['cpu_p50']}x")
        tf = t["text_free_photos"]
        print(f"  text-free photos alone (p50, s/MP): find_text wall {tf['find_text_wall_p50']}, CPU"
              f" {tf['find_text_cpu_p50']}; adapter pass wall {tf['adapter_pass_wall_p50']}")


if __name__ == "__main__":
    sys.exit(main())
