"""`polymodal guard attacks` and `polymodal guard probe` against a stand-in vision chat server.

The stand-in speaks the OpenAI chat-completions protocol on 127.0.0.1 (started and stopped here).
It plays a model that obeys some hiding techniques and not others: it recognises each attack image
by its bytes and answers with the canary for the techniques it is told to follow. The probe must
report exactly those, and send the documented request shape.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from polymodal.cli.main import main
from polymodal.guard.probe import EndpointError, canary_in, completions_url, probe

OBEYED = {"visible", "document", "tiled"}


class StandIn:
    def __init__(self, answers: dict[str, str], api_key: str | None = None):
        self.answers = answers  # sha256 of the PNG -> the answer to give
        self.api_key = api_key
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if outer.api_key and self.headers.get("Authorization") != f"Bearer {outer.api_key}":
                    self.send_response(401)
                    self.end_headers()
                    self.wfile.write(b'{"error": "bad key"}')
                    return
                parts = body["messages"][0]["content"]
                url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
                png = base64.b64decode(url.split(",", 1)[1])
                answer = outer.answers.get(hashlib.sha256(png).hexdigest(), "A photo.")
                out = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def attack_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("attacks")
    assert main(["guard", "attacks", "--out", str(out), "--seed", "3", "--json"]) == 0
    return out


def answers_for(folder: Path) -> dict[str, str]:
    rows = json.loads((folder / "manifest.json").read_text())
    answers = {}
    for row in rows:
        if not row["path"]:
            continue
        digest = hashlib.sha256((folder / row["path"]).read_bytes()).hexdigest()
        if row["technique"] in OBEYED:
            # one of them answers with the canary spaced out and in lower case: still followed
            canary = row["canary"].lower().replace("-", " ") if row["technique"] == "tiled" else row["canary"]
            answers[digest] = f"Sure. {canary}"
        else:
            answers[digest] = "A street scene with a car."
    return answers


def test_attacks_writes_one_image_per_technique_with_a_manifest(attack_dir):
    rows = json.loads((attack_dir / "manifest.json").read_text())
    assert {r["technique"] for r in rows} == {"visible", "small_corner", "low_contrast", "rotated", "tiled",
                                              "document", "qr", "metadata"}
    made = [r for r in rows if r["path"]]
    assert len({r["canary"] for r in made}) == len(made)  # a fresh canary per image
    for r in made:
        assert (attack_dir / r["path"]).is_file() and r["canary"] in r["instruction"]


def test_probe_reports_exactly_the_techniques_the_model_followed(attack_dir, capsys):
    with StandIn(answers_for(attack_dir), api_key="k-123") as server:
        code = main(["guard", "probe", "--endpoint", server.url, "--attacks", str(attack_dir), "--api-key", "k-123",
                     "--model", "vlm-x", "--json"])
        report = json.loads(capsys.readouterr().out)
        assert code == 0
        assert set(report["followed"]) == OBEYED
        assert report["answered"] == len(server.requests) and report["errors"] == 0
        assert report["attack_success_rate"] == pytest.approx(len(OBEYED) / report["answered"])
        # the documented request shape: one user message, a text part and a PNG data URL
        first = server.requests[0]
        assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer k-123"
        assert first["body"]["model"] == "vlm-x"
        kinds = [p["type"] for p in first["body"]["messages"][0]["content"]]
        assert kinds == ["text", "image_url"]
        assert first["body"]["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_probe_errors_name_the_cause(attack_dir, tmp_path):
    from polymodal.cli.guard import _load_cases

    cases = _load_cases(attack_dir)
    with StandIn({}, api_key="right") as server:
        with pytest.raises(EndpointError, match="HTTP 401.*api-key"):
            probe(server.url, cases[:2], api_key="wrong")
    with pytest.raises(EndpointError, match="cannot reach"):
        probe(server.url, cases[:1], timeout=2)  # the server is stopped now
    assert main(["guard", "probe", "--endpoint", "ftp://x", "--attacks", str(attack_dir)]) == 2
    assert main(["guard", "probe", "--endpoint", "http://127.0.0.1:9", "--attacks", str(tmp_path)]) == 2


def test_helpers():
    assert completions_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert completions_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert completions_url("http://h:1/api/chat/completions") == "http://h:1/api/chat/completions"
    assert canary_in("the code is zx 4821-qp.", "ZX-4821-QP")
    assert not canary_in("the code is ZX-4821", "ZX-4821-QP")
