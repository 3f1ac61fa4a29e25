"""Kill -9 a real `polymodal index` process mid-run, several times: re-runs finish the job with
every file stored exactly once and the same vectors as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from polymodal.store import Database

MODEL = "clip-tiny-random"
FILES = 2000


def _index(folder, db, collection, env):
    return subprocess.Popen([sys.executable, "-m", "polymodal", "index", str(folder), "-c", collection,
                             "--db", str(db), "--model", MODEL, "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _vectors_by_source(db, name) -> dict[str, np.ndarray]:
    coll = Database(db).open(name)
    out = {}
    for row in coll.scan(["source", "vector"]):
        assert row["source"] not in out, f"{row['source']} stored twice"
        out[row["source"]] = np.asarray(row["vector"], np.float32)
    return out


def test_killed_ingestion_is_finished_by_the_next_run(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(FILES):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    db = tmp_path / "db"
    env = {**os.environ, "POLYMODAL_COMMIT_ROWS": "100"}

    kills = 0
    for attempt in range(3):
        proc = _index(folder, db, "killed", env)
        deadline = time.monotonic() + 120
        count = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                count = Database(db).open("killed").count()
            except Exception:  # noqa: BLE001 - the collection may not exist yet
                count = 0
            if count > (attempt + 1) * 100:  # some commits landed during this run (or an earlier one)
                break
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            after = Database(db).open("killed").count()
            assert after < FILES, "the run finished before it could be killed; give it more files"
        else:
            proc.communicate()
    assert kills >= 2

    proc = _index(folder, db, "killed", env)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()

    reference = _index(folder, db, "reference", env)
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err.decode()

    killed, clean = _vectors_by_source(db, "killed"), _vectors_by_source(db, "reference")
    assert len(killed) == len(clean) == FILES
    assert killed.keys() == clean.keys()
    worst = max(float(np.abs(killed[s] - clean[s]).max()) for s in clean)
    assert worst < 1e-5
