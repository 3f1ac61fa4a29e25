"""The web page in a real browser: the real server (uvicorn, on 127.0.0.1 and a free port) and
Debian's Chromium driven headless by Playwright (never a downloaded browser)."""

from __future__ import annotations

import base64
import re
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KEY = "web-test-key"
MODEL = "clip-tiny-random"
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220), "yellow": (240, 220, 40)}

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); the browser test needs it", allow_module_level=True)
pytest.importorskip("playwright.sync_api")
pytest.importorskip("uvicorn")
pytest.importorskip("lancedb")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn
    from PIL import Image

    from polymodal.collections import open_collection
    from polymodal.serve import ModelCache, create_app

    root = tmp_path_factory.mktemp("web")
    images = root / "images"
    images.mkdir()
    for name, colour in COLOURS.items():
        image = Image.new("RGB", (96, 72), colour)
        image.paste((250, 250, 250), (24, 18, 48, 36))
        image.save(images / f"{name}.png")
    (images / "note.txt").write_text("a short note about red apples\n")
    photos = open_collection("photos", db=root / "db", model=MODEL, create=True)
    photos.add([images], progress=False)
    cache = ModelCache()
    cache.put(MODEL, photos.embedder)

    port = _free_port()
    app = create_app(root / "db", api_key=KEY, model_cache=cache)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "port": port, "images": images}
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def _raw_get(port: int, target: str) -> int:
    """Status of a GET sent byte for byte (no client-side clean-up of '..')."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {KEY}\r\nConnection: close\r\n\r\n".encode())
        head = s.recv(4096).decode("latin-1")
    return int(head.split(" ", 2)[1])


def test_literal_dot_dot_reaches_nothing(server):
    for target in ("/api/collections/photos/items/../../../../etc/passwd", "/api/collections/photos/items/..",
                   "/api/collections/photos/items/../thumbnail", "/static/../app.py", "/static/../../../etc/passwd",
                   "/api/collections/../../etc/items/0123456789abcdef/file"):
        assert _raw_get(server["port"], target) == 404, target


def test_search_page(server, browser, tmp_path, capsys):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(15_000)
    problems, urls = [], []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and "401" not in msg.text and problems.append(msg.text))
    page.on("request", lambda request: urls.append(request.url))
    try:
        page.goto(server["url"] + "/")

        # The server wants a key: the page asks for it and keeps it in localStorage.
        expect(page.locator("#key-dialog")).to_be_visible()
        page.fill("#key-input", KEY)
        page.click("#key-save")
        expect(page.locator("#collection")).to_have_value("photos")
        assert page.evaluate("localStorage.getItem('polymodal.apiKey')") == KEY

        # A text query: every item comes back, images with thumbnails (blob: URLs), all with scores.
        page.fill("#q", "a red square")
        page.press("#q", "Enter")
        cards = page.locator("#results .card")
        expect(cards).to_have_count(5)
        page.wait_for_function("""() => {
            const imgs = [...document.querySelectorAll('#results img.thumb')];
            return imgs.length === 4 && imgs.every(i => i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:'));
        }""")
        names = cards.locator(".name").all_text_contents()
        assert sorted(names) == ["blue.png", "green.png", "note.txt", "red.png", "yellow.png"]
        scores = [float(s) for s in cards.locator(".score").all_text_contents()]
        assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
        expect(page.locator("#status")).to_contain_text("5 result(s)")

        # An image query through the file picker: the same image comes first, with score 1.
        page.fill("#q", "")
        page.set_input_files("#file", str(server["images"] / "blue.png"))
        expect(cards.first.locator(".name")).to_have_text("blue.png")
        expect(cards.first.locator(".score")).to_have_text("1.000")
        expect(page.locator("#query-image")).to_be_visible()

        # ... and through drag and drop.
        data = base64.b64encode((server["images"] / "green.png").read_bytes()).decode()
        transfer = page.evaluate_handle("""(b64) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], 'green.png', {type: 'image/png'}));
            return dt;
        }""", data)
        page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
        expect(page.locator("#query-name")).to_have_text("green.png")
        expect(cards.first.locator(".name")).to_have_text("green.png")
        expect(cards.first.locator(".score")).to_have_text("1.000")
        page.wait_for_function("""() => [...document.querySelectorAll('#results img.thumb')]
            .every(i => i.complete && i.naturalWidth > 0)""")

        # Item details: title, metadata fields, a larger image.
        cards.first.click()
        details = page.locator("#details")
        expect(details).to_be_visible()
        expect(page.locator("#details-title")).to_have_text("green.png")
        fields = page.locator("#details-fields").inner_text()
        assert str(server["images"] / "green.png") in fields and "96 × 72 px" in fields and "image/png" in fields
        page.wait_for_function("() => document.querySelector('#details-image').naturalWidth > 0")
        expect(cards.first).to_have_attribute("aria-pressed", "true")

        shot = tmp_path / "polymodal-web.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        with capsys.disabled():
            print(f"\nscreenshot of the search page: {shot}")

        # A text item's details show its text.
        page.click("#clear-image")
        page.fill("#q", "apples")
        page.click("#options summary")
        page.select_option("#f-type", "text")
        page.click("#go")
        expect(cards).to_have_count(1)
        cards.first.click()
        expect(page.locator("#details-text")).to_contain_text("red apples")

        assert not problems, problems
        assert all(re.match(rf"(http://127\.0\.0\.1:{server['port']}/|blob:|data:)", u) for u in urls), urls
        assert not any(KEY in u for u in urls), "the API key must never be put in a URL"
    finally:
        page.close()


def test_wrong_key_asks_again(server, browser):
    from playwright.sync_api import expect

    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(server["url"] + "/")
        page.evaluate("localStorage.setItem('polymodal.apiKey', 'not-the-key')")
        page.reload()
        expect(page.locator("#key-dialog")).to_be_visible()
        expect(page.locator("#key-error")).to_contain_text("wrong API key")
        page.fill("#key-input", KEY)
        page.click("#key-save")
        expect(page.locator("#collection")).to_have_value("photos")
    finally:
        context.close()


def test_check_an_image_page(server, browser, tmp_path, capsys):
    """The "Check an image" view: an injection drawn into an image and a model answer that obeyed it
    give a "block" verdict, its reason, the text outlined on the image and listed in the table."""
    pytest.importorskip("rapidocr_onnxruntime")
    from playwright.sync_api import expect

    from polymodal.guard.attacks import generate_attacks

    case = next(c for c in generate_attacks(tmp_path / "attacks", seed=5) if c.technique == "visible")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(15_000)
    problems = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and "401" not in msg.text and problems.append(msg.text))
    try:
        page.goto(server["url"] + "/")
        page.evaluate(f"localStorage.setItem('polymodal.apiKey', {KEY!r})")
        page.goto(server["url"] + "/#check")
        page.reload()  # a fresh load of the view's address opens it, with the key already saved
        expect(page.locator("#guard-view")).to_be_visible()
        expect(page.locator("#search-view")).to_be_hidden()
        expect(page.locator("#tab-guard")).to_have_attribute("aria-current", "page")

        page.click("#guard-go")  # nothing chosen yet: a message, no request
        expect(page.locator("#guard-status")).to_contain_text("Choose an image first")

        page.set_input_files("#guard-file", case.path)
        page.fill("#guard-prompt", "What is in this picture?")
        page.fill("#guard-answer", f"A street scene. {case.canary}")
        page.click("#guard-go")
        # The first analysis loads the OCR engine and the default model: allow for a loaded machine.
        expect(page.locator("#guard-verdict")).to_have_attribute("data-verdict", "block", timeout=180_000)
        expect(page.locator("#guard-reasons")).to_contain_text("carries out an instruction")
        expect(page.locator("#guard-status")).to_contain_text("Checked in")
        assert page.locator("#guard-boxes rect.flagged").count() >= 1
        rows = page.locator("#guard-findings tbody tr.flagged")
        assert rows.count() >= 1
        found = "".join(ch for ch in " ".join(rows.all_text_contents()) if ch.isalnum())
        assert "".join(ch for ch in case.canary if ch.isalnum()) in found
        page.wait_for_function("() => document.querySelector('#guard-image').naturalWidth > 0")
        # The outline sits over the image: the SVG spans the displayed image exactly.
        img, svg = page.locator("#guard-image").bounding_box(), page.locator("#guard-boxes").bounding_box()
        assert all(abs(img[k] - svg[k]) < 1.5 for k in ("x", "y", "width", "height")), (img, svg)
        shot = tmp_path / "polymodal-web-check.png"
        page.screenshot(path=str(shot), full_page=True)
        with capsys.disabled():
            print(f"\nscreenshot of the check-an-image page: {shot}")

        page.click("#tab-search")  # back to search; the view and the address follow
        expect(page.locator("#search-view")).to_be_visible()
        expect(page.locator("#guard-view")).to_be_hidden()
        assert not page.url.endswith("#check")
        assert not problems, problems
    finally:
        page.close()
