"""Collections end to end through the Python API: incremental indexing, renames, pruning, bad
files, filters, combined queries, near duplicates and the exact -> approximate index cut-over.

The tiny random model keeps this fast; what is checked is the bookkeeping and the search
mechanics, against numpy's exact cosine ranking.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from polymodal.collections import open_collection
from polymodal.errors import CollectionNotFoundError, InvalidInputError, ModelMismatchError
from polymodal.store import Database, Filter

MODEL = "clip-tiny-random"


def make_image(path, seed: int, size=(40, 32)):
    """A distinct image per seed (distinct bytes, so distinct content hashes)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for i in range(6):
        make_image(root / f"img{i}.png", i)
    make_image(root / "sub" / "deep.png", 100)
    (root / "notes.txt").write_text("a note about a red bicycle leaning on a wall")
    (root / "readme.md").write_text("# Trip\nphotos from the lake")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)  # a JPEG header and nothing else
    (root / "data.bin").write_bytes(b"\x00\x01")  # not a known media type: ignored
    (root / ".hidden.png").write_bytes(b"")  # hidden: never looked at
    return root


@pytest.fixture
def coll(tmp_path):
    return open_collection("photos", db=tmp_path / "db", model=MODEL, create=True)


def stored(coll) -> dict[str, dict]:
    return {row["source"]: row for row in coll.stored.scan(["id", "source", "content_hash", "mtime", "kind"])}


def test_first_run_indexes_everything_and_reports_bad_files(coll, folder):
    report = coll.add([folder])
    assert report.new == 9 and report.items_embedded == 9  # 7 images + 2 text files
    assert [s.source for s in report.skipped] == [str(folder / "broken.jpg")]
    assert report.skipped[0].reason == "corrupt"
    assert report.ignored == 1
    assert report.count == len(coll) == 9
    rows = stored(coll)
    assert rows[str(folder / "notes.txt")]["kind"] == "text"
    assert len({r["id"] for r in rows.values()}) == 9
    item = coll.get(rows[str(folder / "img0.png")]["id"])
    assert (item["width"], item["height"], item["media_type"]) == (40, 32, "image/png")
    assert item["content_hash"] and item["size"] == os.path.getsize(folder / "img0.png")


def test_second_run_embeds_nothing(coll, folder):
    coll.add([folder])
    report = coll.add([folder])
    assert report.unchanged == 9 and report.new == report.changed == report.items_embedded == 0
    assert len(coll) == 9


def test_changed_touched_renamed_copied_and_deleted_files(coll, folder):
    coll.add([folder])
    before = stored(coll)
    vec_before = coll.stored.get(before[str(folder / "img2.png")]["id"], with_vector=True)["vector"]

    make_image(folder / "img1.png", 999)  # changed content
    os.utime(folder / "img0.png", (1_700_000_000, 1_700_000_000))  # touched only
    os.rename(folder / "img2.png", folder / "renamed.png")  # renamed
    shutil.copy(folder / "img3.png", folder / "copy-of-3.png")  # copied
    os.remove(folder / "img4.png")  # deleted

    report = coll.add([folder])
    assert (report.changed, report.touched, report.copied, report.moved, report.new) == (1, 1, 2, 1, 0)
    assert report.items_embedded == 1  # only the changed file went through the model
    assert report.missing == 1 and report.removed == 0  # the deleted file is kept without --prune
    rows = stored(coll)
    assert str(folder / "img2.png") not in rows  # a rename is followed, not duplicated
    assert rows[str(folder / "img1.png")]["content_hash"] != before[str(folder / "img1.png")]["content_hash"]
    assert rows[str(folder / "img0.png")]["mtime"] == 1_700_000_000
    moved = coll.stored.get(rows[str(folder / "renamed.png")]["id"], with_vector=True)["vector"]
    np.testing.assert_array_equal(moved, vec_before)  # the vector was reused, not recomputed
    assert str(folder / "img4.png") in rows

    report = coll.add([folder], prune=True)
    assert report.removed == 1 and str(folder / "img4.png") not in stored(coll)
    assert len({r["id"] for r in stored(coll).values()}) == len(coll)


def test_a_stopped_run_writes_whole_files_and_the_next_run_finishes(coll, folder):
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 2  # stop after a few files have been read

    report = coll.add([folder], should_stop=should_stop)
    assert report.cancelled and 0 < report.count < 9
    assert len({r["id"] for r in stored(coll).values()}) == report.count
    report = coll.add([folder])
    assert not report.cancelled and report.count == 9 and report.new == 9 - (report.count - report.new)


def test_indexing_one_folder_never_touches_another(coll, tmp_path, folder):
    other = tmp_path / "other"
    other.mkdir()
    make_image(other / "x.png", 7)
    coll.add([folder])
    coll.add([other], prune=True)
    assert len(coll) == 10  # folder's 9 items are not "gone" just because they are not under `other`


def test_model_mismatch_is_refused_with_the_fix(coll, tmp_path, folder):
    coll.add([folder])
    with pytest.raises(ModelMismatchError, match="reembed"):
        open_collection("photos", db=tmp_path / "db", model="lite")
    with pytest.raises(ModelMismatchError, match="dimension"):
        coll.stored.search(np.ones(7, np.float32))
    with pytest.raises(CollectionNotFoundError, match="photo"):
        open_collection("photo", db=tmp_path / "db")
    with pytest.raises(InvalidInputError, match="invalid collection name"):
        open_collection("../evil", db=tmp_path / "db", create=True)
    with pytest.raises(InvalidInputError, match="no such file"):
        coll.add([tmp_path / "missing"])
    assert len(coll) == 9  # nothing stored was lost


def test_search_ranks_as_exact_cosine_and_filters(coll, folder):
    coll.add([folder])
    emb = coll.embedder
    query = "a red bicycle"
    result = coll.search(query, k=20)
    ids, vectors = zip(*[(i, v) for batch_ids, batch in coll.stored.vectors() for i, v in zip(batch_ids, batch)])
    expected = np.asarray(vectors) @ emb.encode_texts([query])[0]
    order = [ids[i] for i in np.argsort(-expected)]
    assert [h["id"] for h in result.hits] == order
    np.testing.assert_allclose([h["score"] for h in result.hits], np.sort(expected)[::-1], atol=1e-5)
    assert result.exact

    only_images = coll.search(query, k=20, filter=Filter(kinds=["image"]))
    assert {h["kind"] for h in only_images.hits} == {"image"} and len(only_images.hits) == 7
    assert [h["source"] for h in coll.search(query, filter=Filter(path="deep*")).hits] == [str(folder / "sub" / "deep.png")]
    assert len(coll.search(query, filter=Filter(path=str(folder / "sub") + "/*")).hits) == 1
    assert {h["media_type"] for h in coll.search(query, k=20, filter=Filter(kinds=["text/*"])).hits} == {"text/plain", "text/markdown"}
    cut = sorted(h["score"] for h in result.hits)[4]
    assert all(h["score"] >= cut for h in coll.search(query, k=20, threshold=cut).hits)
    assert len(coll.search(query, k=20, threshold=cut).hits) == 5
    os.utime(folder / "img5.png", (1_600_000_000, 1_600_000_000))
    coll.add([folder])
    old = coll.search(query, k=20, filter=Filter(until=1_650_000_000)).hits
    assert [h["source"] for h in old] == [str(folder / "img5.png")]
    with pytest.raises(InvalidInputError, match="bad --where"):
        coll.search(query, filter=Filter(where="no_such_column > 1"))
    with pytest.raises(InvalidInputError, match="unknown media type"):
        coll.search(query, filter=Filter(kinds=["pictures"]))


def test_image_and_combined_queries(coll, folder):
    coll.add([folder])
    top = coll.search(image=str(folder / "img3.png"), k=1).hits[0]
    assert top["source"] == str(folder / "img3.png") and top["score"] == pytest.approx(1.0, abs=1e-5)
    emb = coll.embedder
    t = emb.encode_texts(["a lake"])[0]
    i = emb.encode_images([str(folder / "img3.png")])[0]
    mixed = (0.3 * t + 0.7 * i) / np.linalg.norm(0.3 * t + 0.7 * i)
    result = coll.search("a lake", image=str(folder / "img3.png"), text_weight=0.3, image_weight=0.7, k=3)
    expected = coll.stored.search(mixed, 3)
    assert [h["id"] for h in result.hits] == [h["id"] for h in expected]
    with pytest.raises(InvalidInputError, match="empty"):
        coll.search("   ")
    with pytest.raises(InvalidInputError, match="text query, an image query"):
        coll.search()


def test_near_duplicates(coll, folder, monkeypatch):
    shutil.copy(folder / "img0.png", folder / "img0-copy.png")
    Image.open(folder / "img1.png").save(folder / "img1-resaved.bmp")  # same pixels, other bytes
    coll.add([folder])
    groups = coll.duplicates(threshold=0.999)
    sets = [{os.path.basename(i["source"]) for i in g["items"]} for g in groups]
    assert {"img0.png", "img0-copy.png"} in sets and {"img1.png", "img1-resaved.bmp"} in sets
    assert all(g["max_score"] >= 0.999 for g in groups)
    import polymodal.tasks.search as search_task

    monkeypatch.setattr(search_task, "EXACT_DUPES_MAX_ROWS", 0)  # the streaming, neighbour-query path
    streamed = coll.duplicates(threshold=0.999)
    assert [{i["id"] for i in g["items"]} for g in streamed] == [{i["id"] for i in g["items"]} for g in groups]
    with pytest.raises(InvalidInputError):
        coll.duplicates(threshold=1.5)


def test_delete_by_id_and_source(coll, folder):
    coll.add([folder])
    rows = stored(coll)
    assert coll.delete([rows[str(folder / "img0.png")]["id"], "../not-an-id"]) == 1
    assert coll.delete(sources=[str(folder / "sub")]) == 1
    assert len(coll) == 7
    assert coll.add([folder]).new == 2  # deleted items come back on the next run


def test_index_cut_over_from_exact_to_approximate(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYMODAL_INDEX_MIN_ROWS", "600")
    db = Database(tmp_path / "db")
    stored_coll = db.create("vectors", model=MODEL, dim=32)
    from polymodal.store.schema import records_to_table

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 32))
    data = centres[rng.integers(0, 20, 1000)] + 0.3 * rng.normal(size=(1000, 32))
    data = (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)

    def add(lo, hi):
        records = [{"uri": f"/v/{i}", "kind": "image", "content_hash": str(i)} for i in range(lo, hi)]
        stored_coll.add(records_to_table(records, data[lo:hi], stored_coll.meta))
        stored_coll.optimize()

    add(0, 500)
    assert stored_coll.index_info() is None  # below the threshold: exact
    queries = data[:20] + 0.05 * rng.normal(size=(20, 32)).astype(np.float32)
    exact_before = [[h["uri"] for h in stored_coll.search(q, 10)] for q in queries]
    assert all(hits == [h["uri"] for h in stored_coll.search(q, 10, exact=True)] for q, hits in zip(queries, exact_before))

    add(500, 1000)
    info = stored_coll.index_info()
    assert info is not None and info["indexed_rows"] == 1000  # crossed the threshold: indexed
    truth = np.argsort(-(queries @ data[:1000].T), axis=1)[:, :10]
    recall = np.mean([len({f"/v/{j}" for j in t} & {h["uri"] for h in stored_coll.search(q, 10)}) / 10
                      for q, t in zip(queries, truth)])
    assert recall >= 0.9

    # a selective filter is answered exactly among the matching rows
    flt = Filter(where="uri LIKE '/v/1_'")  # /v/10 .. /v/19
    filtered = stored_coll.search(queries[3], 5, filter=flt)
    matching = np.arange(10, 20)
    order = matching[np.argsort(-(data[matching] @ queries[3]))][:5]
    assert [h["uri"] for h in filtered] == [f"/v/{j}" for j in order]
    np.testing.assert_allclose([h["score"] for h in filtered], np.sort(data[matching] @ queries[3])[::-1][:5], atol=1e-5)

    # rows added after the index was built are found before the next optimize folds them in
    extra = np.roll(data[:1], 1, axis=1)
    stored_coll.add(records_to_table([{"uri": "/v/new", "kind": "image"}], extra, stored_coll.meta))
    assert stored_coll.search(extra[0], 1)[0]["uri"] == "/v/new"
    stored_coll.optimize()
    assert stored_coll.index_info()["unindexed_rows"] == 0


def test_links_out_of_a_walked_folder_are_not_followed(coll, tmp_path, folder):
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    make_image(secret / "private.png", 55)
    os.symlink(secret / "private.png", folder / "link.png")
    os.symlink(folder / "img0.png", folder / "inside-link.png")  # a link within the folder is fine
    report = coll.add([folder])
    sources = set(stored(coll))
    assert str(secret / "private.png") not in sources and report.ignored == 2
    assert str(folder / "img0.png") in sources
    assert coll.add([secret / "private.png"]).new == 1  # named explicitly, it is taken
