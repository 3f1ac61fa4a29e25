"""`polymodal serve`: the HTTP API and web page (polymodal.serve) under uvicorn."""

from __future__ import annotations

import argparse
import os
import sys

EXIT_OK = 0
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve the HTTP API and the web page for searching collections",
        description="Serves the collections of a database over HTTP: a JSON API under /api (OpenAPI spec at "
                    "/openapi.json, browsable at /docs) and a search page at /. Listens on 127.0.0.1 unless "
                    "--host says otherwise; beyond loopback, set an API key. See docs/serve.md.")
    p.add_argument("--db", metavar="DIR", default=None,
                   help="database directory (default: $POLYMODAL_DB or ~/.local/share/polymodal/db)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--api-key", metavar="KEY", default=None,
                   help="require this key on every /api route (X-API-Key header or Authorization: Bearer); "
                        "default: $POLYMODAL_API_KEY, which keeps the key out of the process list")
    p.add_argument("--index-root", action="append", default=[], metavar="DIR",
                   help="allow indexing jobs over HTTP for files under DIR (repeatable); without it, HTTP clients "
                        "cannot index")
    p.add_argument("--max-upload-mb", type=float, default=20.0, metavar="N",
                   help="largest image a client may upload for a search, in MB (default 20)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default info)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from polymodal.errors import InvalidInputError, require
    from polymodal.serve.security import API_KEY_ENV, LOOPBACK_NAMES, is_loopback

    uvicorn = require("uvicorn", "serve", "polymodal serve")
    require("fastapi", "serve", "polymodal serve")
    from polymodal.serve import create_app

    if not 0 < args.port < 65536:
        raise InvalidInputError(f"--port {args.port} is not a port number (1-65535)")
    if args.max_upload_mb <= 0:
        raise InvalidInputError(f"--max-upload-mb {args.max_upload_mb} must be positive")
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    loopback = is_loopback(args.host)
    if not loopback and not api_key:
        print(f"warning: serving on {args.host} without an API key: anyone who can reach port {args.port} can search "
              f"your collections and fetch the indexed files{' and index more' if args.index_root else ''}. "
              f"Set {API_KEY_ENV} (or pass --api-key) to require a key.", file=sys.stderr)
    # On loopback, only loopback Host names are answered (a web page elsewhere cannot reach the
    # server through DNS rebinding); beyond it the API key is the guard, and any name is answered.
    allowed_hosts = tuple(dict.fromkeys((*LOOPBACK_NAMES, args.host))) if loopback else None
    app = create_app(args.db, api_key=api_key, index_roots=args.index_root,
                     max_upload_bytes=int(args.max_upload_mb * (1 << 20)), allowed_hosts=allowed_hosts)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"polymodal: serving {app.state.polymodal.db.path} at http://{shown}:{args.port}/ "
          f"(API docs at /docs{', API key required' if api_key else ''})", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return EXIT_OK
