"""The HTTP server and its web page: a FastAPI app over the same Python API as the CLI.

    from polymodal.serve import create_app
    app = create_app("~/photos-db", api_key="s3cret", index_roots=["~/Pictures"])
    # uvicorn.run(app, host="127.0.0.1", port=8765), or from the shell: polymodal serve

The routes, the security model and curl examples are in docs/serve.md; the OpenAPI spec is served
at /openapi.json (browsable at /docs). Needs the `serve` extra (fastapi, uvicorn, python-multipart).
"""

from polymodal.serve.app import create_app
from polymodal.serve.caches import ModelCache

__all__ = ["ModelCache", "create_app"]
