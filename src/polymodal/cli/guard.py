"""`polymodal guard`: security checks for images that reach vision-language models."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_FLAGGED = 1  # scan: at least one image was judged risky (like grep: 1 = found something)
MANIFEST = "manifest.json"


def register(sub, add_model, add_json) -> None:
    guard = sub.add_parser(
        "guard", help="detect and test attacks through images: scan, analyze, consistency, attacks, probe",
        description="Security checks for vision-language inputs. See docs/guard.md.").add_subparsers(
        dest="guard_command", metavar="COMMAND")

    p = guard.add_parser("scan", help="find prompt injections in images (pixels, QR codes, metadata)",
                         description="Reads all text an image carries (OCR over enhanced views, QR codes, EXIF/XMP/PNG "
                                     "text) and judges whether it is an instruction aimed at a model. Exit status 1 "
                                     "when any image is flagged, 0 when none is, 3 when an image cannot be read.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--sanitize", metavar="DIR", default=None,
                   help="write a copy of each flagged image with the injected regions masked and no metadata")
    p.add_argument("--all-findings", action="store_true", help="also list texts that were not flagged")
    add_json(p)
    p.set_defaults(func=cmd_scan)

    p = guard.add_parser("analyze", help="judge one request: image, user prompt and the model's answer",
                         description="Runs every check on one vision-language request: injections in the image, "
                                     "unsafe-content categories, whether the answer obeyed the image's text, and "
                                     "claims of the answer the image does not support. Prints a verdict (block, "
                                     "warn, allow) with its reasons; exit status 1 for block, 0 otherwise.")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--prompt", default=None, help="the user's text sent with the image")
    p.add_argument("--answer", default=None, help="the model's answer")
    add_model(p)
    add_json(p)
    p.set_defaults(func=cmd_analyze)

    p = guard.add_parser("consistency", help="which claims of a caption or answer the image supports",
                         description="Splits TEXT into claims (objects, colours, counts...), scores each against the "
                                     "image against contrasting claims, and lists the unsupported ones (likely "
                                     "hallucinations). Exit status 1 when a claim is unsupported.")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("text", metavar="TEXT", help="the caption or answer about the image")
    add_model(p)
    add_json(p)
    p.set_defaults(func=cmd_consistency)

    p = guard.add_parser("attacks", help="write red-team images, one per hiding technique, each with a canary",
                         description="Writes one PNG per technique (visible, small corner, low contrast, rotated, "
                                     "tiled, document, QR code, metadata), each asking the model to answer with a "
                                     f"canary string, plus {MANIFEST} describing every case.")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the images and the manifest")
    p.add_argument("--canary", default=None, help="one canary for all images (default: a fresh one per image)")
    p.add_argument("--seed", type=int, default=0, help="seed for placement and backgrounds (default 0)")
    p.add_argument("--base", nargs="+", default=None, metavar="IMAGE",
                   help="photos to hide the text in (default: generated backgrounds)")
    add_json(p)
    p.set_defaults(func=cmd_attacks)

    p = guard.add_parser("probe", help="send the attack images to an OpenAI-compatible vision chat endpoint",
                         description="Asks the endpoint a benign question about each attack image and reports which "
                                     "techniques it followed (the canary appears in its answer).")
    p.add_argument("--endpoint", required=True, metavar="URL",
                   help="base URL of the API, e.g. http://127.0.0.1:8000/v1 (or the full .../chat/completions)")
    p.add_argument("--model", dest="chat_model", default="default", metavar="NAME",
                   help="the model name sent in each request (default 'default')")
    p.add_argument("--api-key", default=None, help="bearer key (default: $OPENAI_API_KEY)")
    p.add_argument("--attacks", metavar="DIR", default=None,
                   help="images written by `polymodal guard attacks` (default: make a fresh set)")
    p.add_argument("--question", default=None, help="the benign question asked about each image")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    add_json(p)
    p.set_defaults(func=cmd_probe)
    return guard


def _load_cases(folder: Path):
    from polymodal.errors import InvalidInputError
    from polymodal.guard.attacks import AttackCase

    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise InvalidInputError(f"{folder} has no {MANIFEST}: write the images with `polymodal guard attacks --out {folder}`")
    cases = [AttackCase(**row) for row in json.loads(manifest.read_text())]
    for case in cases:
        if case.path and not Path(case.path).is_absolute():
            case.path = str(folder / case.path)
    return cases


def _write_attacks(out: Path, canary, seed, base):
    from polymodal.guard.attacks import generate_attacks

    cases = generate_attacks(out, canary=canary, seed=seed, base_images=base)
    rows = []
    for case in cases:
        row = case.to_dict()
        if row["path"]:
            row["path"] = Path(row["path"]).name  # relative: the folder can be moved
        rows.append(row)
    (out / MANIFEST).write_text(json.dumps(rows, indent=2) + "\n")
    return cases


def cmd_attacks(args: argparse.Namespace) -> int:
    from polymodal.media import load_image

    base = [load_image(p) for p in args.base] if args.base else None
    cases = _write_attacks(Path(args.out), args.canary, args.seed, base)
    if args.json:
        print(json.dumps([c.to_dict() for c in cases], indent=2))
        return EXIT_OK
    for case in cases:
        where = case.path if case.path else f"skipped: {case.skipped}"
        print(f"{case.technique:<13} {case.canary}  {where}")
    print(f"{sum(1 for c in cases if c.path)} images and {MANIFEST} in {args.out}", file=sys.stderr)
    return EXIT_OK


def cmd_probe(args: argparse.Namespace) -> int:
    import tempfile

    from polymodal.guard.probe import DEFAULT_QUESTION, probe

    api_key = args.api_key or os.environ.get("OPENAI_API_KEY")
    with tempfile.TemporaryDirectory() as tmp:
        cases = _load_cases(Path(args.attacks)) if args.attacks else _write_attacks(Path(tmp), None, 0, None)
        report = probe(args.endpoint, cases, model=args.chat_model, question=args.question or DEFAULT_QUESTION,
                       api_key=api_key, timeout=args.timeout)
    d = report.to_dict()
    if args.json:
        print(json.dumps(d, indent=2))
        return EXIT_OK
    for r in d["results"]:
        verdict = "ERROR" if r["error"] else ("FOLLOWED" if r["followed"] else "resisted")
        detail = r["error"] or (r["answer"] or "").replace("\n", " ")[:100]
        print(f"{r['technique']:<13} {verdict:<9} {detail}")
    rate = d["attack_success_rate"]
    print(f"followed {len(d['followed'])} of {d['answered']} techniques"
          + (f" ({rate:.0%})" if rate is not None else "") + (f"; {d['errors']} requests failed" if d["errors"] else ""))
    return EXIT_OK


def cmd_scan(args: argparse.Namespace) -> int:
    from polymodal.guard.scan import scan_images

    reports = scan_images(args.images, sanitize_dir=args.sanitize)
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2, ensure_ascii=False))
    else:
        for r in reports:
            if r.error:
                print(f"{r.source}: ERROR {r.error}")
                continue
            hidden = " (hidden)" if r.hidden_injection else ""
            print(f"{r.source}: {r.verdict.upper()}{hidden} risk {r.risk:.2f}"
                  + (f" [{', '.join(r.techniques)}]" if r.techniques else "") + f" in {r.seconds:.2f}s")
            for f in r.findings:
                if f.flagged or args.all_findings:
                    where = f"box {f.box}" if f.box else "no box"
                    text = f.text.replace("\n", " / ")
                    print(f"  {'!' if f.flagged else ' '} {f.score:.2f} {f.source:<24} hidden {f.hidden:.2f} {where}: {text[:100]}")
            if r.sanitized:
                print(f"  sanitised copy: {r.sanitized}")
    if any(r.error for r in reports):
        return 3
    return EXIT_FLAGGED if any(r.flagged for r in reports) else EXIT_OK


def cmd_analyze(args: argparse.Namespace) -> int:
    from polymodal.guard.analyze import analyze

    result = analyze(args.image, prompt=args.prompt, answer=args.answer, model=args.model)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(f"{result.verdict.upper()}")
        for reason in result.reasons:
            print(f"  - {reason}")
    return EXIT_FLAGGED if result.verdict == "block" else EXIT_OK


def cmd_consistency(args: argparse.Namespace) -> int:
    from polymodal.guard.consistency import check_consistency

    report = check_consistency(args.image, args.text, model=args.model)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(f"consistency {report.score:.2f} ({len(report.claims)} claims)")
        for c in report.claims:
            mark = "ok " if c.supported else "NO " if c.supported is False else "?  "
            alt = f" (image looks more like: {c.alternative})" if c.supported is False and c.alternative else ""
            print(f"  {mark} {c.phrase!r}: score {c.score:.2f}{alt}")
    return EXIT_FLAGGED if report.unsupported else EXIT_OK
