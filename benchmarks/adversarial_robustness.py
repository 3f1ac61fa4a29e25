"""Adversarial robustness of a dual encoder (default `lite`), and what squeezing does about it.

    python benchmarks/adversarial_robustness.py [--per-class 10] [--flickr 600:800] [--steps 10]
                                                [--calibration 600:700] [--model lite] [--json]
    python benchmarks/adversarial_robustness.py --select-squeezers 600:700

White-box attacks on the model's preprocessed crop (polymodal.guard.adversarial), counted only on
images the model gets right when clean:
1. zero-shot classification on cifar10-dev (`--per-class` images of each class, measured only:
   nothing is fitted on CIFAR), labels = folder names with the imagenet80 templates, as
   `polymodal eval zeroshot`. FGSM and PGD untargeted, and PGD targeted (target: the next class;
   at `--targeted` budgets), at
   L-inf 0, 1, 2, 4, 8 /255 and L2 0.25, 0.5, 1.0 (pixel units in [0, 1] on the 224x224 crop;
   the L-inf 1/255 ball reaches L2 1.52 there).
2. image-to-text retrieval on the held-out Flickr images (`--flickr`, default 600:800): the
   image is pushed away from its caption among all held-out captions; R@1 on attacked images.
3. defences: each input transformation applied to the PGD images at `--defence-eps` (the
   attacker does not know it): clean accuracy after it, accuracy on the adversarial images, and
   the share of broken images it puts right.
4. feature-squeezing detection (Xu et al. 2018) with the default squeezers (median:3, resize:0.5;
   chosen with `--select-squeezers 600:700`). Thresholds for a 5% false-alarm rate are chosen on
   clean held-out Flickr photos (`--calibration`, default 600:700), which lite never trained on:
   for CIFAR on their 32x32 thumbnails with the CIFAR labels; for retrieval on the photos with
   the default label set (80 COCO categories) -- the threshold that `guard/squeeze.py` records in
   CALIBRATED -- and, second table, with the 200 captions as the label set. False alarms are
   counted on the measured clean images (for Flickr: those outside the calibration range),
   detection on the successful PGD images of each budget.

Success rates are measured on the adversarial images rounded to 8 bits (what a PNG file holds);
the "float" column gives them before rounding (the papers' measure). PGD: `--steps` steps of 2.5 * eps / steps, random
start, and an image counts as broken at the first iterate that breaks it (AutoAttack's rule).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import machine  # noqa: E402  (one description of the machine for every benchmark)

DATA = REPO.parent / "shared" / "data"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def budgets(args):
    from polymodal.guard.adversarial import Budget

    return ([Budget("linf", e / 255) for e in args.linf] + [Budget("l2", e) for e in args.l2])


def cifar(per_class: int):
    paths, true = [], []
    for i, name in enumerate(CIFAR_CLASSES):
        files = sorted((DATA / "cifar10-dev" / name).glob("*.jpg"))[:per_class]
        paths += [str(p) for p in files]
        true += [i] * len(files)
    return paths, np.asarray(true)


def thumbnail(path: str, side: int = 32) -> Image.Image:
    """A CIFAR-like thumbnail of a photo: centre square, shrunk to side x side."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    s = min(im.size)
    left, top = (im.width - s) // 2, (im.height - s) // 2
    return im.crop((left, top, left + s, top + s)).resize((side, side), Image.Resampling.LANCZOS)


def run_attacks(encoder, batch, texts, true, args, log, *, targets=None, section=""):
    """Every attack at every budget: rows, and the PGD runs by budget label for the defences."""
    from polymodal.guard.adversarial import attack_batch, best_texts

    rows, pgd_runs = [], {}
    clean_top = best_texts(encoder, batch, texts)  # reused by every budget
    goals = [("untargeted", None)] + ([("targeted", targets)] if targets is not None else [])
    for goal, target in goals:
        for attack in ("fgsm", "pgd"):
            for b in budgets(args):
                wanted = attack == "pgd" and b.norm == "linf" and round(b.eps * 255, 6) in args.targeted
                if goal == "targeted" and not wanted:
                    continue  # targeted: PGD at the --targeted budgets only, for time (one step rarely hits a target)
                start, cpu = time.perf_counter(), time.process_time()
                run = attack_batch(encoder, batch, texts, true, b, attack=attack, target=target, steps=args.steps,
                                   seed=args.seed, clean_top=clean_top)
                row = {**run.row.to_dict(), "seconds": round(time.perf_counter() - start, 1),
                       "cpu_seconds": round(time.process_time() - cpu, 1)}
                rows.append(row)
                log(f"  {section} {goal} {attack} {b.label()}: {row['success_rate']:.2f} ({row['seconds']} s)")
                if attack == "pgd" and goal == "untargeted":
                    pgd_runs[b.label()] = run
    return rows, pgd_runs


def detection_table(detector, clean, pgd_runs, measured: np.ndarray | None = None):
    """Detection of each budget's successful PGD images, false alarms on the clean ones; only
    images whose index is `measured` (default: all) count, so that a calibration part of the same
    batch stays out."""
    from polymodal.guard.squeeze import evaluate_detection

    measured = np.ones(len(clean), bool) if measured is None else measured
    clean = clean.select(np.flatnonzero(measured))
    clean_scores = detector.scores(clean)
    out = []
    for label, run in pgd_runs.items():
        broken = run.adversarial.select(np.flatnonzero(run.success & measured[run.attacked]))
        if run.row.eps == 0 or not len(broken):
            continue
        out.append({"budget": label, **evaluate_detection(detector, clean, broken, clean_scores=clean_scores)})
    return out


CANDIDATE_SQUEEZERS = ("bits:5", "bits:6", "bits:7", "median:2", "median:3", "nlmeans:11-3-4", "jpeg:75", "jpeg:90",
                       "resize:0.5")


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    diff = positive[:, None] - negative[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def select_squeezers(encoder, photos_span: tuple[int, int], log) -> dict:
    """Which squeezers separate PGD images from clean ones, measured on the Flickr photos of
    `photos_span` and on their 32x32 thumbnails (lite's small-image path): the default label set,
    untargeted PGD L-inf 2/255 away from the model's own top label (no ground truth needed).
    Reports each squeezer's ROC AUC and detection at 5% false alarms (threshold on the same clean
    images), and the combinations of up to three ranked by their mean AUC over both kinds."""
    import itertools

    from polymodal.guard.adversarial import Budget, attack_batch, best_texts
    from polymodal.guard.squeeze import SqueezeDetector

    photos = flickr_order()[photos_span[0]:photos_span[1]]
    detector = SqueezeDetector(encoder, squeezers=CANDIDATE_SQUEEZERS, threshold=1.0)
    kinds = {}
    views = (("photos", encoder.prepare(photos)), ("thumbnails", encoder.prepare([thumbnail(p) for p in photos])))
    for kind, batch in views:
        start = time.perf_counter()
        own = best_texts(encoder, batch, detector.texts).squeeze(1).numpy()
        run = attack_batch(encoder, batch, detector.texts, own, Budget("linf", 2 / 255), steps=10)
        broken = run.adversarial.select(np.flatnonzero(run.success))
        kinds[kind] = (detector.distances(batch), detector.distances(broken))
        log(f"  {kind}: PGD success {run.row.success_rate:.2f} ({time.perf_counter() - start:.0f} s)")

    def measure(columns) -> dict:
        out = {}
        for kind, (clean, adv) in kinds.items():
            c, a = clean[:, columns].max(axis=1), adv[:, columns].max(axis=1)
            threshold = np.quantile(c, 0.95, method="higher")
            out[kind] = {"roc_auc": auc(a, c), "detected_at_5pct": float((a > threshold).mean())}
        out["mean_auc"] = float(np.mean([v["roc_auc"] for v in out.values()]))
        return out

    single = [{"squeezers": [s], **measure([j])} for j, s in enumerate(CANDIDATE_SQUEEZERS)]
    combos = [{"squeezers": [CANDIDATE_SQUEEZERS[j] for j in c], **measure(list(c))}
              for k in (2, 3) for c in itertools.combinations(range(len(CANDIDATE_SQUEEZERS)), k)]
    combos.sort(key=lambda r: -r["mean_auc"])
    return {"images": f"{photos_span[0]}:{photos_span[1]}", "single": single, "best_combinations": combos[:8]}


def flickr_order() -> list[str]:
    """Flickr image paths in captions.jsonl order (the order every split is cut from)."""
    order = [json.loads(line)["image"] for line in (DATA / "flickr8k-subset/captions.jsonl").read_text().splitlines()]
    return [str(DATA / "flickr8k-subset" / name) for name in dict.fromkeys(order)]


def span(text: str) -> tuple[int, int]:
    lo, hi = (int(x) for x in text.split(":"))
    if not 0 <= lo < hi <= 800:
        sys.exit(f"range {text!r} must be A:B with 0 <= A < B <= 800 (Flickr images in captions.jsonl order)")
    return lo, hi


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lite")
    parser.add_argument("--per-class", type=int, default=10, help="CIFAR images per class (default 10)")
    parser.add_argument("--flickr", default="600:800", help="held-out Flickr image range (default 600:800)")
    parser.add_argument("--calibration", default="600:700",
                        help="held-out Flickr range whose clean photos set the detection thresholds (default 600:700)")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps")
    parser.add_argument("--linf", type=float, nargs="+", default=[0, 1, 2, 4, 8], help="L-inf budgets in /255")
    parser.add_argument("--l2", type=float, nargs="+", default=[0.25, 0.5, 1.0], help="L2 budgets")
    parser.add_argument("--targeted", type=float, nargs="*", default=[2, 8],
                        help="L-inf budgets (/255, among --linf) of the targeted PGD rows (default 2 8)")
    parser.add_argument("--defence-eps", type=float, default=4, help="L-inf budget (/255) of the defence table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--select-squeezers", metavar="A:B", default="",
                        help="only compare candidate squeezers on Flickr photos A..B-1 (how the defaults were chosen)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    args = parser.parse_args(argv)
    for need in ("cifar10-dev", "flickr8k-subset"):
        if not (DATA / need).is_dir():
            sys.exit(f"{DATA / need} is missing: the benchmark reads ../shared/data beside the repository")

    from polymodal.eval.retrieval import read_captions
    from polymodal.guard.adversarial import label_vectors, pixel_encoder
    from polymodal.guard.squeeze import DEFAULT_SQUEEZERS, DEFENCES, SqueezeDetector, evaluate_defences

    def log(msg):
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    began, began_cpu = time.perf_counter(), time.process_time()
    encoder = pixel_encoder(args.model)
    given = argv if argv is not None else sys.argv[1:]
    report = {"command": " ".join(["python benchmarks/adversarial_robustness.py", *given]),
              "machine": {**machine(), "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
              "model": encoder.name, "steps": args.steps, "calibration": args.calibration,
              "squeezers": list(DEFAULT_SQUEEZERS)}
    defence_label = f"Linf {args.defence_eps:g}/255"

    if args.select_squeezers:
        report["selection"] = select_squeezers(encoder, span(args.select_squeezers), log)
        report["seconds"] = round(time.perf_counter() - began, 1)
        report["cpu_seconds"] = round(time.process_time() - began_cpu, 1)
        print(json.dumps(report, indent=2) if args.json else format_selection(report))
        return 0

    # 1. zero-shot classification on CIFAR-10
    paths, true = cifar(args.per_class)
    batch = encoder.prepare(paths)
    texts = label_vectors(encoder, CIFAR_CLASSES, "imagenet80")
    log(f"cifar: {len(paths)} images")
    rows, pgd_runs = run_attacks(encoder, batch, texts, true, args, log, targets=(true + 1) % 10, section="cifar")
    report["cifar"] = {"images": len(paths), "rows": rows}
    if defence_label in pgd_runs:
        run = pgd_runs[defence_label]
        report["cifar"]["defences"] = [r.to_dict() for r in
                                       evaluate_defences(encoder, batch, run.attacked, run.adversarial, texts, true,
                                                         DEFENCES)]

    # Thresholds come from clean held-out Flickr photos (`--calibration`), which lite never trained
    # on: its training photos give systematically lower scores (the head fitted them), and a
    # threshold from them raised false alarms elsewhere to 13%.
    c_lo, c_hi = span(args.calibration)
    calibration = flickr_order()[c_lo:c_hi]
    start = time.perf_counter()
    detector = SqueezeDetector(encoder, CIFAR_CLASSES, templates="imagenet80")
    detector.calibrate(encoder.prepare([thumbnail(p) for p in calibration]))
    report["cifar"]["detection"] = detection_table(detector, batch, pgd_runs)
    log(f"  cifar detection ({time.perf_counter() - start:.0f} s)")

    # 2. image-to-text retrieval on held-out Flickr
    lo, hi = span(args.flickr)
    data = read_captions(DATA / "flickr8k-subset" / "captions.jsonl", slice(lo, hi))
    fbatch = encoder.prepare(data.images)
    captions = encoder.text_vectors(data.captions)
    mask = np.zeros((len(data.images), len(data.captions)), bool)
    for c, i in enumerate(data.caption_image):
        mask[i, c] = True
    log(f"flickr: {len(data.images)} images, {len(data.captions)} captions")
    rows, fruns = run_attacks(encoder, fbatch, captions, mask, args, log, section="flickr")
    report["flickr"] = {"images": len(data.images), "captions": len(data.captions), "range": args.flickr, "rows": rows}
    if defence_label in fruns:
        run = fruns[defence_label]
        # retrieval "accuracy" = R@1; with one caption per image the true index is that caption
        first = mask.argmax(axis=1)
        report["flickr"]["defences"] = [r.to_dict() for r in
                                        evaluate_defences(encoder, fbatch, run.attacked, run.adversarial, captions,
                                                          first, DEFENCES)]
    # detection counts only the measured images outside the calibration range
    measured = np.array([not (c_lo <= lo + i < c_hi) for i in range(len(data.images))])
    report["flickr"]["detection_images"] = f"{args.flickr} minus {args.calibration}"
    start = time.perf_counter()
    default_detector = SqueezeDetector(encoder)
    report["flickr"]["calibrated_threshold"] = default_detector.calibrate(encoder.prepare(calibration))
    report["flickr"]["detection"] = detection_table(default_detector, fbatch, fruns, measured)
    # the same with the retrieval's own candidates (the captions) as the label set
    caption_detector = SqueezeDetector(encoder, data.captions, templates=["{}"])
    caption_detector.calibrate(fbatch.select(np.flatnonzero(~measured)))
    report["flickr"]["detection_caption_labels"] = detection_table(caption_detector, fbatch, fruns, measured)
    log(f"  flickr detection ({time.perf_counter() - start:.0f} s)")
    report["seconds"] = round(time.perf_counter() - began, 1)
    report["cpu_seconds"] = round(time.process_time() - began_cpu, 1)

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


def format_selection(r: dict) -> str:
    sel = r["selection"]
    lines = [f"command: {r['command']}", f"model {r['model']}; Flickr photos {sel['images']} and their "
             f"32x32 thumbnails; {r['seconds']} s wall, {r['cpu_seconds']} s CPU",
             f"{'squeezers':<40} {'AUC photos':>10} {'det@5%':>7} {'AUC thumbs':>10} {'det@5%':>7} {'mean AUC':>9}"]
    for title, rows in (("single", sel["single"]), ("best combinations", sel["best_combinations"])):
        lines.append(f"-- {title}")
        for row in rows:
            p, t = row["photos"], row["thumbnails"]
            lines.append(f"{', '.join(row['squeezers']):<40} {p['roc_auc']:>10.3f} {p['detected_at_5pct']:>7.1%} "
                         f"{t['roc_auc']:>10.3f} {t['detected_at_5pct']:>7.1%} {row['mean_auc']:>9.3f}")
    return "\n".join(lines)


def print_report(r: dict) -> None:
    m = r["machine"]
    print(f"command: {r['command']}")
    print(f"machine: {m['cpu']}, {m['usable_cpus']} cores, {m['memory_gib']} GiB; python {m['python']}, "
          f"torch {m['torch']} ({m['torch_threads']} threads); model {r['model']}; PGD {r['steps']} steps; "
          f"squeezers {', '.join(r['squeezers'])}; "
          f"total {r['seconds']} s wall, {r['cpu_seconds']} s CPU")
    for key, title in (("cifar", f"zero-shot CIFAR-10 ({r['cifar']['images']} images, imagenet80 templates)"),
                       ("flickr", f"image-to-text retrieval, Flickr {r['flickr']['range']} "
                                  f"({r['flickr']['images']} images, {r['flickr']['captions']} captions)")):
        part = r[key]
        metric = "acc" if key == "cifar" else "R@1"
        print(f"\n{title}: attack success rate on images right when clean; {metric} over all images after the attack")
        print(f"{'attack':<6} {'goal':<10} {'budget':<12} {'attacked':>8} {'success':>8} {'float':>7} {metric:>6} "
              f"{'wall s':>7} {'CPU s':>6}")
        for row in part["rows"]:
            print(f"{row['attack']:<6} {row['goal']:<10} {row['budget']:<12} {row['attacked']:>8} "
                  f"{row['success_rate']:>8.1%} {row['success_rate_float']:>7.1%} {row['accuracy']:>6.1%} "
                  f"{row['seconds']:>7} {row['cpu_seconds']:>6}")
        if "defences" in part:
            print(f"\ndefences against untargeted PGD, {key}: {metric} after each transformation")
            print(f"{'transform':<11} {'clean':>7} {'adversarial':>12} {'recovered':>10} {'broken':>7}")
            for d in part["defences"]:
                print(f"{d['transform']:<11} {d['clean_accuracy']:>7.1%} {d['adversarial_accuracy']:>12.1%} "
                      f"{d['recovered']:>10.1%} {d['broken']:>7}")
        default = "the default label set (80 COCO categories)" if key == "flickr" else "the CIFAR labels"
        tables = [("detection", default)]
        if key == "flickr":
            tables.append(("detection_caption_labels", f"the {part['captions']} captions as the label set"))
        where = (f"thresholds for 5% false alarms on clean Flickr {r['calibration']} "
                 + ("thumbnails" if key == "cifar"
                    else f"photos; measured on Flickr {part.get('detection_images', '')}"))
        for field, labels in tables:
            print(f"\nfeature-squeezing detection, {key}, {labels}; {where}")
            print(f"{'budget':<12} {'threshold':>9} {'false alarms':>13} {'of':>4} {'detected':>9} {'of':>4} "
                  f"{'ROC AUC':>8}")
            for d in part[field]:
                print(f"{d['budget']:<12} {d['threshold']:>9.3f} {d['false_alarm_rate']:>13.1%} {d['clean_images']:>4} "
                      f"{d['detection_rate']:>9.1%} {d['adversarial_images']:>4} {d['roc_auc']:>8.3f}")


if __name__ == "__main__":
    sys.exit(main())
