"""The Ray engine (polymodal.ingest.ray_engine) against the local engine, on a local Ray instance.

Ray starts once for the module (it takes seconds); each indexing run that has work starts one
actor pool, so the scenarios are grouped into as few runs as possible.
"""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("lance")

from polymodal.collections import open_collection  # noqa: E402

MODEL = "clip-tiny-random"


@pytest.fixture(scope="module")
def ray_local():
    started = not ray.is_initialized()
    if started:
        with warnings.catch_warnings():  # "lance is not fork-safe": Ray forks only to exec its processes
            warnings.simplefilter("ignore")
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    if started:
        ray.shutdown()


def _png(path, seed: int, size=(40, 32)) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for i in range(5):
        _png(root / f"img{i}.png", i)
    _png(root / "sub" / "deep.png", 99, size=(24, 60))
    (root / "note.txt").write_text("a red bicycle leaning on a wall\n")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def _vectors(coll) -> dict[str, np.ndarray]:
    out = {}
    for ids, vecs in coll.stored.vectors():
        out.update(zip(ids, vecs))
    return out


def _rows_by_source(coll) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in coll.stored.scan(["source"]):
        counts[row["source"]] = counts.get(row["source"], 0) + 1
    return counts


def _same(ray_coll, local_coll) -> None:
    a, b = _vectors(ray_coll), _vectors(local_coll)
    assert a.keys() == b.keys() and len(a) == len(ray_coll)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-5)


def test_ray_engine_matches_local_and_is_incremental(ray_local, folder, tmp_path, monkeypatch):
    db = tmp_path / "db"
    by_ray = open_collection("ray", db=db, model=MODEL, create=True)
    local = open_collection("local", db=db, model=MODEL, create=True)

    # 1. first run: everything new, the corrupt file skipped with its reason
    seen = []
    report = by_ray.add([folder], engine="ray", progress=False, metadata={"album": "trip"},
                        on_progress=lambda done, total: seen.append((done, total)))
    local.add([folder], progress=False, metadata={"album": "trip"})
    assert report.engine == "ray" and seen[-1] == (8, 8)
    assert (report.new, report.changed, report.copied, report.touched) == (7, 0, 0, 0)
    assert report.items_embedded == 7 and report.count == 7 == len(by_ray)
    assert [(s.source, s.reason) for s in report.skipped] == [(str(folder / "broken.jpg"), "corrupt")]
    _same(by_ray, local)
    stored = by_ray.stored
    assert stored.meta.model == MODEL and stored.dim == 32  # the schema's polymodal record survived the appends
    note = stored.get(next(r["id"] for r in stored.scan(["id", "kind"]) if r["kind"] == "text"))
    assert note["text"] == "a red bicycle leaning on a wall" and note["media_type"] == "text/plain"
    assert note["metadata"] == {"album": "trip"} and note["source"] == str(folder / "note.txt")

    # 2. incremental: one changed, one touched, one copied, one removed file; only the changed
    #    one is embedded, the unchanged ones are not even read
    _png(folder / "img0.png", 1000)  # new content under the same path
    st = os.stat(folder / "img1.png")
    os.utime(folder / "img1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    shutil.copy(folder / "img2.png", folder / "sub" / "copy-of-2.png")
    os.remove(folder / "img3.png")
    report = by_ray.add([folder], engine="ray", progress=False, prune=True)
    local.add([folder], progress=False, prune=True)
    assert report.unchanged == 4 and report.items_embedded == 1
    assert (report.new, report.changed, report.copied, report.touched, report.removed) == (0, 1, 1, 1, 1)
    assert [s.reason for s in report.skipped] == ["corrupt"]  # still reported, never stored
    assert len(by_ray) == 7
    rows = _rows_by_source(by_ray)
    assert rows[str(folder / "img0.png")] == 1  # the old version was deleted after the commit
    assert all(n == 1 for n in rows.values())
    _same(by_ray, local)
    img1 = next(r for r in by_ray.stored.scan(["source", "mtime"]) if r["source"] == str(folder / "img1.png"))
    assert img1["mtime"] == os.stat(folder / "img1.png").st_mtime_ns / 1e9

    # 3. a run killed between its append and the deletion of the old versions leaves twins;
    #    the next run's plan finds them and finalize keeps the newest
    from polymodal.ingest import ray_engine

    os.remove(folder / "broken.jpg")  # (a file never stored is read on every run: the last run needs no Ray)
    _png(folder / "img4.png", 2000)
    with monkeypatch.context() as m:
        m.setattr(ray_engine, "_stale_predicates", lambda pairs: iter(()))
        report = by_ray.add([folder], engine="ray", progress=False)
    assert report.changed == 1 and _rows_by_source(by_ray)[str(folder / "img4.png")] == 2
    healed = by_ray.add([folder], engine="ray", progress=False)
    assert healed.unchanged == healed.files_seen == 7 and healed.items_embedded == 0
    assert _rows_by_source(by_ray)[str(folder / "img4.png")] == 1
    local.add([folder], progress=False)
    _same(by_ray, local)


def test_stale_predicates_select_exact_versions():
    from polymodal.ingest.ray_engine import _stale_predicates

    pairs = [("a" * 16, 1.5), ("b" * 16, 1.5), ("c" * 16, 2.25)]
    (where,) = list(_stale_predicates(pairs))
    assert where == (f"(indexed_at = 1.5 AND id IN ('{'a' * 16}', '{'b' * 16}')) OR "
                     f"(indexed_at = 2.25 AND id IN ('{'c' * 16}'))")
    assert len(list(_stale_predicates([(f"{i:016x}", 1.0) for i in range(5000)], chunk=2048))) == 3
