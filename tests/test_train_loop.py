"""The training loop through its real entry points: `polymodal train` and `polymodal.train.train`.

A few synthetic pairs (coloured shapes named in their captions) and the tiny native CLIP keep each
run to a second or two. What is checked: the loss falls, logs and checkpoints are written, the
exported model loads through the resolver and `polymodal classify` accepts it, a run interrupted
mid-way and resumed ends with the same weights bit for bit, the schedule follows its formula, and
bad settings fail with a message.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from polymodal.cli.main import main
from polymodal.errors import CheckpointError, InvalidInputError
from polymodal.train import trainer as trainer_module
from polymodal.train.config import TrainConfig, parse_slice
from polymodal.train.schedule import lr_at
from polymodal.train.trainer import Trainer, train

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (230, 220, 30)}
SHAPES = ("circle", "square")


def write_pairs(folder, count: int = 32) -> str:
    """`count` images of a coloured shape on grey, and a captions.jsonl naming colour and shape."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        colour = list(COLOURS)[i % len(COLOURS)]
        shape = SHAPES[(i // len(COLOURS)) % len(SHAPES)]
        im = Image.new("RGB", (48, 40), tuple(int(v) for v in rng.integers(90, 160, 3)))
        d = ImageDraw.Draw(im)
        box = (8, 6, 40, 34)
        (d.ellipse if shape == "circle" else d.rectangle)(box, fill=COLOURS[colour])
        im.save(folder / f"{i:03d}.png")
        rows.append({"image": f"{i:03d}.png", "caption": f"a {colour} {shape}"})
    path = folder / "captions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def config(data, out, **overrides) -> TrainConfig:
    base = dict(data=data, out=str(out), model="scratch:tiny-test", batch_size=8, epochs=2, lr=2e-3, warmup_steps=2,
                workers=0, log_every=1, tensorboard=False, seed=0)
    base.update(overrides)
    return TrainConfig(**base)


def read_metrics(out) -> list[dict]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def trained_state(out) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "model" / "model.safetensors"))


@pytest.fixture
def pairs(tmp_path, clip_bpe):
    return write_pairs(tmp_path / "pairs")


def test_cli_train_learns_logs_checkpoints_and_exports(pairs, tmp_path):
    out = tmp_path / "run"
    code = main(["train", pairs, "--out", str(out), "--model", "scratch:tiny-test", "--batch-size", "8",
                 "--epochs", "12", "--lr", "3e-3", "--warmup-steps", "3", "--workers", "0", "--log-every", "1",
                 "--no-tensorboard", "--json"])
    assert code == 0
    rows = read_metrics(out)
    losses = [float(r["value"]) for r in rows if r["metric"] == "train/loss"]
    assert len(losses) == 12 * 4  # 32 pairs / 8 = 4 steps per epoch
    # the contrastive loss starts near log(8) (chance among 8) and must fall well below it
    assert losses[0] == pytest.approx(math.log(8), abs=0.3)
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4])
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["step-00000044.pt", "step-00000048.pt"]
    settings = json.loads((out / "config.json").read_text())
    assert settings["model"] == "scratch:tiny-test" and settings["world_size"] == 1

    # the exported model goes through the resolver and the classify command
    from polymodal.embed.resolve import load_embedder

    model = load_embedder(out / "model")
    assert model.encode_texts(["a red circle"]).shape == (1, 32)
    code = main(["classify", str(tmp_path / "pairs" / "000.png"), "--labels", "red circle,blue square",
                 "--model", str(out / "model"), "--json"])
    assert code == 0


def test_learned_model_matches_captions_better_than_chance(pairs, tmp_path):
    # 32 images, 8 distinct captions (4 images each, differing only in background): retrieval on
    # the training pairs themselves checks the evaluation path and that learning moves it.
    # Chance R@5 is 5/32; a model that learned colour and shape ranks the 4 look-alikes first.
    result = train(config(pairs, tmp_path / "run", epochs=12, lr=3e-3, val_data=pairs, log_every=10, eval_every=24))
    assert [e["step"] for e in result.evaluations] == [24, 48]
    assert result.evaluations[-1]["val/text_to_image_R@5"] >= 0.5


def test_interrupted_run_resumes_to_the_same_weights(pairs, tmp_path, monkeypatch):
    straight = train(config(pairs, tmp_path / "straight", epochs=3, save_every=2))
    assert straight.steps == 12

    # the second run is interrupted during its 7th optimizer step (mid-epoch, after a checkpoint
    # at step 6 and one completed step more is saved on the way out)
    calls = {"n": 0}
    original = Trainer._optimizer_step

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "_optimizer_step", flaky)
    with pytest.raises(KeyboardInterrupt):
        train(config(pairs, tmp_path / "broken", epochs=3, save_every=2))
    monkeypatch.setattr(Trainer, "_optimizer_step", original)
    assert (tmp_path / "broken" / "checkpoints" / "step-00000007.pt").is_file()

    resumed = train(config(pairs, tmp_path / "broken", epochs=3, save_every=2))
    assert resumed.resumed_from == 7 and resumed.steps == 12
    a, b = trained_state(tmp_path / "straight"), trained_state(tmp_path / "broken")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_refuses_other_settings(pairs, tmp_path):
    train(config(pairs, tmp_path / "run", epochs=1))
    with pytest.raises(CheckpointError, match="batch_size"):
        train(config(pairs, tmp_path / "run", epochs=2, batch_size=4))
    # --no-resume starts afresh in the same directory
    fresh = train(config(pairs, tmp_path / "run", epochs=1, batch_size=4, resume=False))
    assert fresh.resumed_from is None and fresh.steps == 8


def test_siglip_bf16_and_accumulation_run(pairs, tmp_path):
    result = train(config(pairs, tmp_path / "run", objective="siglip", precision="bf16", accum_steps=2, epochs=2))
    assert result.steps == 4  # 4 micro-batches per epoch / 2
    losses = [float(r["value"]) for r in read_metrics(tmp_path / "run") if r["metric"] == "train/loss"]
    assert all(math.isfinite(v) for v in losses)


def test_schedule_follows_warmup_and_cosine():
    base, total, warm = 1e-3, 100, 10
    assert lr_at(0, base_lr=base, total_steps=total, warmup_steps=warm) == pytest.approx(base / warm)
    assert lr_at(9, base_lr=base, total_steps=total, warmup_steps=warm) == pytest.approx(base)
    mid = 10 + 45
    assert lr_at(mid, base_lr=base, total_steps=total, warmup_steps=warm) == pytest.approx(base / 2)
    assert lr_at(100, base_lr=base, total_steps=total, warmup_steps=warm, min_lr_ratio=0.1) == pytest.approx(base * 0.1)
    s = 30
    expected = 0.5 * base * (1 + math.cos(math.pi * (s - warm) / (total - warm)))
    assert lr_at(s, base_lr=base, total_steps=total, warmup_steps=warm) == pytest.approx(expected)


def test_bad_settings_fail_with_a_message(pairs, tmp_path, capsys):
    code = main(["train", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "run"), "--model", "scratch:tiny-test"])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    with pytest.raises(InvalidInputError, match="batch_size"):
        TrainConfig(data=pairs, out=str(tmp_path), batch_size=0).check()
    with pytest.raises(InvalidInputError, match="START:STOP"):
        parse_slice("1-5")
    with pytest.raises(InvalidInputError, match="smaller than one batch"):
        train(config(pairs, tmp_path / "run2", batch_size=64))
    assert trainer_module.MAX_LOG_SCALE == pytest.approx(math.log(100))


def test_trains_from_webdataset_shards(pairs, tmp_path):
    import io
    import tarfile
    from pathlib import Path

    rows = [json.loads(line) for line in Path(pairs).read_text().splitlines()]
    shards = tmp_path / "shards"
    shards.mkdir()
    for s in range(2):
        with tarfile.open(shards / f"data-{s:03d}.tar", "w") as tar:
            for row in rows[s::2]:
                key = Path(row["image"]).stem
                for name, payload in ((f"{key}.png", (Path(pairs).parent / row["image"]).read_bytes()),
                                      (f"{key}.txt", row["caption"].encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    result = train(config(str(shards / "data-{000..001}.tar"), tmp_path / "run", epochs=2))
    assert result.steps == 8  # 32 samples in 2 shards, batches of 8, 2 epochs
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_export_name_registers_the_model_everywhere(pairs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POLYMODAL_MODELS", str(tmp_path / "models"))
    with pytest.raises(InvalidInputError, match="registered model name"):
        train(config(pairs, tmp_path / "bad", export_name="lite"))
    for _ in range(2):  # a re-run replaces its own export
        result = train(config(pairs, tmp_path / "run", epochs=1, export_name="shapes-v1", resume=False))
    assert result.model_name == "shapes-v1" and result.model_dir == str(tmp_path / "models" / "shapes-v1")
    assert main(["classify", str(tmp_path / "pairs" / "001.png"), "--labels", "red,green", "--model", "shapes-v1",
                 "--json"]) == 0
    capsys.readouterr()
    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(r["name"] == "shapes-v1" and r.get("exported") for r in rows)


def test_zeroshot_accuracy_is_evaluated_during_training(pairs, tmp_path):
    from pathlib import Path

    folders = tmp_path / "classes"
    for i, line in enumerate(Path(pairs).read_text().splitlines()[:8]):
        row = json.loads(line)
        label = row["caption"].split()[1]  # the colour
        (folders / label).mkdir(parents=True, exist_ok=True)
        (folders / label / f"{i}.png").write_bytes((Path(pairs).parent / row["image"]).read_bytes())
    result = train(config(pairs, tmp_path / "run", epochs=1, zeroshot=str(folders), zeroshot_per_class=2))
    accuracy = result.evaluations[-1]["zeroshot/top1"]
    assert 0.0 <= accuracy <= 1.0
    assert any(r["metric"] == "zeroshot/top1" for r in read_metrics(tmp_path / "run"))
