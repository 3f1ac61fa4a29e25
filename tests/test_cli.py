"""The `polymodal` command through its real entry point, with a temporary home directory."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from polymodal.cli.main import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # the tiny random model keeps these tests fast; test_lite.py covers the default model
    monkeypatch.setenv("POLYMODAL_MODEL", "clip-tiny-random")


@pytest.fixture
def images(tmp_path):
    paths = []
    for name, colour in [("red.png", "red"), ("blue.jpg", "blue")]:
        Image.new("RGB", (64, 48), colour).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    return paths


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_json(capsys, images):
    code, out, _ = run(capsys, "classify", *images, "--labels", "cat,dog,car", "--json", "--templates", "simple")
    assert code == EXIT_OK
    data = json.loads(out)
    assert data["model"] == "clip-tiny-random" and data["failures"] == []
    assert [p["source"] for p in data["predictions"]] == images
    for p in data["predictions"]:
        assert {x["label"] for x in p["labels"]} == {"cat", "dog", "car"}
        assert sum(x["score"] for x in p["labels"]) == pytest.approx(1.0, abs=1e-4)


def test_classify_text_output_labels_file_and_top_k(capsys, images, tmp_path):
    (tmp_path / "labels.txt").write_text("cat\ndog\n\ncar\n")
    code, out, _ = run(capsys, "classify", images[0], "--labels-file", str(tmp_path / "labels.txt"), "--top-k", "2")
    assert code == EXIT_OK
    line = out.strip().splitlines()[0]
    assert line.startswith(images[0]) and line.count(",") == 1


def test_classify_reads_an_image_from_stdin(capsys, monkeypatch):
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), "green").save(buf, format="PNG")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(buf.getvalue())))
    code, out, _ = run(capsys, "classify", "-", "--labels", "a,b", "--json", "--templates", "simple")
    assert code == EXIT_OK and json.loads(out)["predictions"][0]["source"].startswith("<bytes")


def test_partial_failure_exit_status(capsys, images, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    code, out, err = run(capsys, "classify", images[0], str(tmp_path / "broken.jpg"), "--labels", "a,b")
    assert code == EXIT_PARTIAL
    assert "skipped" in err and "broken.jpg" in err
    code, out, _ = run(capsys, "classify", images[0], str(tmp_path / "broken.jpg"), "--labels", "a,b", "--json")
    assert code == EXIT_PARTIAL and json.loads(out)["failures"][0]["index"] == 1


@pytest.mark.parametrize("argv,code,message", [
    (["classify", "x.png", "--labels", ","], EXIT_USAGE, "empty"),
    (["classify", "x.png", "--labels", "a,b", "--model", "clip-vit-b32"], EXIT_ERROR, "Did you mean 'clip-vit-b-32'"),
    (["classify", "x.png", "--labels", "a,b", "--model", "clip-vit-b-32"], EXIT_ERROR, "huggingface-cli download"),
    (["embed", "--out", "v.npy"], EXIT_USAGE, "nothing to embed"),
    (["embed", "x.png", "--out", "v.csv"], EXIT_USAGE, ".npy or .parquet"),
])
def test_errors_name_the_fix(capsys, argv, code, message):
    got, _, err = run(capsys, *argv)
    assert got == code and message in err and err.startswith("error:")


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["classify"])
    assert exc.value.code == EXIT_USAGE
    assert main([]) == EXIT_USAGE


def test_embed_npy_with_sidecar(capsys, images, tmp_path):
    out_file = tmp_path / "out" / "v.npy"
    code, out, _ = run(capsys, "embed", *images, "--out", str(out_file), "--json")
    assert code == EXIT_OK
    vectors = np.load(out_file)
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    sidecar = json.loads((tmp_path / "out" / "v.npy.json").read_text())
    assert sidecar["model"] == "clip-tiny-random" and sidecar["sources"] == images
    assert json.loads(out)["count"] == 2


def test_embed_texts_to_parquet_from_stdin(capsys, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    monkeypatch.setattr(sys, "stdin", io.StringIO("a cat\n\na dog\n"))
    code, _, _ = run(capsys, "embed", "--texts-file", "-", "--text", "a car", "--out", str(tmp_path / "t.parquet"))
    assert code == EXIT_OK
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.column("source").to_pylist() == ["a car", "a cat", "a dog"]
    assert json.loads(table.schema.metadata[b"polymodal"])["model"] == "clip-tiny-random"
    assert np.asarray(table.column("vector").to_pylist()).shape == (3, 32)


def test_models_list_and_show(capsys):
    code, out, _ = run(capsys, "models", "list", "--json")
    rows = json.loads(out)
    assert code == EXIT_OK and {"clip-vit-b-32", "clip-tiny-random", "siglip-base-16"} <= {r["name"] for r in rows}
    assert all(r["quality"] and r["license"] for r in rows)
    code, out, _ = run(capsys, "models", "list")
    assert "clip-tiny-random (default)" in out  # $POLYMODAL_MODEL decides the default
    code, out, _ = run(capsys, "models", "show", "clip-tiny-random", "--json")
    assert json.loads(out)["dim"] == 32


def test_models_convert_then_use(capsys, tmp_path, images):
    code, _, _ = run(capsys, "models", "convert", "clip-tiny-random", str(tmp_path / "m"))
    assert code == EXIT_OK
    code, out, _ = run(capsys, "classify", images[0], "--labels", "a,b", "--model", str(tmp_path / "m"), "--json")
    assert code == EXIT_OK and json.loads(out)["model"] == "clip-tiny-random"


def test_demo(capsys):
    code, out, _ = run(capsys, "demo", "--json")
    result = json.loads(out)
    assert code == EXIT_OK and len(result["classify"]["predictions"]) == 5 and result["index"]["count"] == 5
    assert [len(s["hits"]) for s in result["search"]] == [2, 2, 2]


def test_eval_commands(capsys, tmp_path, images):
    for cls in ("red", "blue"):
        (tmp_path / "classes" / cls).mkdir(parents=True)
        Image.new("RGB", (32, 32), cls).save(tmp_path / "classes" / cls / "a.png")
    code, out, _ = run(capsys, "eval", "zeroshot", str(tmp_path / "classes"), "--templates", "simple", "--json")
    result = json.loads(out)
    assert code == EXIT_OK and result["images"] == 2 and set(result["per_class"]) == {"red", "blue"}
    lines = [json.dumps({"image": name, "caption": f"a {name.split('.')[0]} square"}) for name in ("red.png", "blue.jpg")]
    (tmp_path / "captions.jsonl").write_text("\n".join(lines))
    code, out, _ = run(capsys, "eval", "retrieval", str(tmp_path / "captions.jsonl"), "--images", "0:2", "--json")
    result = json.loads(out)
    assert code == EXIT_OK and result["images"] == 2 and result["text_to_image"]["R@5"] == 1.0
    code, _, err = run(capsys, "eval", "retrieval", str(tmp_path / "captions.jsonl"), "--images", "a:b")
    assert code == EXIT_USAGE and "START:STOP" in err


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "polymodal", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "classify" in out.stdout and "models" in out.stdout


def test_cli_reference_is_current():
    from pathlib import Path

    from polymodal.cli.reference import render

    docs = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
    assert docs.read_text() == render(), "docs/cli.md is stale: python -m polymodal.cli.reference > docs/cli.md"
