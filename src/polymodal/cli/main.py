"""The `polymodal` command: a thin shell over the task functions (noun then verb).

Exit status, for scripts:
  0  success
  1  error (model not available, bad checkpoint, ...): the message says how to fix it
  2  bad usage or bad input (unknown option, empty label list, ...)
  3  partial success: some inputs could not be used; they are listed, the rest were processed
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3

MODEL_HELP = "a registered name (see `polymodal models list`), hf:org/repo[@revision], or a local directory or weights file (default: $POLYMODAL_MODEL or the offline default)"


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", default=None, metavar="NAME|hf:org/repo|DIR", help=MODEL_HELP)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16 runs several times faster on CPUs with bf16 units (cosine >= 0.999 to fp32 measured)")


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polymodal",
        description="One toolkit for multimodal AI. Exit status: 0 ok, 1 error, 2 bad usage or input, 3 some inputs skipped.",
    )
    parser.add_argument("--version", action="version", version=f"polymodal {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("classify", help="zero-shot classification of images among labels",
                       description="Score each image against the labels with the model's own scoring (softmax for CLIP, sigmoid for SigLIP).")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files; '-' reads one image's bytes from stdin")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--labels", help="comma-separated labels, e.g. cat,dog,car")
    g.add_argument("--labels-file", metavar="FILE", help="one label per line ('-' for stdin)")
    p.add_argument("--templates", default=None, metavar="NAME|FILE",
                   help="prompt templates: imagenet80 (default), imagenet7, simple, or a file with one '{}' template per line")
    p.add_argument("--top-k", type=int, default=None, help="keep the K best labels per image")
    p.add_argument("--batch-size", type=int, default=None)
    _add_model(p)
    _add_json(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("embed", help="embed images or texts and write the vectors to .npy or .parquet",
                       description="Writes float32 unit vectors. With .npy, a sidecar FILE.json records the model, the sources and any skipped inputs; with .parquet, the model is recorded in the file's metadata.")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files to embed")
    p.add_argument("--text", action="append", default=[], metavar="TEXT", help="a text to embed (repeatable)")
    p.add_argument("--texts-file", metavar="FILE", help="texts to embed, one per line ('-' for stdin)")
    p.add_argument("--out", "-o", required=True, metavar="FILE", help="output file: .npy or .parquet")
    p.add_argument("--batch-size", type=int, default=None)
    _add_model(p)
    _add_json(p)
    p.set_defaults(func=cmd_embed)

    models = sub.add_parser("models", help="the model registry: list, show, convert, export").add_subparsers(
        dest="verb", metavar="VERB")
    p = models.add_parser("list", help="list the registered models")
    _add_json(p)
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("show", help="load a model and describe it")
    p.add_argument("model", metavar="NAME|hf:org/repo|DIR")
    _add_json(p)
    p.set_defaults(func=cmd_models_show)
    p = models.add_parser("convert", help="load any supported checkpoint and save it in polymodal's layout (loads offline)")
    p.add_argument("model", metavar="NAME|hf:org/repo|DIR|FILE")
    p.add_argument("out", metavar="DIR")
    _add_json(p)
    p.set_defaults(func=cmd_models_convert)
    p = models.add_parser("export-onnx", help="export both towers of a native model to ONNX (loadable with --model DIR)")
    p.add_argument("model", metavar="NAME|hf:org/repo|DIR|FILE")
    p.add_argument("out", metavar="DIR")
    _add_json(p)
    p.set_defaults(func=cmd_models_export_onnx)

    evaluate = sub.add_parser("eval", help="measure a model on a benchmark: zeroshot, retrieval, caption, vqa, pope").add_subparsers(
        dest="verb", metavar="VERB")
    p = evaluate.add_parser("zeroshot", help="zero-shot accuracy on a folder per class (folder names are the labels)")
    p.add_argument("root", metavar="DIR")
    p.add_argument("--templates", default=None, metavar="NAME|FILE", help="as for classify (default imagenet80)")
    p.add_argument("--per-class", type=int, default=None, metavar="N", help="use the first N images of each class")
    _add_model(p)
    _add_json(p)
    p.set_defaults(func=cmd_eval_zeroshot)
    p = evaluate.add_parser("retrieval", help="text-to-image and image-to-text recall@K on a captions.jsonl")
    p.add_argument("captions", metavar="CAPTIONS.jsonl", help='lines of {"image": path relative to the file, "caption": text}')
    p.add_argument("--images", default=None, metavar="START:STOP",
                   help="a slice of the unique images in file order, e.g. 600:800 for a held-out split")
    _add_model(p)
    _add_json(p)
    p.set_defaults(func=cmd_eval_retrieval)
    from polymodal.cli import evaluate as evaluate_cli

    evaluate_cli.register(evaluate, _add_json)

    p = sub.add_parser("demo", help="the main job on generated sample images (index, search, classify), with no download")
    p.add_argument("--out", metavar="DIR", default=None, help="keep the generated sample images here")
    _add_model(p)
    _add_json(p)
    p.set_defaults(func=cmd_demo)

    from polymodal.cli import collections, guard, serve, train

    collections.register(sub, _add_model, _add_json)
    serve.register(sub)
    train.register(sub)
    guard.register(sub, _add_model, _add_json)
    return parser


# ----------------------------------------------------------------------------------------------
# Commands


def _load(args):
    from polymodal.embed.resolve import load_embedder

    return load_embedder(args.model, precision=args.precision)


def _show_progress(args) -> bool:
    return not getattr(args, "json", False) and sys.stderr.isatty()


def _read_lines(path: str) -> list[str]:
    from polymodal.errors import InvalidInputError

    if path == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def _image_items(names: list[str]) -> list:
    return [sys.stdin.buffer.read() if name == "-" else name for name in names]


def _print_failures(failures) -> None:
    for f in failures:
        print(f"skipped {f.source}: {f.reason}: {f.message}", file=sys.stderr)


def cmd_classify(args) -> int:
    from polymodal.tasks.zeroshot import classify

    labels = args.labels.split(",") if args.labels is not None else _read_lines(args.labels_file)
    model = _load(args)
    result = classify(model, _image_items(args.images), labels, templates=args.templates, top_k=args.top_k,
                      batch_size=args.batch_size, progress=_show_progress(args))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        for pred in result.predictions:
            best = ", ".join(f"{x['label']} {x['score']:.3f}" for x in pred.labels[: args.top_k or 5])
            print(f"{pred.source}\t{best}")
        _print_failures(result.failures)
    return EXIT_PARTIAL if result.failures else EXIT_OK


def cmd_embed(args) -> int:
    import numpy as np

    from polymodal.errors import InvalidInputError

    texts = list(args.text) + (_read_lines(args.texts_file) if args.texts_file else [])
    if not args.images and not texts:
        raise InvalidInputError("nothing to embed: give image files, --text or --texts-file")
    if args.images and texts:
        raise InvalidInputError("embed images or texts in one call, not both (they would share one file)")
    out = Path(args.out)
    if out.suffix not in (".npy", ".parquet"):
        raise InvalidInputError(f"--out {args.out}: the file must end in .npy or .parquet")
    model = _load(args)
    if args.images:
        items = _image_items(args.images)
        emb = model.embed_images(items, batch_size=args.batch_size, progress=_show_progress(args))
        sources = [args.images[i] for i in emb.kept]
        kind = "image"
    else:
        emb = model.embed_texts(texts, batch_size=args.batch_size, progress=_show_progress(args))
        sources = [texts[i] for i in emb.kept]
        kind = "text"
    meta = {"model": model.name, "dim": model.dim, "kind": kind, "count": len(sources)}
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, emb.vectors)
        sidecar = {**meta, "sources": sources, "failures": [f.to_dict() for f in emb.failures]}
        Path(str(out) + ".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    else:
        from polymodal.errors import require

        pa = require("pyarrow", "parquet", "writing Parquet")
        import pyarrow.parquet as pq

        table = pa.table({"source": sources, "kind": [kind] * len(sources),
                          "vector": pa.FixedSizeListArray.from_arrays(pa.array(emb.vectors.reshape(-1)), model.dim)})
        table = table.replace_schema_metadata({"polymodal": json.dumps(meta)})
        pq.write_table(table, out)
    summary = {**meta, "out": str(out), "failures": [f.to_dict() for f in emb.failures], "truncated": emb.truncated}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"wrote {len(sources)} {kind} vectors of dim {model.dim} from {model.name} to {out}")
        _print_failures(emb.failures)
    return EXIT_PARTIAL if emb.failures else EXIT_OK


def cmd_models_list(args) -> int:
    from polymodal.models.registry import REGISTRY, default_model_name, models_dir, user_models

    default = default_model_name()
    rows = [{**e.to_dict(), "default": e.name == default} for e in REGISTRY.values()]
    exported = [{"name": name, "source": str(path), "default": name == default, "exported": True}
                for name, path in user_models().items()]
    if args.json:
        print(json.dumps(rows + exported, indent=2))
        return EXIT_OK
    for r in rows:
        mark = " (default)" if r["default"] else ""
        print(f"{r['name']}{mark}\n  {r['description']}\n  source: {r['source']}  backend: {r['backend']}  "
              f"dim: {r['dim']}  scoring: {r['scoring']}  licence: {r['license']}\n"
              f"  preprocessing: {r['preprocess']}\n  tokenizer: {r['tokenizer']}\n  quality: {r['quality']}")
    if exported:
        print(f"\nexported models ({models_dir()}; made by `polymodal train --export-name NAME`):")
        for r in exported:
            print(f"{r['name']}{' (default)' if r['default'] else ''}\n  source: {r['source']}")
    return EXIT_OK


def cmd_models_show(args) -> int:
    from polymodal.embed.resolve import load_embedder

    info = load_embedder(args.model).describe()
    print(json.dumps(info, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in info.items()))
    return EXIT_OK


def cmd_models_convert(args) -> int:
    from polymodal.embed.resolve import load_embedder, save_embedder

    model = load_embedder(args.model)
    out = save_embedder(model, args.out)
    info = {**model.describe(), "out": str(out)}
    print(json.dumps(info, indent=2) if args.json else f"saved {model.name} to {out}; load it with --model {out}")
    return EXIT_OK


def cmd_models_export_onnx(args) -> int:
    from polymodal.backends.onnx import export_onnx
    from polymodal.embed.resolve import load_embedder

    model = load_embedder(args.model)
    out = export_onnx(model, args.out)
    info = {**model.describe(), "out": str(out)}
    print(json.dumps(info, indent=2) if args.json else f"exported {model.name} to {out}; load it with --model {out}")
    return EXIT_OK


def _print_result(args, result: dict) -> None:
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{key}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items()))
        else:
            print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


def cmd_eval_zeroshot(args) -> int:
    from polymodal.eval.zeroshot import evaluate_zeroshot

    model = _load(args)
    result = evaluate_zeroshot(model, args.root, templates=args.templates, per_class=args.per_class,
                               progress=_show_progress(args))
    _print_result(args, {"model": model.name, **result})
    return EXIT_PARTIAL if result["skipped"] else EXIT_OK


def _parse_slice(text: str | None) -> slice | None:
    from polymodal.errors import InvalidInputError

    if text is None:
        return None
    try:
        start, stop = (int(x) if x else None for x in text.split(":"))
    except ValueError:
        raise InvalidInputError(f"--images {text!r} is not START:STOP (e.g. 600:800)") from None
    return slice(start, stop)


def cmd_eval_retrieval(args) -> int:
    from polymodal.eval.retrieval import evaluate_retrieval, read_captions

    data = read_captions(args.captions, _parse_slice(args.images))
    model = _load(args)
    _print_result(args, {"model": model.name, **evaluate_retrieval(model, data)})
    return EXIT_OK


DEMO_QUERIES = ["a traffic light at a crossing", "a puzzle to solve", "a hexagonal pattern"]


def cmd_demo(args) -> int:
    """The main job on generated images: index them into a throw-away collection, search it by
    text, and classify them zero-shot."""
    import tempfile

    from polymodal.collections import open_collection
    from polymodal.media.samples import SAMPLE_LABELS, write_samples
    from polymodal.tasks.zeroshot import classify

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out or Path(tmp) / "samples")
        paths = write_samples(folder)
        model = _load(args)
        coll = open_collection("demo", db=Path(tmp) / "db", model=args.model, create=True, embedder=model)
        report = coll.add([folder], progress=False)
        searches = [coll.search(query, k=2) for query in DEMO_QUERIES]
        result = classify(model, [str(p) for p in paths], SAMPLE_LABELS, templates="simple", top_k=3)
    if args.json:
        print(json.dumps({"index": report.to_dict(), "search": [s.to_dict() for s in searches],
                          "classify": result.to_dict()}, indent=2))
        return EXIT_OK
    print(f"indexed {report.count} generated images into a temporary collection with {result.model}")
    for search in searches:
        best = ", ".join(f"{Path(h['source']).name} {h['score']:.3f}" for h in search.hits)
        print(f"  search {search.query['text']!r:<34} {best}")
    print(f"zero-shot classification ({result.scoring} scoring):")
    for pred in result.predictions:
        best = ", ".join(f"{x['label']} {x['score']:.3f}" for x in pred.labels)
        print(f"  {Path(pred.source).name:<22} {best}")
    if result.model == "clip-tiny-random":
        print("note: clip-tiny-random has random weights, so these results are arbitrary; pass --model for a trained model")
    return EXIT_OK


# ----------------------------------------------------------------------------------------------


def _version() -> str:
    from polymodal import __version__

    return __version__


def _warning_to_stderr(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    from polymodal.errors import InvalidInputError, PolymodalError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        # `polymodal` or `polymodal models` alone: show the relevant help
        target = parser if args.command is None else parser._subparsers._group_actions[0].choices[args.command]
        target.print_help()
        return EXIT_USAGE
    warnings.showwarning = _warning_to_stderr
    try:
        return args.func(args)
    except InvalidInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PolymodalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())
