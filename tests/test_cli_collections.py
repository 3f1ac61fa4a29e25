"""`polymodal index / search / dupes / collections` through the real entry point."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from polymodal.cli.main import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("POLYMODAL_DB", str(tmp_path / "db"))
    monkeypatch.setenv("POLYMODAL_MODEL", "clip-tiny-random")


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "pics"
    root.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / f"p{i}.png")
    shutil.copy(root / "p0.png", root / "p0-again.png")
    (root / "caption.txt").write_text("two dogs on a beach")
    return root


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_index_search_and_json(capsys, folder):
    code, out, _ = run(capsys, "index", folder, "--json")
    report = json.loads(out)
    assert code == EXIT_OK and report["new"] == 6 and report["count"] == 6 and report["collection"] == "default"
    code, out, _ = run(capsys, "index", folder)
    assert code == EXIT_OK and "6 unchanged" in out

    code, out, _ = run(capsys, "search", "dogs on a beach", "-k", "3", "--json")
    result = json.loads(out)
    assert code == EXIT_OK and len(result["hits"]) == 3 and result["model"] == "clip-tiny-random"
    assert result["hits"][0]["score"] >= result["hits"][1]["score"]

    code, out, _ = run(capsys, "search", "--image", folder / "p2.png", "-k", "1", "--type", "image")
    assert code == EXIT_OK and out.split()[1] == str(folder / "p2.png")

    code, out, _ = run(capsys, "search", "x", "--type", "text", "--json")
    assert [h["text"] for h in json.loads(out)["hits"]] == ["two dogs on a beach"]

    queries = folder.parent / "queries.txt"
    queries.write_text("a dog\na cat\n")
    code, out, _ = run(capsys, "search", "--queries", queries, "-k", "2")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == EXIT_OK and [x["query"]["text"] for x in lines] == ["a dog", "a cat"]


def test_bad_files_give_exit_3_and_are_listed(capsys, folder):
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    code, out, err = run(capsys, "index", folder)
    assert code == EXIT_PARTIAL
    assert f"skipped {folder / 'bad.png'}: corrupt" in err
    assert "6 new" in out


def test_dupes_and_collections_commands(capsys, folder):
    run(capsys, "index", folder, "-c", "pics")
    code, out, _ = run(capsys, "dupes", "-c", "pics", "--threshold", "0.99999", "--json")
    groups = json.loads(out)["groups"]
    assert code == EXIT_OK and len(groups) == 1
    assert {i["source"] for i in groups[0]["items"]} == {str(folder / "p0.png"), str(folder / "p0-again.png")}

    code, out, _ = run(capsys, "collections", "list", "--json")
    assert [c["name"] for c in json.loads(out)["collections"]] == ["pics"]
    code, out, _ = run(capsys, "collections", "show", "pics", "--json")
    assert json.loads(out)["kinds"] == {"image": 5, "text": 1}

    code, _, err = run(capsys, "index", folder, "-c", "pics", "--model", "clip-vit-b-32")
    assert code == EXIT_USAGE and "collections reembed pics" in err

    code, out, err = run(capsys, "collections", "reembed", "pics", "pics2", "--model", "clip-tiny-random", "--json")
    assert code == EXIT_OK and json.loads(out)["count"] == 6

    code, _, err = run(capsys, "collections", "drop", "pics")
    assert code == EXIT_USAGE and "--yes" in err
    code, out, _ = run(capsys, "collections", "drop", "pics", "--yes")
    assert code == EXIT_OK
    code, _, err = run(capsys, "search", "x", "-c", "pics")
    assert code != EXIT_OK and "no collection 'pics'" in err and "pics2" in err


def test_usage_errors(capsys, folder):
    code, _, err = run(capsys, "search")
    assert code == EXIT_USAGE and "nothing to search for" in err
    run(capsys, "index", folder)
    code, _, err = run(capsys, "search", "x", "--since", "yesterday-ish")
    assert code == EXIT_USAGE and "cannot read time" in err
    code, _, err = run(capsys, "index", folder, "--metadata", "[1]")
    assert code == EXIT_USAGE and "JSON object" in err
    (folder / "data.bin").write_bytes(b"\x00")
    code, _, err = run(capsys, "index", folder / "data.bin")
    assert code == EXIT_PARTIAL and "data.bin: unsupported: no decoder reads this file type" in err
    code, _, err = run(capsys, "index", folder / "nope")
    assert code == EXIT_USAGE and "no such file" in err
