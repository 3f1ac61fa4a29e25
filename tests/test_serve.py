"""The HTTP API (polymodal.serve) through FastAPI's TestClient, on a temporary database filled with
generated images by the tiny random model (no download)."""

from __future__ import annotations

import io
import os
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("lancedb")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from polymodal.collections import open_collection  # noqa: E402
from polymodal.serve import ModelCache, create_app  # noqa: E402
from polymodal.serve.jobs import JobManager  # noqa: E402

MODEL = "clip-tiny-random"
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220), "yellow": (240, 220, 40)}
BASE = "http://127.0.0.1"


def write_png(path: Path, colour, size=(64, 48)) -> Path:
    image = Image.new("RGB", size, colour)
    image.paste((255, 255, 255), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))  # not flat: JPEG-safe
    image.save(path)
    return path


def png_bytes(colour=(200, 10, 10), size=(40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    images = root / "images"
    images.mkdir()
    for name, colour in COLOURS.items():
        write_png(images / f"{name}.png", colour)
    (images / "note.txt").write_text("a short note about red apples\n")
    other = root / "other"
    other.mkdir()
    write_png(other / "purple.png", (120, 30, 160))
    db = root / "db"
    photos = open_collection("photos", db=db, model=MODEL, create=True)
    photos.add([images], progress=False)
    others = open_collection("other", db=db, model=MODEL, create=True)
    others.add([other], progress=False)
    cache = ModelCache()
    cache.put(MODEL, photos.embedder)  # the server reuses the loaded model
    ids = {Path(row["source"]).stem: row["id"] for row in photos.stored.scan(["id", "source"])}
    other_id = next(iter(others.stored.scan(["id"])))["id"]
    incoming = root / "incoming"
    incoming.mkdir()
    return SimpleNamespace(root=root, images=images, db=db, cache=cache, ids=ids, other_id=other_id, incoming=incoming)


def make_client(world, **options) -> TestClient:
    options.setdefault("model_cache", world.cache)
    return TestClient(create_app(world.db, **options), base_url=BASE)


@pytest.fixture(scope="module")
def client(world):
    with make_client(world, index_roots=[world.incoming]) as c:  # `with` runs the app's lifespan
        yield c


def wait_job(client, job_id, timeout=60.0, headers=None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {job}")


# ----------------------------------------------------------------------------------------------
# Server, collections


def test_health_openapi_and_page(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["auth"] is False and health["indexing"] is True
    spec = client.get("/openapi.json").json()
    for path in ("/api/collections", "/api/collections/{name}/search", "/api/collections/{name}/search/image",
                 "/api/collections/{name}/items/{item_id}/thumbnail", "/api/collections/{name}/jobs", "/api/jobs/{job_id}"):
        assert path in spec["paths"], path
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text  # Swagger UI from the installed bundle: works offline
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    for asset in ("/", "/static/app.js", "/static/style.css"):  # offline: nothing loads from elsewhere
        assert not re.search(r"https?://|//cdn|@import", client.get(asset).text), asset


def test_list_and_info(client):
    data = client.get("/api/collections").json()
    by_name = {c["name"]: c for c in data["collections"]}
    assert by_name["photos"]["count"] == 5 and by_name["photos"]["model"] == MODEL
    assert by_name["other"]["count"] == 1
    info = client.get("/api/collections/photos").json()
    assert info["name"] == "photos" and info["dim"] == 32 and info["kinds"] == {"image": 4, "text": 1}


def test_unknown_collection_is_404_with_message(client):
    for url in ("/api/collections/nope", "/api/collections/nope/search?q=red",
                "/api/collections/nope/items/0123456789abcdef"):
        response = client.get(url)
        assert response.status_code == 404, url
        body = response.json()
        assert "no collection 'nope'" in body["detail"] and body["error"] == "CollectionNotFoundError"
        assert "photos" in body["detail"] or "polymodal index" in body["detail"]


# ----------------------------------------------------------------------------------------------
# Search


def test_search_by_text(client, world):
    result = client.get("/api/collections/photos/search", params={"q": "a red square"}).json()
    assert result["collection"] == "photos" and result["model"] == MODEL
    assert len(result["hits"]) == 5
    scores = [h["score"] for h in result["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert {h["id"] for h in result["hits"]} == set(world.ids.values())
    assert all(re.fullmatch(r"[0-9a-f]{16}", h["id"]) for h in result["hits"])
    two = client.get("/api/collections/photos/search", params={"q": "red", "k": 2}).json()
    assert len(two["hits"]) == 2
    none = client.get("/api/collections/photos/search", params={"q": "red", "threshold": 0.9999}).json()
    assert all(h["score"] >= 0.9999 for h in none["hits"])
    posted = client.post("/api/collections/photos/search", json={"text": "a red square", "k": 3}).json()
    assert [h["id"] for h in posted["hits"]] == [h["id"] for h in result["hits"][:3]]


def test_search_filters(client, world):
    def ids(**params):
        response = client.get("/api/collections/photos/search", params={"q": "colour", **params})
        assert response.status_code == 200, response.text
        return {Path(h["source"]).stem for h in response.json()["hits"]}

    assert ids(type="image") == set(COLOURS)
    assert ids(type="text") == {"note"}
    assert ids(type=["text", "image/png"]) == set(COLOURS) | {"note"}
    assert ids(path="*red*") == {"red"}
    assert ids(path=str(world.images / "b*")) == {"blue"}
    assert ids(since="2000-01-01") == set(COLOURS) | {"note"}
    assert ids(until="2000-01-01") == set()
    posted = client.post("/api/collections/photos/search",
                         json={"text": "colour", "filter": {"type": ["image"], "path": "*.png", "since": 0}}).json()
    assert {Path(h["source"]).stem for h in posted["hits"]} == set(COLOURS)


@pytest.mark.parametrize("params", [{"type": "bogus"}, {"type": "image/p n g"}, {"since": "not a date"},
                                    {"until": "2024-13-45"}, {"since": "2024-05-02", "until": "2024-05-01"}])
def test_bad_filters_are_400(client, params):
    response = client.get("/api/collections/photos/search", params={"q": "red", **params})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "InvalidInputError" and response.json()["detail"]


def test_bad_search_requests(client):
    assert client.post("/api/collections/photos/search", json={"text": "x", "filter": {"type": ["bogus"]}}).status_code == 400
    # raw SQL is never taken over HTTP: unknown fields are refused
    assert client.post("/api/collections/photos/search", json={"text": "x", "where": "1=1"}).status_code == 422
    assert client.post("/api/collections/photos/search", json={"text": "x", "filter": {"where": "1=1"}}).status_code == 422
    assert client.get("/api/collections/photos/search", params={"q": "red", "k": 0}).status_code == 422
    assert client.get("/api/collections/photos/search", params={"q": "red", "threshold": 2}).status_code == 422
    assert client.get("/api/collections/photos/search").status_code == 422  # no query
    blank = client.get("/api/collections/photos/search", params={"q": "   "})
    assert blank.status_code == 400 and "empty" in blank.json()["detail"]


def test_search_by_uploaded_image(client, world):
    data = (world.images / "red.png").read_bytes()
    # the name and declared type lie: the content decides
    response = client.post("/api/collections/photos/search/image", files={"image": ("query.txt", data, "text/plain")},
                           data={"k": "3", "type": "image"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["hits"][0]["id"] == world.ids["red"] and result["hits"][0]["score"] > 0.999
    assert len(result["hits"]) == 3 and result["query"]["image"]
    mixed = client.post("/api/collections/photos/search/image", files={"image": ("q.png", data, "image/png")},
                        data={"text": "something yellow", "text_weight": "0.5", "image_weight": "2", "path": "*.png"})
    assert mixed.status_code == 200, mixed.text
    assert mixed.json()["query"]["text"] == "something yellow" and len(mixed.json()["hits"]) == 4
    bad = client.post("/api/collections/photos/search/image", files={"image": ("q.png", data, "image/png")},
                      data={"since": "yesterday-ish"})
    assert bad.status_code == 400


def test_upload_too_large_is_413(world):
    with make_client(world, max_upload_bytes=10_000) as small:
        big = io.BytesIO()
        Image.effect_noise((200, 200), 60).convert("RGB").save(big, "PNG")  # noise: does not compress
        assert big.tell() > 10_000
        response = small.post("/api/collections/photos/search/image", files={"image": ("big.png", big.getvalue(), "image/png")})
        assert response.status_code == 413 and "--max-upload-mb" in response.json()["detail"]
        # a body past the whole-request limit is refused by its Content-Length, before it is read
        huge = small.post("/api/collections/photos/search", content=b"x" * (10_000 + (1 << 20) + 1),
                          headers={"content-type": "application/json"})
        assert huge.status_code == 413
        ok = small.post("/api/collections/photos/search/image", files={"image": ("s.png", png_bytes(), "image/png")})
        assert ok.status_code == 200


@pytest.mark.parametrize("payload,status", [
    (b"hello, I am plain text pretending to be a PNG", 415),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n", 415),  # PostScript: never decoded (it would run Ghostscript)
    (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", 415),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, 400),  # a PNG signature with a broken header: corrupt
    (b"", 400),  # empty
])
def test_upload_wrong_type(client, payload, status):
    response = client.post("/api/collections/photos/search/image", files={"image": ("photo.png", payload, "image/png")})
    assert response.status_code == status, response.text
    assert response.json()["error"] == "MediaError" and "uploaded file 'photo.png'" in response.json()["detail"]


# ----------------------------------------------------------------------------------------------
# Items, thumbnails, files


def test_item_thumbnail_and_file(client, world):
    red = world.ids["red"]
    item = client.get(f"/api/collections/photos/items/{red}").json()
    assert item["id"] == red and item["kind"] == "image" and item["media_type"] == "image/png"
    assert item["width"] == 64 and item["height"] == 48 and item["source"] == str((world.images / "red.png").resolve())

    thumbs = client.app.state.polymodal.thumbnails
    hits_before = thumbs.hits
    for size, expected in ((256, (64, 48)), (32, (32, 24))):
        response = client.get(f"/api/collections/photos/items/{red}/thumbnail", params={"size": size})
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        assert "sandbox" in response.headers["content-security-policy"]
        image = Image.open(io.BytesIO(response.content))
        assert image.format == "JPEG" and image.size == expected
        r, g, b = image.convert("RGB").getpixel((1, 1))
        assert r > 180 and g < 80 and b < 80
    assert client.get(f"/api/collections/photos/items/{red}/thumbnail", params={"size": 32}).status_code == 200
    assert thumbs.hits == hits_before + 1  # the second request came from the cache
    assert client.get(f"/api/collections/photos/items/{red}/thumbnail", params={"size": 5000}).status_code == 422

    original = client.get(f"/api/collections/photos/items/{red}/file")
    assert original.status_code == 200 and original.content == (world.images / "red.png").read_bytes()
    assert original.headers["content-type"] == "image/png"
    assert original.headers["content-disposition"].startswith("inline")

    note = world.ids["note"]
    text_item = client.get(f"/api/collections/photos/items/{note}").json()
    assert text_item["kind"] == "text" and "red apples" in text_item["text"]
    no_thumb = client.get(f"/api/collections/photos/items/{note}/thumbnail")
    assert no_thumb.status_code == 404 and "text item" in no_thumb.json()["detail"]
    text_file = client.get(f"/api/collections/photos/items/{note}/file")
    assert text_file.status_code == 200 and text_file.headers["content-type"].startswith("text/plain")


# A literal ".." is resolved by the client before sending (test_web.py sends it raw to the server).
TRAVERSALS = ["%2e%2e", "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "..%2f..%2f..%2fetc%2fpasswd", "%2fetc%2fpasswd",
              "..%5c..%5cwindows", "0123456789ABCDEF", "0123456789abcdef", "0123456789abcde", "0123456789abcdef0",
              "0123456789abcdeg", "%00", "1150c5e9e50e342c%00"]


@pytest.mark.parametrize("bad", TRAVERSALS)
def test_items_are_addressed_by_id_only(client, bad):
    for suffix in ("", "/thumbnail", "/file"):
        response = client.get(f"/api/collections/photos/items/{bad}{suffix}")
        assert response.status_code == 404, (bad, suffix, response.text)
        assert b"root:" not in response.content


def test_absolute_paths_and_collection_traversal(client, world):
    source = str(world.images / "red.png")
    for url in (f"/api/collections/photos/items/{source}", f"/api/collections/photos/items/{source}/file",
                "/api/collections/photos/items//etc/passwd/file", "/api/collections/%2e%2e/items/0123456789abcdef",
                "/api/collections/..%2fphotos/items/" + world.ids["red"] + "/file", "/static/..%2f..%2fapp.py",
                "/static/%2e%2e/app.py", "/api/collections/photos/items/%2e%2e%2f%2e%2e%2fother/file"):
        response = client.get(url)
        assert response.status_code == 404, (url, response.status_code, response.text[:200])
        assert b"root:" not in response.content and b"import" not in response.content


def test_item_of_another_collection_is_404(client, world):
    assert client.get(f"/api/collections/other/items/{world.other_id}").status_code == 200
    for suffix in ("", "/thumbnail", "/file"):
        response = client.get(f"/api/collections/photos/items/{world.other_id}{suffix}")
        assert response.status_code == 404 and "no item" in response.json()["detail"]
        assert client.get(f"/api/collections/other/items/{world.ids['red']}{suffix}").status_code == 404


def test_sources_are_rechecked(client, world):
    folder = world.incoming / "volatile"
    folder.mkdir()
    for n, name in enumerate(("gone", "linked", "fifo", "kept")):
        write_png(folder / f"{name}.png", (60 * n, 100, 200))
    job = client.post("/api/collections/volatile/jobs", json={"paths": [str(folder)], "model": MODEL}).json()
    assert wait_job(client, job["id"])["state"] == "done"
    hits = client.get("/api/collections/volatile/search", params={"q": "x"}).json()["hits"]
    ids = {Path(h["source"]).stem: h["id"] for h in hits}
    assert set(ids) == {"gone", "linked", "fifo", "kept"}

    (folder / "gone.png").unlink()
    (folder / "linked.png").unlink()
    (folder / "linked.png").symlink_to(folder / "kept.png")  # a link put where an indexed file was
    (folder / "fifo.png").unlink()
    os.mkfifo(folder / "fifo.png")  # must not hang the request
    for name, why in (("gone", "gone from disk"), ("linked", "a link now stands"), ("fifo", "no longer a regular file")):
        for suffix in ("/thumbnail", "/file"):
            response = client.get(f"/api/collections/volatile/items/{ids[name]}{suffix}")
            assert response.status_code == 404, (name, suffix, response.text)
            assert why in response.json()["detail"] and ids[name] in response.json()["detail"]
    assert client.get(f"/api/collections/volatile/items/{ids['kept']}/thumbnail").status_code == 200


# ----------------------------------------------------------------------------------------------
# Security: API key, Host header


def test_api_key(world):
    with make_client(world, api_key="s3cret-key") as c:
        health = c.get("/api/health")
        assert health.status_code == 200 and health.json()["auth"] is True
        assert c.get("/").status_code == 200  # the page itself holds no data
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "s3cret-ke"},
                        {"Authorization": "Basic czNjcmV0LWtleQ=="}, {"X-API-Key": ""}):
            response = c.get("/api/collections", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == "Bearer" and "API key" in response.json()["detail"]
        assert "X-API-Key header" in c.get("/api/collections").json()["detail"]
        assert c.get("/api/collections", headers={"X-API-Key": "s3cret-key"}).status_code == 200
        assert c.get("/api/collections", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
        red = world.ids["red"]
        assert c.get(f"/api/collections/photos/items/{red}/thumbnail").status_code == 401
        assert c.get(f"/api/collections/photos/items/{red}/thumbnail", headers={"X-API-Key": "s3cret-key"}).status_code == 200
        assert c.post("/api/collections/photos/search/image", files={"image": ("q.png", png_bytes(), "image/png")}).status_code == 401
        assert c.get("/api/jobs").status_code == 401
        schemes = c.get("/openapi.json").json()["components"]["securitySchemes"]
        assert {"APIKeyHeader", "BearerToken"} <= set(schemes)


def test_foreign_host_header_is_refused(client):
    assert client.get("/api/health", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/api/health", headers={"Host": "localhost:8765"}).status_code == 200
    assert client.get("/api/health", headers={"Host": "[::1]:8765"}).status_code == 200


# ----------------------------------------------------------------------------------------------
# Indexing jobs


def test_indexing_needs_roots(world):
    with make_client(world) as c:
        response = c.post("/api/collections/photos/jobs", json={"paths": [str(world.images)]})
        assert response.status_code == 403 and "--index-root" in response.json()["detail"]


@pytest.mark.parametrize("path,status", [
    ("{images}", 403), ("/etc", 403), ("{incoming}/../images", 403), ("{incoming}/%2e%2e/images", 400),
    ("relative/path", 400), ("{incoming}/missing", 400)])
def test_job_paths_must_lie_inside_the_roots(client, world, path, status):
    path = path.format(images=world.images, incoming=world.incoming)
    response = client.post("/api/collections/photos/jobs", json={"paths": [path]})
    assert response.status_code == status, response.text
    if status == 403:
        assert "outside the folders" in response.json()["detail"] and "--index-root" in response.json()["detail"]


def test_symlink_out_of_the_roots_is_refused(client, world):
    link = world.incoming / "sneaky"
    link.symlink_to(world.images, target_is_directory=True)
    try:
        assert client.post("/api/collections/photos/jobs", json={"paths": [str(link)]}).status_code == 403
    finally:
        link.unlink()


def test_indexing_job_runs_to_done(client, world):
    folder = world.incoming / "batch"
    folder.mkdir()
    for n, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        write_png(folder / f"img{n}.png", colour)
    response = client.post("/api/collections/fresh/jobs",
                           json={"paths": [str(folder)], "model": MODEL, "metadata": {"album": "test"}})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] in ("queued", "running", "done") and job["collection"] == "fresh"
    assert response.headers["location"] == f"/api/jobs/{job['id']}"
    done = wait_job(client, job["id"])
    assert done["state"] == "done", done
    assert done["done"] == done["total"] == 3
    assert done["report"]["new"] == 3 and done["report"]["count"] == 3 and done["error"] is None
    assert any(j["id"] == job["id"] for j in client.get("/api/jobs").json()["jobs"])
    assert [j["id"] for j in client.get("/api/jobs", params={"collection": "fresh"}).json()["jobs"]] == [job["id"]]
    hits = client.get("/api/collections/fresh/search", params={"q": "red"}).json()["hits"]
    assert len(hits) == 3 and hits[0]["metadata"] == {"album": "test"}
    again = wait_job(client, client.post("/api/collections/fresh/jobs", json={"paths": [str(folder)]}).json()["id"])
    assert again["state"] == "done" and again["report"]["unchanged"] == 3 and again["report"]["new"] == 0
    assert client.get("/api/jobs/ffffffffffffffff").status_code == 404


def test_job_errors(client, world):
    folder = world.incoming / "errs"
    folder.mkdir()
    write_png(folder / "a.png", (1, 2, 3))
    bad_model = client.post("/api/collections/newone/jobs", json={"paths": [str(folder)], "model": "no-such-model"})
    assert bad_model.status_code == 400 and "unknown model" in bad_model.json()["detail"]
    path_model = client.post("/api/collections/newone/jobs", json={"paths": [str(folder)], "model": "/tmp/model"})
    assert path_model.status_code == 400 and "registered model name" in path_model.json()["detail"]
    bad_name = client.post("/api/collections/bad%20name/jobs", json={"paths": [str(folder)]})
    assert bad_name.status_code == 400 and "invalid collection name" in bad_name.json()["detail"]
    assert client.post("/api/collections/photos/jobs", json={"paths": []}).status_code == 422
    # another model than the collection's: the job fails with the store's message
    mismatch = client.post("/api/collections/photos/jobs", json={"paths": [str(folder)], "model": "lite"})
    assert mismatch.status_code == 202
    failed = wait_job(client, mismatch.json()["id"])
    assert failed["state"] == "failed" and failed["error"]["error"] == "ModelMismatchError"
    assert failed["error"]["status"] == 422 and "photos" in failed["error"]["detail"]


def test_second_job_for_a_busy_collection_is_409(client, world):
    state = client.app.state.polymodal
    release = threading.Event()
    saved = state.jobs
    state.jobs = JobManager(lambda job, progress, should_stop: release.wait(10) and {}, saved._describe_error)
    try:
        first = client.post("/api/collections/photos/jobs", json={"paths": [str(world.incoming)]})
        assert first.status_code == 202
        second = client.post("/api/collections/photos/jobs", json={"paths": [str(world.incoming)]})
        assert second.status_code == 409 and second.json()["error"] == "CollectionBusyError"
        assert first.json()["id"] in second.json()["detail"]
        assert client.post("/api/collections/other/jobs", json={"paths": [str(world.incoming)]}).status_code == 202
    finally:
        release.set()
        state.jobs.close()
        state.jobs = saved


def test_busy_collection_maps_to_409(client, world):
    from polymodal.store import Database

    stored = Database(world.db).open("photos")
    with stored.writer_lock():  # another writer holds the collection
        job = client.post("/api/collections/photos/jobs", json={"paths": [str(world.incoming)]}).json()
        failed = wait_job(client, job["id"])
    assert failed["state"] == "failed" and failed["error"]["status"] == 409
    assert "being written" in failed["error"]["detail"]


# ----------------------------------------------------------------------------------------------
# Units: job manager, model cache


def test_job_manager_progress_and_failure():
    from polymodal.errors import InvalidInputError
    from polymodal.serve.app import describe_error

    steps = threading.Event()

    def runner(job, progress, should_stop):
        if job.collection == "bad":
            raise InvalidInputError("nothing to do here")
        if job.collection == "crash":
            raise RuntimeError("secret internals")
        for n in range(4):
            progress(n, 3)
        steps.set()
        return {"ok": True}

    manager = JobManager(runner, describe_error)
    try:
        good, bad, crash = (manager.submit(name, ["/x"], {}) for name in ("good", "bad", "crash"))
        deadline = time.monotonic() + 10
        while any(manager.get(j.id)["state"] in ("queued", "running") for j in (good, bad, crash)):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        g, b, c = (manager.get(j.id) for j in (good, bad, crash))
        assert g["state"] == "done" and g["report"] == {"ok": True} and (g["done"], g["total"]) == (3, 3)
        assert b["state"] == "failed" and b["error"] == {"error": "InvalidInputError", "detail": "nothing to do here", "status": 400}
        assert c["state"] == "failed" and c["error"]["status"] == 500 and "secret" not in c["error"]["detail"]
        assert [j["id"] for j in manager.list()] == [crash.id, bad.id, good.id]
    finally:
        manager.close()


def test_job_manager_cancels_queued_and_running_jobs():
    from polymodal.serve.app import describe_error

    started = threading.Event()

    def runner(job, progress, should_stop):
        started.set()
        deadline = time.monotonic() + 10
        while not should_stop():  # a long job that honours the stop request
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return {"cancelled": True}

    manager = JobManager(runner, describe_error)
    try:
        running = manager.submit("a", ["/x"], {})
        queued = manager.submit("b", ["/x"], {})
        assert started.wait(5)
        assert manager.cancel(queued.id)["state"] == "cancelled"
        assert manager.cancel(running.id)["state"] == "running"  # stops after the files it has read
        deadline = time.monotonic() + 10
        while manager.get(running.id)["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert manager.get(running.id)["state"] == "cancelled"
        assert manager.get(queued.id)["state"] == "cancelled" and manager.get(queued.id)["started"] is None
        assert manager.cancel("nope") is None
    finally:
        manager.close()


def test_model_cache_loads_each_model_once():
    calls = []
    gate = threading.Event()

    def loader(spec):
        calls.append(spec)
        gate.wait(5)
        return object()

    cache = ModelCache(loader, max_models=2)
    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("m"))) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    gate.set()
    for t in threads:
        t.join(5)
    assert calls == ["m"] and len(got) == 8 and all(g is got[0] for g in got)
    cache.get("a")
    cache.get("b")  # evicts "m", the least recently used
    assert cache.loaded() == ["a", "b"]


# ----------------------------------------------------------------------------------------------
# The command


def test_serve_command(monkeypatch, capsys, tmp_path):
    import argparse

    import uvicorn

    from polymodal.cli import serve

    parser = argparse.ArgumentParser(prog="polymodal")
    serve.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--db", str(tmp_path)])
    assert (args.host, args.port, args.max_upload_mb, args.api_key, args.index_root) == ("127.0.0.1", 8765, 20.0, None, [])

    runs = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: runs.append((app, kw)))
    monkeypatch.delenv("POLYMODAL_API_KEY", raising=False)
    assert serve.cmd_serve(args) == 0
    app, kw = runs[-1]
    assert kw["host"] == "127.0.0.1" and kw["port"] == 8765
    assert "warning" not in capsys.readouterr().err

    args = parser.parse_args(["serve", "--db", str(tmp_path), "--host", "0.0.0.0", "--index-root", str(tmp_path),
                              "--max-upload-mb", "1.5"])
    assert serve.cmd_serve(args) == 0
    err = capsys.readouterr().err
    assert "warning: serving on 0.0.0.0 without an API key" in err and "POLYMODAL_API_KEY" in err
    state = runs[-1][0].state.polymodal
    assert state.max_upload_bytes == int(1.5 * (1 << 20)) and state.index_roots == (str(tmp_path.resolve()),)

    monkeypatch.setenv("POLYMODAL_API_KEY", "from-env")
    assert serve.cmd_serve(args) == 0
    assert "warning" not in capsys.readouterr().err
    with TestClient(runs[-1][0], base_url=BASE) as c:
        assert c.get("/api/collections").status_code == 401
        assert c.get("/api/collections", headers={"X-API-Key": "from-env"}).status_code == 200
