"""The FastAPI application: routes over polymodal.collections, the web page, errors as HTTP.

Every route is a thin shell: parse, call the Python API (the same `Collection` the CLI uses), return
the task's own `to_dict()`. Items are addressed by collection name and 16-hex id, never by path.
"""

from __future__ import annotations

import io
import os
import re
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Union

from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Path as PathParam, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from polymodal.errors import (
    BackendUnavailableError,
    CollectionBusyError,
    CollectionNotFoundError,
    InvalidInputError,
    MediaError,
    ModelMismatchError,
    ModelNotAvailableError,
    ModelNotFoundError,
    PolymodalError,
)
from polymodal.serve.caches import BytesLRU, ModelCache
from polymodal.serve.jobs import JobManager
from polymodal.serve.security import (
    FILE_CSP,
    LOOPBACK_NAMES,
    Guard,
    api_key_dependency,
    check_index_paths,
    normalise_roots,
    open_source,
)

STATIC = Path(__file__).with_name("static")
DEFAULT_MAX_UPLOAD = 20 << 20
MAX_K = 1000
THUMB_SIZES = (16, 1024)  # smallest and largest thumbnail edge a client may ask for
_ITEM_ID = re.compile(r"[0-9a-f]{16}")
ItemId = Annotated[str, PathParam(description="the item's 16-hex id (the `id` of a search hit)")]
# Types a browser may show inline; anything else is sent as a download.
_INLINE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff"}


# ----------------------------------------------------------------------------------------------
# Request and response shapes (they make the OpenAPI spec; responses keep any extra field)


class FilterIn(BaseModel):
    """Structured filters, combined with AND (raw SQL is never taken over HTTP)."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(None, max_length=1024, description="glob over the source path: '*.png', '*beach*', '/photos/2024/*'")
    type: list[str] = Field(default_factory=list, max_length=32,
                            description="any of these kinds: 'image', 'text', or MIME types such as 'image/png', 'image/*'")
    since: Union[float, str, None] = Field(None, description="modified at or after: 2024-05-01, 2024-05-01T12:00 or epoch seconds")
    until: Union[float, str, None] = Field(None, description="modified before this time")


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(..., min_length=1, max_length=4000, description="the text query")
    k: int = Field(10, ge=1, le=MAX_K, description="number of results")
    threshold: float | None = Field(None, ge=-1.0, le=1.0, description="drop results scoring below this cosine")
    filter: FilterIn | None = None


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(..., min_length=1, max_length=1000,
                             description="absolute paths of files or folders inside the server's --index-root folders")
    prune: bool = Field(False, description="remove items whose files no longer exist under the paths")
    rehash: bool = Field(False, description="read and hash every file, even those whose size and mtime did not change")
    metadata: dict[str, Any] | None = Field(None, description="a JSON object stored with every new item")
    model: str | None = Field(None, max_length=200,
                              description="registered model name for a new collection (default: the server's default model)")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Health(_Open):
    status: str
    version: str
    auth: bool = Field(description="whether /api routes need an API key")
    indexing: bool = Field(description="whether this server takes indexing jobs (it has --index-root folders)")


class Item(_Open):
    id: str
    uri: str
    source: str
    kind: str
    media_type: str | None = None
    width: int | None = None
    height: int | None = None
    text: str | None = None
    metadata: Any = None


class Hit(Item):
    score: float


class SearchOut(_Open):
    collection: str
    model: str
    query: dict
    hits: list[Hit]
    exact: bool
    seconds: float


class CollectionInfo(_Open):
    name: str
    model: str
    dim: int
    count: int


class CollectionsOut(_Open):
    db: str
    collections: list[CollectionInfo]


class JobOut(_Open):
    id: str
    collection: str
    state: str = Field(description="queued, running, done, failed or cancelled")
    done: int
    total: int | None
    report: dict | None = Field(None, description="the IndexReport when done")
    error: dict | None = Field(None, description="{error, detail, status} when failed")


class JobsOut(_Open):
    jobs: list[JobOut]


class ErrorOut(BaseModel):
    detail: str
    error: str | None = None


# ----------------------------------------------------------------------------------------------
# Errors


def error_status(exc: BaseException) -> int:
    """The HTTP status of a polymodal error (the message always goes with it)."""
    if isinstance(exc, CollectionNotFoundError):
        return 404
    if isinstance(exc, CollectionBusyError):
        return 409
    if isinstance(exc, MediaError):
        return {"unsupported": 415, "too-large": 413}.get(exc.reason, 400)
    if isinstance(exc, ModelMismatchError):
        return 422
    if isinstance(exc, (InvalidInputError, ModelNotFoundError)):
        return 400
    if isinstance(exc, (ModelNotAvailableError, BackendUnavailableError)):
        return 503
    if isinstance(exc, HTTPException):
        return exc.status_code
    return 500


def describe_error(exc: BaseException) -> dict:
    status = error_status(exc)
    if isinstance(exc, HTTPException):
        detail = str(exc.detail)
    elif isinstance(exc, PolymodalError):
        detail = str(exc)
    else:
        detail = f"internal error ({type(exc).__name__}); see the server's log"
    return {"error": type(exc).__name__, "detail": detail, "status": status}


_ERRORS = {400: {"model": ErrorOut, "description": "bad input (the message says which)"},
           401: {"model": ErrorOut, "description": "missing or wrong API key"},
           404: {"model": ErrorOut, "description": "no such collection or item"}}


# ----------------------------------------------------------------------------------------------
# The application


class ServerState:
    """What the routes share: the database, loaded models, thumbnails, jobs and the settings."""

    def __init__(self, db, *, index_roots, max_upload_bytes: int, model_cache: ModelCache | None,
                 thumbnail_cache: BytesLRU | None, serve_files: bool):
        from polymodal.store import Database

        self.db = db if isinstance(db, Database) else Database(db)
        self.index_roots = normalise_roots(index_roots)
        self.max_upload_bytes = int(max_upload_bytes)
        self.models = model_cache if model_cache is not None else ModelCache()
        self.thumbnails = thumbnail_cache if thumbnail_cache is not None else BytesLRU()
        self.serve_files = serve_files
        self.jobs = JobManager(self.run_job, describe_error)

    # -- collections ---------------------------------------------------------------------------

    def stored(self, name: str):
        """A fresh handle on collection `name` (sees every commit so far, by any process)."""
        from polymodal.store.collection import check_name

        try:
            check_name(name)
        except InvalidInputError as exc:
            raise HTTPException(404, f"no collection {name!r}: {exc}") from None
        return self.db.open(name)

    def collection(self, name: str):
        """The collection with its model, loaded once per server and shared."""
        from polymodal.collections import Collection

        stored = self.stored(name)
        return Collection(stored, self.models.get(stored.model))

    def item(self, name: str, item_id: str) -> dict:
        stored = self.stored(name)
        record = stored.get(item_id) if _ITEM_ID.fullmatch(item_id) else None
        if record is None:
            raise HTTPException(404, f"no item {item_id!r} in collection {name!r}: item ids are the 16-hex "
                                     f"`id` of search hits")
        return record

    # -- jobs ----------------------------------------------------------------------------------

    def run_job(self, job, on_progress, should_stop=None) -> dict:
        from polymodal.collections import Collection

        spec = job.options.get("model")
        if self.db.exists(job.collection):
            stored = self.db.open(job.collection)
            if spec:
                stored.check_model(spec if spec == stored.model else _registered(spec).name)
        else:
            spec = spec or _default_model()
            embedder = self.models.get(spec)
            stored = self.db.create(job.collection, model=spec, dim=embedder.dim, model_name=embedder.name,
                                    exist_ok=True)
        collection = Collection(stored, self.models.get(stored.model))
        report = collection.add(job.paths, prune=job.options.get("prune", False),
                                rehash=job.options.get("rehash", False), metadata=job.options.get("metadata"),
                                progress=False, on_progress=on_progress, should_stop=should_stop)
        return report.to_dict()


def _registered(name: str):
    from polymodal.models.registry import get_entry

    return get_entry(name)


def _default_model() -> str:
    from polymodal.models.registry import default_model_name

    return default_model_name()


def create_app(db=None, *, api_key: str | None = None, index_roots=(), max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
               model_cache: ModelCache | None = None, thumbnail_cache: BytesLRU | None = None,
               allowed_hosts=LOOPBACK_NAMES, serve_files: bool = True) -> FastAPI:
    """The polymodal HTTP app over the database `db` (a path, a `Database`, or None for the default).

    api_key: when set, every /api route but /api/health needs it (X-API-Key or Authorization: Bearer).
    index_roots: folders whose files clients may index (POST .../jobs); none: indexing over HTTP is off.
    max_upload_bytes: the largest image a client may upload (and, plus 1 MiB, the largest request).
    model_cache: share loaded models with another app or preload them (default: a new cache).
    allowed_hosts: Host header names answered (default: loopback names, against DNS rebinding);
        None or ("*",) answers any (when serving beyond loopback, with an API key).
    serve_files: whether GET .../items/{id}/file sends original files.
    """
    from polymodal import __version__

    state = ServerState(db, index_roots=index_roots, max_upload_bytes=max_upload_bytes, model_cache=model_cache,
                        thumbnail_cache=thumbnail_cache, serve_files=serve_files)

    @asynccontextmanager
    async def lifespan(app):
        yield
        await run_in_threadpool(state.jobs.close)

    app = FastAPI(
        title="polymodal", version=__version__, lifespan=lifespan, docs_url=None,
        description="Search collections of images and texts by text, by image, or both; index folders; fetch "
                    "items and thumbnails. Items are addressed by collection and id, never by path. "
                    + ("Every /api route but /api/health needs the API key (X-API-Key header or "
                       "Authorization: Bearer)." if api_key else ""),
    )
    app.state.polymodal = state
    app.add_middleware(Guard, max_body=state.max_upload_bytes + (1 << 20),
                       allowed_hosts=None if allowed_hosts is None else tuple(allowed_hosts))

    @app.exception_handler(PolymodalError)
    async def polymodal_error(request: Request, exc: PolymodalError):
        body = describe_error(exc)
        return JSONResponse({"detail": body["detail"], "error": body["error"]}, status_code=body["status"])

    open_api = APIRouter(prefix="/api")
    dependencies = [Depends(api_key_dependency(api_key))] if api_key else []
    api = APIRouter(prefix="/api", dependencies=dependencies, responses=_ERRORS)

    @open_api.get("/health", response_model=Health, tags=["server"], summary="liveness, version, whether a key is needed")
    def health():
        return {"status": "ok", "version": __version__, "auth": bool(api_key), "indexing": bool(state.index_roots)}

    # -- collections -----------------------------------------------------------------------------

    @api.get("/collections", response_model=CollectionsOut, tags=["collections"], summary="the collections in the database")
    def list_collections():
        rows = []
        for name in state.db.names():
            try:
                rows.append(state.db.open(name).info(cheap=True))
            except PolymodalError:  # a table that is not a polymodal collection: not ours to list
                continue
        return {"db": str(state.db.path), "collections": rows}

    @api.get("/collections/{name}", response_model=CollectionInfo, tags=["collections"], summary="one collection")
    def collection_info(name: str):
        return state.stored(name).info()

    # -- search ----------------------------------------------------------------------------------

    @api.get("/collections/{name}/search", response_model=SearchOut, tags=["search"], summary="search by text")
    def search_get(name: str,
                   q: Annotated[str, Query(min_length=1, max_length=4000, description="the text query")],
                   k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
                   threshold: Annotated[float | None, Query(ge=-1.0, le=1.0)] = None,
                   path: Annotated[str | None, Query(max_length=1024, description="glob over the source path")] = None,
                   type: Annotated[list[str], Query(description="image, text or a MIME type (repeatable)")] = [],  # noqa: B006
                   since: Annotated[str | None, Query(description="2024-05-01, 2024-05-01T12:00 or epoch seconds")] = None,
                   until: Annotated[str | None, Query()] = None):
        flt = make_filter(path, type, since, until)
        return state.collection(name).search(q, k=k, filter=flt, threshold=threshold).to_dict()

    @api.post("/collections/{name}/search", response_model=SearchOut, tags=["search"], summary="search by text (JSON)")
    def search_post(name: str, body: SearchIn):
        f = body.filter or FilterIn()
        flt = make_filter(f.path, f.type, f.since, f.until)
        return state.collection(name).search(body.text, k=body.k, filter=flt, threshold=body.threshold).to_dict()

    @api.post("/collections/{name}/search/image", response_model=SearchOut, tags=["search"],
              summary="search by an uploaded image, optionally with text",
              responses={413: {"model": ErrorOut, "description": "image too large"},
                         415: {"model": ErrorOut, "description": "not an image format we read"}})
    async def search_image(name: str,
                           image: Annotated[UploadFile, File(description="the query image (its content decides its type)")],
                           text: Annotated[str | None, Form(max_length=4000)] = None,
                           text_weight: Annotated[float, Form(ge=0.0)] = 1.0,
                           image_weight: Annotated[float, Form(ge=0.0)] = 1.0,
                           k: Annotated[int, Form(ge=1, le=MAX_K)] = 10,
                           threshold: Annotated[float | None, Form(ge=-1.0, le=1.0)] = None,
                           path: Annotated[str | None, Form(max_length=1024)] = None,
                           type: Annotated[list[str] | None, Form()] = None,
                           since: Annotated[str | None, Form()] = None,
                           until: Annotated[str | None, Form()] = None):
        data = await image.read(state.max_upload_bytes + 1)
        await image.close()
        if len(data) > state.max_upload_bytes:
            raise HTTPException(413, f"the uploaded image is larger than this server's limit of "
                                     f"{state.max_upload_bytes:,} bytes; start the server with a larger "
                                     f"--max-upload-mb to allow more")
        from polymodal.media import probe_image

        # The type is decided by the content (its header), never by the file's name or declared type.
        probe_image(data, source=f"uploaded file {image.filename!r}" if image.filename else "uploaded file")
        flt = make_filter(path, type or [], since, until)
        text = text if text and text.strip() else None

        def run():
            return state.collection(name).search(text, image=data, text_weight=text_weight, image_weight=image_weight,
                                                 k=k, filter=flt, threshold=threshold).to_dict()

        return await run_in_threadpool(run)

    # -- items -----------------------------------------------------------------------------------

    @api.get("/collections/{name}/items/{item_id}", response_model=Item, tags=["items"], summary="an item's record")
    def get_item(name: str, item_id: ItemId):
        return state.item(name, item_id)

    @api.get("/collections/{name}/items/{item_id}/thumbnail", tags=["items"], summary="a JPEG thumbnail of an image item",
             response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
    def get_thumbnail(name: str, item_id: ItemId,
                      size: Annotated[int, Query(ge=THUMB_SIZES[0], le=THUMB_SIZES[1],
                                                 description="longest edge in pixels")] = 256):
        record = state.item(name, item_id)
        if record["kind"] != "image":
            raise HTTPException(404, f"item {item_id} is a {record['kind']} item and has no thumbnail; "
                                     f"its content is in its record (GET .../items/{item_id})")
        fh, st = open_source(record)
        with fh:
            key = (str(state.db.path), name, item_id, size, st.st_ino, st.st_size, st.st_mtime_ns)
            jpeg = state.thumbnails.get(key)
            if jpeg is None:
                jpeg = make_thumbnail(fh, size, record["source"])
                state.thumbnails.put(key, jpeg)
        return Response(jpeg, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=300", "Content-Security-Policy": FILE_CSP})

    @api.get("/collections/{name}/items/{item_id}/file", tags=["items"], summary="the item's original file",
             response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}})
    def get_file(name: str, item_id: ItemId):
        if not state.serve_files:
            raise HTTPException(404, "this server does not send original files (serve_files=False); use the thumbnail")
        record = state.item(name, item_id)
        fh, st = open_source(record)
        media_type = record.get("media_type") or "application/octet-stream"
        filename = os.path.basename(record["source"])
        if media_type in _INLINE_TYPES:
            disposition = "inline"
        elif media_type.startswith("text/"):
            media_type, disposition = "text/plain; charset=utf-8", "inline"
        else:
            media_type, disposition = "application/octet-stream", "attachment"
        return StreamingResponse(_chunks(fh), media_type=media_type, headers={
            "Content-Length": str(st.st_size), "Content-Security-Policy": FILE_CSP,
            "Content-Disposition": _disposition(disposition, filename), "Cache-Control": "private, no-cache"})

    # -- jobs --------------------------------------------------------------------------------------

    @api.post("/collections/{name}/jobs", response_model=JobOut, status_code=202, tags=["jobs"],
              summary="index files and folders under the server's --index-root folders",
              responses={403: {"model": ErrorOut, "description": "indexing is off, or a path is outside the roots"},
                         409: {"model": ErrorOut, "description": "the collection already has a job"}})
    def start_job(name: str, body: JobIn, request: Request):
        from polymodal.store.collection import check_name

        paths = check_index_paths(body.paths, state.index_roots)
        check_name(name)
        if body.model is not None:
            if body.model.startswith("hf:") or "/" in body.model or os.sep in body.model or body.model.startswith("."):
                raise InvalidInputError(f"model {body.model!r}: over HTTP a new collection takes a registered model "
                                        f"name (`polymodal models list`); use the shell for hf: ids and local paths")
            _registered(body.model)
        options = {"prune": body.prune, "rehash": body.rehash, "metadata": body.metadata, "model": body.model}
        job = state.jobs.submit(name, paths, options)
        return JSONResponse(state.jobs.get(job.id), status_code=202,
                            headers={"Location": str(request.url_for("get_job", job_id=job.id).path)})

    @api.get("/jobs", response_model=JobsOut, tags=["jobs"], summary="indexing jobs, newest first")
    def list_jobs(collection: Annotated[str | None, Query(description="only this collection's jobs")] = None):
        return {"jobs": state.jobs.list(collection)}

    @api.get("/jobs/{job_id}", response_model=JobOut, tags=["jobs"], summary="one job and its progress")
    def get_job(job_id: str):
        job = state.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r} (jobs live in the server's memory; a restart forgets them)")
        return job

    @api.post("/jobs/{job_id}/cancel", response_model=JobOut, tags=["jobs"],
              summary="cancel a queued job, or stop a running one after the files it has read")
    def cancel_job(job_id: str):
        job = state.jobs.cancel(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r} (jobs live in the server's memory; a restart forgets them)")
        return job

    from polymodal.serve.guard_routes import add_guard_routes

    add_guard_routes(api, state.max_upload_bytes, _ERRORS)
    app.include_router(open_api)
    app.include_router(api)

    # -- the web page ------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _mount_api_docs(app)
    return app


def _mount_api_docs(app: FastAPI) -> None:
    """/docs: the interactive OpenAPI page. Served from the swagger-ui-bundle package when it is
    installed (the `serve` extra brings it), so the page works offline; else FastAPI's default,
    which loads Swagger UI from a CDN."""
    from fastapi.openapi.docs import get_swagger_ui_html

    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        assets = None
    else:
        assets = "/docs-assets"
        app.mount(assets, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs():
        if assets is None:
            return get_swagger_ui_html(openapi_url=app.openapi_url, title="polymodal API")
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="polymodal API",
                                   swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{assets}/swagger-ui.css",
                                   swagger_favicon_url=f"{assets}/favicon-32x32.png")


# ----------------------------------------------------------------------------------------------
# Helpers


def make_filter(path, types, since, until):
    """Structured filters -> a store Filter (None when empty); bad values -> InvalidInputError (400)."""
    from polymodal.store.filters import Filter, parse_time

    kinds = [t.strip() for value in types or [] for t in str(value).split(",") if t.strip()]
    flt = Filter(path=path or None, kinds=kinds,
                 since=_time(since, parse_time, "since"), until=_time(until, parse_time, "until"))
    if flt.since is not None and flt.until is not None and flt.since >= flt.until:
        raise InvalidInputError(f"since ({since}) must be earlier than until ({until})")
    flt.to_sql()  # validates the kinds now, as a 400, before any model runs
    return None if flt.is_empty() else flt


def _time(value, parse_time, name: str):
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return parse_time(str(value))
    except InvalidInputError as exc:
        raise InvalidInputError(f"{name}: {exc}") from None


def make_thumbnail(fh, size: int, source: str) -> bytes:
    """A JPEG whose longest edge is at most `size`, decoded with the media room's guards."""
    from PIL import Image

    from polymodal.media import load_image

    image = load_image(fh, draft_size=(size, size), source=source)
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()


def _chunks(fh, size: int = 1 << 16):
    try:
        while chunk := fh.read(size):
            yield chunk
    finally:
        fh.close()


def _disposition(kind: str, filename: str) -> str:
    from urllib.parse import quote

    ascii_name = re.sub(r'[^A-Za-z0-9._ -]', "_", filename) or "file"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
