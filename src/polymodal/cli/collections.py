"""Commands over collections: index, search, dupes, collections list/show/drop/reembed.

Thin: each parses its options, calls polymodal.collections, and prints the task's result (its
`to_dict()` under --json, a short table otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_OK, EXIT_USAGE, EXIT_PARTIAL = 0, 2, 3
DEFAULT_COLLECTION = "default"


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="DIR", default=None,
                   help="database directory (default: $POLYMODAL_DB or ~/.local/share/polymodal/db)")


def _add_collection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", "-c", default=DEFAULT_COLLECTION, metavar="NAME",
                   help=f"collection name (default: {DEFAULT_COLLECTION})")


def _add_filters(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters (combined with AND)")
    g.add_argument("--path", metavar="GLOB", help="source path pattern: '*.png', '*beach*', '/photos/2024/*'")
    g.add_argument("--type", action="append", default=[], metavar="KIND",
                   help="image, text, or a MIME type such as image/png or image/* (repeatable: any of them)")
    g.add_argument("--since", metavar="TIME", help="files modified at or after: 2024-05-01, 2024-05-01T12:00 or epoch seconds")
    g.add_argument("--until", metavar="TIME", help="files modified before this time")
    g.add_argument("--where", metavar="SQL", help="a raw predicate over the columns, e.g. \"width >= 1024\"")


def _filter(args):
    from polymodal.store.filters import Filter, parse_time

    return Filter(path=args.path, kinds=list(args.type), since=parse_time(args.since) if args.since else None,
                  until=parse_time(args.until) if args.until else None, where=args.where)


def _json(args) -> bool:
    return bool(getattr(args, "json", False))


def register(sub, add_model, add_json) -> None:
    p = sub.add_parser("index", help="index files and folders into a collection (incremental)",
                       description="Walks the folders, embeds only what is new or changed (content hash), follows renamed "
                                   "files, and with --prune removes what was deleted. Safe to interrupt: a re-run "
                                   "finishes the job. Exit status 3 when some files could not be indexed (they are listed).")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    _add_collection(p)
    _add_db(p)
    p.add_argument("--prune", action="store_true", help="remove items whose files no longer exist under PATH")
    p.add_argument("--rehash", action="store_true", help="read and hash every file, even those whose size and mtime did not change")
    p.add_argument("--metadata", metavar="JSON", help='a JSON object stored with every new item, e.g. \'{"album": "trip"}\'')
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: threads in this process; ray: Ray Data (a local instance, or --ray-address)")
    p.add_argument("--ray-address", metavar="ADDR", default=None, help="Ray cluster address, e.g. ray://head:10001 (with --engine ray)")
    p.add_argument("--guard", action="store_true",
                   help="scan new images for prompt injections while indexing (polymodal guard scan); verdicts go "
                        "into each item's metadata under \"guard\" and flagged files are listed")
    p.add_argument("--model", "-m", default=None, metavar="NAME|hf:org/repo|DIR",
                   help="model of a new collection (default: the offline default); an existing collection keeps its own")
    add_json(p)
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="search a collection by text, by image, or both",
                       description="Text-to-image, image-to-image, text-to-text and image-to-text: the collection's "
                                   "items decide. Scores are cosine similarities.")
    p.add_argument("text", nargs="?", default=None, metavar="TEXT", help="the text query")
    p.add_argument("--image", metavar="FILE", help="an image query ('-' reads the image from stdin)")
    p.add_argument("--text-weight", type=float, default=1.0, help="weight of the text when both are given (default 1)")
    p.add_argument("--image-weight", type=float, default=1.0, help="weight of the image when both are given (default 1)")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--threshold", type=float, default=None, metavar="SCORE", help="drop results scoring below this cosine")
    p.add_argument("--exact", action="store_true", help="exact search even when the collection has an approximate index")
    p.add_argument("--queries", metavar="FILE",
                   help="many text queries, one per line ('-' for stdin); prints one JSON line per query")
    _add_collection(p)
    _add_db(p)
    _add_filters(p)
    add_json(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("dupes", help="list groups of near-duplicate items in a collection")
    p.add_argument("--threshold", type=float, default=0.95, metavar="SCORE",
                   help="cosine at or above which two items are duplicates (default 0.95)")
    _add_collection(p)
    _add_db(p)
    _add_filters(p)
    add_json(p)
    p.set_defaults(func=cmd_dupes)

    coll = sub.add_parser("collections", help="list, show, drop or re-embed collections").add_subparsers(dest="verb", metavar="VERB")
    p = coll.add_parser("list", help="the collections in the database")
    _add_db(p)
    add_json(p)
    p.set_defaults(func=cmd_collections_list)
    p = coll.add_parser("show", help="one collection: model, size, index")
    p.add_argument("name", metavar="NAME")
    _add_db(p)
    add_json(p)
    p.set_defaults(func=cmd_collections_show)
    p = coll.add_parser("drop", help="delete a collection and its vectors (the files stay)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _add_db(p)
    add_json(p)
    p.set_defaults(func=cmd_collections_drop)
    p = coll.add_parser("reembed", help="embed a collection's files with another model into a new collection")
    p.add_argument("source", metavar="SRC")
    p.add_argument("target", metavar="DST")
    p.add_argument("--model", "-m", required=True, metavar="NAME|hf:org/repo|DIR")
    _add_db(p)
    add_json(p)
    p.set_defaults(func=cmd_collections_reembed)


# ----------------------------------------------------------------------------------------------


def _print_report(args, report) -> int:
    data = report.to_dict()
    if _json(args):
        print(json.dumps(data, indent=2))
    else:
        done = report.new + report.changed + report.copied
        print(f"{report.collection}: {done} file(s) embedded or reused ({report.new} new, {report.changed} changed, "
              f"{report.copied} copies), {report.unchanged} unchanged, {report.touched} touched, "
              f"{report.moved} moved, {report.removed} removed; {report.count} items in {report.seconds:.1f} s"
              + (f" ({report.files_per_second:.1f} files/s)" if done else ""))
        if report.missing:
            print(f"{report.missing} file(s) are gone from disk but kept; run with --prune to remove them")
        if report.ignored:
            print(f"{report.ignored} file(s) of other types ignored")
        for s in report.skipped:
            print(f"skipped {s.source}: {s.reason}: {s.message}", file=sys.stderr)
        if report.index:
            print(f"approximate index: {report.index['indexed_rows']} rows indexed")
        if report.guarded:
            print(f"guard: {len(report.flagged)} file(s) carry a prompt injection"
                  + "".join(f"\n  {path}" for path in report.flagged)
                  + ("\n  (verdicts are in each item's metadata under \"guard\")" if report.flagged else ""))
    return EXIT_PARTIAL if report.skipped else EXIT_OK


def cmd_index(args) -> int:
    from polymodal.collections import open_collection
    from polymodal.errors import InvalidInputError

    metadata = None
    if args.metadata:
        try:
            metadata = json.loads(args.metadata)
        except ValueError as exc:
            raise InvalidInputError(f"--metadata is not JSON: {exc}") from None
        if not isinstance(metadata, dict):
            raise InvalidInputError('--metadata must be a JSON object, e.g. \'{"album": "trip"}\'')
    coll = open_collection(args.collection, db=args.db, model=args.model, create=True)
    report = coll.add(args.paths, prune=args.prune, rehash=args.rehash, metadata=metadata,
                      progress=not _json(args) and sys.stderr.isatty(), engine=args.engine,
                      ray_address=args.ray_address, guard=args.guard)
    return _print_report(args, report)


def cmd_search(args) -> int:
    from polymodal.collections import open_collection
    from polymodal.errors import InvalidInputError

    if args.queries and (args.text or args.image):
        raise InvalidInputError("give either --queries FILE or one query (TEXT and/or --image), not both")
    if not args.queries and args.text is None and args.image is None:
        raise InvalidInputError('nothing to search for: give a TEXT, --image FILE, or both (e.g. polymodal search "a red car")')
    coll = open_collection(args.collection, db=args.db)
    flt = _filter(args)
    if args.queries:
        from polymodal.cli.main import _read_lines

        for text in _read_lines(args.queries):
            result = coll.search(text, k=args.k, filter=flt, threshold=args.threshold, exact=args.exact)
            print(json.dumps(result.to_dict()))
        return EXIT_OK
    image = sys.stdin.buffer.read() if args.image == "-" else args.image
    result = coll.search(args.text, image=image, text_weight=args.text_weight, image_weight=args.image_weight,
                         k=args.k, filter=flt, threshold=args.threshold, exact=args.exact)
    if _json(args):
        print(json.dumps(result.to_dict(), indent=2))
    else:
        for hit in result.hits:
            extra = f"  {hit['text'][:60]!r}" if hit.get("text") else ""
            print(f"{hit['score']:.4f}  {hit['source']}{'#' + hit['uri'].split('#', 1)[1] if '#' in hit['uri'] else ''}{extra}")
        if not result.hits:
            print("no results" + (f" at or above score {args.threshold}" if args.threshold is not None else ""), file=sys.stderr)
    return EXIT_OK


def cmd_dupes(args) -> int:
    from polymodal.collections import open_collection

    coll = open_collection(args.collection, db=args.db)
    groups = coll.duplicates(threshold=args.threshold, filter=_filter(args))
    if _json(args):
        print(json.dumps({"collection": coll.name, "threshold": args.threshold, "groups": groups}, indent=2))
    else:
        for n, group in enumerate(groups, 1):
            print(f"group {n}: {group['size']} items, best score {group['max_score']:.4f}")
            for item in group["items"]:
                print(f"  {item['score']:.4f}  {item['source']}")
        print(f"{len(groups)} group(s) at or above {args.threshold}", file=sys.stderr)
    return EXIT_OK


def cmd_collections_list(args) -> int:
    from polymodal.store import Database

    db = Database(args.db)
    rows = db.list()
    if _json(args):
        print(json.dumps({"db": str(db.path), "collections": rows}, indent=2))
    else:
        print(f"{db.path}:")
        for r in rows:
            index = "approximate index" if r["index"] else "exact search"
            print(f"  {r['name']:<24} {r['count']:>9} items  model {r['model']} (dim {r['dim']}), {index}")
        if not rows:
            print("  no collections yet: polymodal index PATH --collection NAME")
    return EXIT_OK


def cmd_collections_show(args) -> int:
    from polymodal.store import Database

    info = Database(args.db).open(args.name).info()
    print(json.dumps(info, indent=2) if _json(args) else "\n".join(f"{k}: {v}" for k, v in info.items()))
    return EXIT_OK


def cmd_collections_drop(args) -> int:
    from polymodal.errors import InvalidInputError
    from polymodal.store import Database

    db = Database(args.db)
    count = db.open(args.name).count()
    if not args.yes:
        if not sys.stdin.isatty():
            raise InvalidInputError(f"dropping {args.name!r} deletes {count} items; confirm with --yes")
        answer = input(f"drop collection {args.name!r} with {count} items? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("kept", file=sys.stderr)
            return EXIT_OK
    db.drop(args.name)
    print(json.dumps({"dropped": args.name, "items": count}) if _json(args) else f"dropped {args.name} ({count} items)")
    return EXIT_OK


def cmd_collections_reembed(args) -> int:
    from polymodal.collections import open_collection
    from polymodal.errors import InvalidInputError
    from polymodal.store import Database

    db = Database(args.db)
    source = db.open(args.source)
    if db.exists(args.target):
        raise InvalidInputError(f"collection {args.target!r} already exists; pick a new name for the re-embedded copy")
    sources = sorted({row["source"] for row in source.scan(["source"])})
    present = [s for s in sources if os.path.exists(s)]
    target = open_collection(args.target, db=db, model=args.model, create=True)
    report = target.add(present, progress=not _json(args) and sys.stderr.isatty()) if present else None
    if report is None:
        print(f"{args.source} has no files left on disk to re-embed", file=sys.stderr)
        return EXIT_PARTIAL
    if len(present) < len(sources):
        print(f"{len(sources) - len(present)} source file(s) no longer exist and were not re-embedded", file=sys.stderr)
    return _print_report(args, report)
