"""Training data: caption files, class folders, WebDataset shards and the seeded, resumable loader."""

from __future__ import annotations

import io
import itertools
import json
import multiprocessing
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from tests.conftest import shared_data
from polymodal.errors import InvalidInputError
from polymodal.media import load_image
from polymodal.train.augment import center_view
from polymodal.train.data import (BadSampleWarning, PairDataset, ShardStream, TrainLoader, expand_shards,
                                  make_loader)

S = 16  # view size of the synthetic tests: small keeps them fast


def noise_jpeg(seed: int, size=(48, 36)) -> bytes:
    """A JPEG of random pixels: every crop of it is different, so pixel equality means something."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def write_pairs(folder: Path, n: int, captions_per_image: int = 2) -> Path:
    """n images under folder/img/ and a captions.jsonl naming them by relative path."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        (folder / "img" / f"{i:03d}.jpg").write_bytes(noise_jpeg(i, (40 + i % 7, 30 + i % 5)))
        lines += [json.dumps({"image": f"img/{i:03d}.jpg", "caption": f"image {i} caption {k}"})
                  for k in range(captions_per_image)]
    path = folder / "captions.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def epoch_batches(data, **kwargs) -> list[dict]:
    args = {"batch_size": 4, "image_size": S, "seed": 5, "epoch": 0, "workers": 0} | kwargs
    return list(make_loader(data, **args))


def assert_same_batches(a: list[dict], b: list[dict]):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x["index"], y["index"])
        assert x["captions"] == y["captions"]
        assert torch.equal(x["pixels"], y["pixels"])
        assert torch.equal(x["sizes"], y["sizes"])


# ----------------------------------------------------------------------------------------------
# Caption files and class folders


def test_jsonl_relative_paths_several_captions_and_key_aliases(tmp_path):
    path = tmp_path / "sub" / "caps.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join([
        json.dumps({"image": "a.jpg", "caption": "first of a"}),
        json.dumps({"file": "b.jpg", "text": "only b"}),
        "",
        json.dumps({"image": "a.jpg", "caption": "second of a"}),
        json.dumps({"image": "/abs/c.jpg", "caption": "absolute c"}),
    ]), encoding="utf-8")
    data = PairDataset.from_file(path)
    folder = str(path.parent)
    assert data.images == [f"{folder}/a.jpg", f"{folder}/b.jpg", "/abs/c.jpg"]
    assert len(data) == 3  # one sample per unique image
    assert data[0].captions == ("first of a", "second of a")
    everything = PairDataset.from_file(path, captions="all")
    assert [(p.image.rsplit("/", 1)[1], p.captions) for p in everything] == [
        ("a.jpg", ("first of a",)), ("b.jpg", ("only b",)), ("a.jpg", ("second of a",)), ("c.jpg", ("absolute c",))]
    assert [p.image for p in PairDataset.from_file(path, images=slice(1, 3))] == [f"{folder}/b.jpg", "/abs/c.jpg"]


def test_csv_and_tab_separated_files_with_header_aliases(tmp_path):
    comma = tmp_path / "pairs.csv"
    comma.write_text('image,caption\nx.jpg,"a dog, running"\ny.jpg,a cat\nx.jpg,a dog again\n', encoding="utf-8")
    data = PairDataset.from_file(comma)
    assert data.images == [str(tmp_path / "x.jpg"), str(tmp_path / "y.jpg")]
    assert data[0].captions == ("a dog, running", "a dog again")
    # open_clip's layout: tab-separated despite the .csv name, columns filepath and title
    tabbed = tmp_path / "openclip.csv"
    tabbed.write_text("filepath\ttitle\nimgs/p.png\ta red, round ball\n", encoding="utf-8")
    pair = PairDataset.from_file(tabbed)[0]
    assert pair.image == str(tmp_path / "imgs" / "p.png") and pair.captions == ("a red, round ball",)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("text\tfile\nhello\th.jpg\n", encoding="utf-8")
    assert PairDataset.from_file(tsv)[0].captions == ("hello",)


@pytest.mark.parametrize("name,content,match", [
    ("bad.jsonl", '{"image": "a.jpg", "caption": "ok"}\n\n{"image": "b.jpg", "caption": \n', r"bad\.jsonl:3: not valid JSON"),
    ("bad.jsonl", '{"image": "a.jpg", "caption": "ok"}\n{"image": "b.jpg"}\n', r"bad\.jsonl:2: the caption is missing"),
    ("bad.jsonl", '{"image": "a.jpg", "caption": "ok"}\n["b.jpg", "x"]\n', r"bad\.jsonl:2: expected a JSON object"),
    ("bad.jsonl", '{"image": "", "caption": "ok"}\n', r"bad\.jsonl:1: the image path is missing"),
    ("bad.csv", "image,caption\na.jpg,fine\nb.jpg,\n", r"bad\.csv:3: the caption is missing"),
    ("bad.csv", "image,caption\na.jpg,fine\nb.jpg\n", r"bad\.csv:3: the caption is missing"),
    ("bad.csv", "picture,caption\na.jpg,fine\n", r"bad\.csv: the header \['picture', 'caption'\] needs an image column"),
    ("bad.txt", "a.jpg fine\n", r"unknown captions file type '\.txt'"),
])
def test_bad_rows_name_the_file_and_line(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInputError, match=match):
        PairDataset.from_file(path)


def test_bad_arguments_of_from_file(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        PairDataset.from_file(tmp_path / "nothing.jsonl")
    path = write_pairs(tmp_path, 3, 1)
    with pytest.raises(InvalidInputError, match="captions='some'"):
        PairDataset.from_file(path, captions="some")
    with pytest.raises(InvalidInputError, match="must be a slice"):
        PairDataset.from_file(path, images=(0, 2))
    with pytest.raises(InvalidInputError, match="is empty"):
        PairDataset.from_file(path, images=slice(5, 9))


@pytest.mark.parametrize("folder,images", [("flickr8k-subset", slice(600, 800)), ("coco-mini", slice(10, 30)),
                                           ("coco-mini", None)])
def test_image_slices_match_the_retrieval_evaluation(folder, images):
    from polymodal.eval.retrieval import read_captions

    path = shared_data(f"{folder}/captions.jsonl")
    reference = read_captions(path, images)
    every = PairDataset.from_file(path, images=images, captions="all")
    assert [p.image for p in every] == [reference.images[i] for i in reference.caption_image]
    assert [p.captions[0] for p in every] == reference.captions
    per_image = PairDataset.from_file(path, images=images)
    assert per_image.images == reference.images
    for i, pair in enumerate(per_image):
        assert list(pair.captions) == [c for c, j in zip(reference.captions, reference.caption_image) if j == i]


def test_class_folders_become_pairs_from_templates(tmp_path):
    for name, n in (("cat", 2), ("dog_house", 3)):
        (tmp_path / name).mkdir()
        for i in range(n):
            (tmp_path / name / f"{i}.png").write_bytes(b"")  # contents are not read here
        (tmp_path / name / "notes.txt").write_text("not an image")
    data = PairDataset.from_class_folders(tmp_path, templates=("a photo of a {}.", "art of the {}."))
    assert data.classes == ["cat", "dog_house"] and data.labels == [0, 0, 1, 1, 1]
    assert len(data) == 5
    assert data[4].image == str(tmp_path / "dog_house" / "2.png")
    assert data[4].captions == ("a photo of a dog house.", "art of the dog house.")
    assert len(PairDataset.from_class_folders(tmp_path, templates=("{}",), captions="all")) == 5
    assert len(PairDataset.from_class_folders(tmp_path, templates=("a {}", "the {}"), captions="all")) == 10
    with pytest.raises(InvalidInputError, match="has no '{}'"):
        PairDataset.from_class_folders(tmp_path, templates=("a photo",))
    with pytest.raises(InvalidInputError, match="no class folders"):
        PairDataset.from_class_folders(tmp_path / "cat")


# ----------------------------------------------------------------------------------------------
# The loader over a PairDataset


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> PairDataset:
    return PairDataset.from_file(write_pairs(tmp_path_factory.mktemp("pairs"), 27))


@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("epoch", [0, 3])
def test_rank_batches_together_are_the_single_process_batch(pairs, epoch, drop_last):
    single = epoch_batches(pairs, batch_size=8, epoch=epoch, drop_last=drop_last)
    ranks = [epoch_batches(pairs, batch_size=4, epoch=epoch, drop_last=drop_last, rank=r, world_size=2) for r in (0, 1)]
    # 27 samples: 3 full global batches of 8, and without drop_last a last one of 3 split 2 + 1
    assert len(single) == len(ranks[0]) == len(ranks[1]) == (3 if drop_last else 4)
    for whole, part0, part1 in zip(single, *ranks):
        joined = {"index": torch.cat([part0["index"], part1["index"]]),
                  "captions": part0["captions"] + part1["captions"],
                  "pixels": torch.cat([part0["pixels"], part1["pixels"]]),
                  "sizes": torch.cat([part0["sizes"], part1["sizes"]])}
        assert_same_batches([whole], [joined])
    assert single[-1]["pixels"].shape == ((8 if drop_last else 3), S, S, 3)
    assert single[0]["pixels"].dtype == torch.uint8 and single[0]["sizes"].dtype == torch.int64
    seen = torch.cat([b["index"] for b in single]).tolist()
    assert len(set(seen)) == len(seen) == (24 if drop_last else 27)


def test_epochs_are_permutations_seeded_by_seed_and_epoch(pairs):
    order = lambda **kw: torch.cat([b["index"] for b in epoch_batches(pairs, batch_size=9, **kw)]).tolist()  # noqa: E731
    assert sorted(order(epoch=0)) == list(range(27))
    assert order(epoch=0) == order(epoch=0)
    assert order(epoch=0) != order(epoch=1)
    assert order(epoch=0) != order(epoch=0, seed=6)


def test_start_batch_yields_exactly_the_rest_of_the_epoch(pairs):
    full = epoch_batches(pairs, epoch=2)
    loader = make_loader(pairs, batch_size=4, image_size=S, seed=5, epoch=2, start_batch=4, workers=0)
    assert len(loader) == len(full) == 6  # len() is the whole epoch, not what is left
    assert_same_batches(list(loader), full[4:])
    assert list(make_loader(pairs, batch_size=4, image_size=S, seed=5, epoch=2, start_batch=6, workers=0)) == []
    with pytest.raises(InvalidInputError, match="start_batch 7 is past the end of the epoch"):
        make_loader(pairs, batch_size=4, image_size=S, seed=5, epoch=2, start_batch=7)


def test_worker_processes_do_not_change_the_batches(pairs):
    assert_same_batches(epoch_batches(pairs, epoch=1, workers=2), epoch_batches(pairs, epoch=1, workers=0))


def test_caption_and_crop_come_from_seed_epoch_and_index(pairs):
    first = {int(i): (c, p) for b in epoch_batches(pairs, batch_size=9) for i, c, p in
             zip(b["index"], b["captions"], b["pixels"])}
    # another batch size reorders nothing that is drawn per sample
    other = {int(i): (c, p) for b in epoch_batches(pairs, batch_size=3) for i, c, p in
             zip(b["index"], b["captions"], b["pixels"])}
    assert first.keys() == other.keys()
    assert all(first[i][0] == other[i][0] and torch.equal(first[i][1], other[i][1]) for i in first)
    for i, (caption, _) in first.items():
        assert caption in pairs[i].captions
    later = {int(i): c for b in epoch_batches(pairs, batch_size=9, epoch=1) for i, c in zip(b["index"], b["captions"])}
    assert sum(later[i] != first[i][0] for i in first) >= 5  # a fresh draw each epoch (expected about half)


def test_crop_scale_sets_the_random_resized_crops_area_range(pairs):
    """--crop-scale MIN: each view is torchvision's random resized crop with scale (MIN, 1), drawn
    from the sample's own generator (after its caption draw), as augment.py implements it."""
    from polymodal.train.augment import random_resized_crop

    batches = epoch_batches(pairs, crop_scale=0.35)
    for b in batches:
        for i, pixels in zip(b["index"].tolist(), b["pixels"]):
            rng = np.random.default_rng((5, 0, i))
            if len(pairs[i].captions) > 1:
                rng.integers(len(pairs[i].captions))
            image = load_image(pairs[i].image, draft_size=(2 * S, 2 * S))
            assert np.array_equal(pixels.numpy(), random_resized_crop(image, S, rng, scale=(0.35, 1.0)))
    default = {int(i): p for b in epoch_batches(pairs) for i, p in zip(b["index"], b["pixels"])}
    wide = {int(i): p for b in batches for i, p in zip(b["index"], b["pixels"])}
    assert sum(not torch.equal(default[i], wide[i]) for i in wide) >= len(wide) // 2
    for bad in (0, 1.5, "0.5", True):
        with pytest.raises(InvalidInputError, match="crop_scale must be a number in"):
            make_loader(pairs, batch_size=4, image_size=S, seed=0, epoch=0, crop_scale=bad)


def test_eval_view_and_decoded_sizes(pairs):
    batch = epoch_batches(pairs, augment=False)[0]
    for i, pixels, size in zip(batch["index"], batch["pixels"], batch["sizes"]):
        image = load_image(pairs[int(i)].image)
        assert tuple(size.tolist()) == image.size  # small files: no JPEG draft reduction
        assert np.array_equal(pixels.numpy(), center_view(image, S))


def test_a_missing_image_is_reported_once_and_replaced(tmp_path):
    path = write_pairs(tmp_path, 10, 1)
    missing = tmp_path / "img" / "004.jpg"
    missing.unlink()
    data = PairDataset.from_file(path)
    with pytest.warns(BadSampleWarning, match=r"004\.jpg: unreadable: no such file"):
        batches = epoch_batches(data, batch_size=5)
    assert len(batches) == 2 and all(len(b["captions"]) == 5 for b in batches)
    indices = torch.cat([b["index"] for b in batches]).tolist()
    assert 4 not in indices and len(set(indices)) == 9  # another sample stands in for it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once: a second pass is silent
        again = epoch_batches(data, batch_size=5, epoch=0)
    assert_same_batches(again, batches)  # the replacement is deterministic


def test_make_loader_refuses_bad_arguments(pairs):
    with pytest.raises(InvalidInputError, match="rank 2 is not below world_size 2"):
        make_loader(pairs, batch_size=4, image_size=S, seed=0, epoch=0, rank=2, world_size=2)
    with pytest.raises(InvalidInputError, match="batch_size"):
        make_loader(pairs, batch_size=0, image_size=S, seed=0, epoch=0)
    with pytest.raises(InvalidInputError, match="interpolation 'area'"):
        make_loader(pairs, batch_size=4, image_size=S, interpolation="area", seed=0, epoch=0)
    with pytest.raises(InvalidInputError, match="smaller than one batch"):
        make_loader(pairs, batch_size=20, image_size=S, seed=0, epoch=0, world_size=2)
    with pytest.raises(InvalidInputError, match="PairDataset or a ShardStream"):
        make_loader([1, 2, 3], batch_size=1, image_size=S, seed=0, epoch=0)


def worker_pids() -> set[int]:
    return {p.pid for p in multiprocessing.active_children()}


def test_train_loader_keeps_its_workers_across_epochs_and_gives_make_loaders_batches(pairs):
    # 27 samples, batches of 4: 6 per epoch. The reference is make_loader in this process.
    reference = {e: epoch_batches(pairs, epoch=e) for e in (0, 1, 2, 5)}
    before = worker_pids()
    with TrainLoader(pairs, batch_size=4, image_size=S, seed=5, workers=2) as loader:
        assert len(loader.epoch(0)) == 6 and worker_pids() == before  # no worker before the first batch
        assert_same_batches(list(loader.epoch(0)), reference[0])
        workers = worker_pids() - before
        assert len(workers) == 2
        # a caller that stops early (a partial accumulation group at the end of an epoch) ...
        assert_same_batches(list(itertools.islice(loader.epoch(1), 4)), reference[1][:4])
        # ... then asks for the next epoch: the two batches in between are dropped, not served
        assert_same_batches(list(loader.epoch(2)), reference[2])
        # going back (a repeat) or far ahead (a resume) restarts the pipeline there
        assert_same_batches(list(loader.epoch(1, start_batch=3)), reference[1][3:])
        assert_same_batches(list(loader.epoch(5, start_batch=2)), reference[5][2:])
        assert worker_pids() - before == workers  # the same two processes all along
        with pytest.raises(InvalidInputError, match="start_batch 7 is past the end of the epoch"):
            loader.epoch(0, start_batch=7)
    assert not (worker_pids() & workers)  # closed: the workers have exited


def test_train_loader_without_workers_and_its_bad_arguments(pairs):
    loader = TrainLoader(pairs, batch_size=4, image_size=S, seed=5, workers=0)
    assert_same_batches([b for e in (3, 4) for b in loader.epoch(e)], epoch_batches(pairs, epoch=3) +
                        epoch_batches(pairs, epoch=4))
    with pytest.raises(InvalidInputError, match="PairDataset or a ShardStream"):
        TrainLoader([1, 2, 3], batch_size=1, image_size=S, seed=0)
    with pytest.raises(InvalidInputError, match="rank 2 is not below world_size 2"):
        TrainLoader(pairs, batch_size=4, image_size=S, seed=0, rank=2, world_size=2)


# ----------------------------------------------------------------------------------------------
# WebDataset shards

SHARD_SIZES = (5, 7, 4, 6)  # complete samples per shard


def add_member(tf: tarfile.TarFile, name: str, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """data-000..003.tar; even shards carry .txt captions, odd ones .json; shard 1 also holds a
    sample without a caption and a stray file, which are not samples."""
    folder = tmp_path_factory.mktemp("shards")
    for s, n in enumerate(SHARD_SIZES):
        with tarfile.open(folder / f"data-{s:03d}.tar", "w") as tf:
            for k in range(n):
                key = f"part{s}/{k:04d}"
                add_member(tf, f"{key}.jpg", noise_jpeg(100 * s + k))
                caption = f"shard {s} sample {k}"
                if s % 2 == 0:
                    add_member(tf, f"{key}.txt", caption.encode())
                else:
                    add_member(tf, f"{key}.json", json.dumps({"caption": caption, "id": k}).encode())
                if s == 1 and k == 2:
                    add_member(tf, f"part1/{k:04d}x.jpg", noise_jpeg(1))  # no caption: skipped
                    add_member(tf, "README", b"no extension: not part of a sample")
    return folder


def keys(items) -> list[str]:
    return [item["key"] for item in items]


def test_shard_patterns(shards):
    names = [f"data-{s:03d}.tar" for s in range(4)]
    assert [Path(p).name for p in expand_shards(str(shards / "data-{000..003}.tar"))] == names
    assert [Path(p).name for p in expand_shards(str(shards / "data-{002,000}.tar"))] == [names[2], names[0]]
    assert [Path(p).name for p in expand_shards(str(shards / "data-*.tar"))] == names
    assert [Path(p).name for p in expand_shards(shards)] == names
    assert len(expand_shards([shards / "data-000.tar", str(shards / "data-00[12].tar")])) == 3
    with pytest.raises(InvalidInputError, match="data-004.tar' does not exist"):
        expand_shards(str(shards / "data-{000..004}.tar"))
    with pytest.raises(InvalidInputError, match="no shard matches"):
        expand_shards(str(shards / "other-*.tar"))


def test_samples_take_txt_and_json_captions_and_skip_incomplete_ones(shards):
    stream = ShardStream(shards, shuffle_shards=False, shuffle_buffer=0)
    with pytest.warns(BadSampleWarning, match=r"data-001\.tar: 1 incomplete samples skipped, the first part1/0002x"):
        items = list(stream)
    assert len(items) == len(stream) == sum(SHARD_SIZES)
    assert keys(items)[:6] == [f"part0/{k:04d}" for k in range(5)] + ["part1/0000"]
    by_key = {item["key"]: item for item in items}
    assert by_key["part1/0003"]["caption"] == "shard 1 sample 3" and by_key["part2/0001"]["caption"] == "shard 2 sample 1"
    assert by_key["part3/0000"]["image"] == noise_jpeg(300) and by_key["part3/0000"]["ext"] == "jpg"
    assert [item["position"] for item in items] == list(range(len(items)))


def test_stream_order_is_a_function_of_seed_and_epoch(shards):
    stream = ShardStream(str(shards / "data-{000..003}.tar"), seed=1, shuffle_buffer=6)
    first = keys(stream)
    assert keys(ShardStream(shards, seed=1, shuffle_buffer=6)) == first
    assert sorted(first) == sorted(keys(ShardStream(shards, shuffle_shards=False, shuffle_buffer=0)))
    assert keys(stream.with_options(epoch=1)) != first
    assert keys(stream.with_options(seed=2)) != first


def test_ranks_and_workers_partition_the_samples(shards):
    everything = sorted(keys(ShardStream(shards)))
    seen = []
    for rank in (0, 1):
        stream = ShardStream(shards, seed=3, epoch=1, rank=rank, world_size=2, shuffle_buffer=4)
        loaded = keys(DataLoader(stream, batch_size=None, num_workers=2, collate_fn=lambda x: x))
        assert sorted(loaded) == sorted(keys(stream))  # the workers split the rank's stream, nothing else
        assert len(loaded) == len(stream)
        seen += loaded
    assert sorted(seen) == everything  # no sample twice, none lost


@pytest.mark.parametrize("k", [0, 1, 7, 21, 22])
def test_resuming_at_a_sample_yields_the_tail_of_the_stream(shards, k):
    stream = ShardStream(shards, seed=4, epoch=2, shuffle_buffer=5)
    assert keys(stream.with_options(start_sample=k)) == keys(stream)[k:]


def test_loader_over_shards_is_resumable_and_worker_independent(shards):
    stream = ShardStream(shards, shuffle_buffer=8)
    args = {"batch_size": 3, "seed": 9, "epoch": 1}
    full = epoch_batches(stream, **args)
    assert len(full) == len(make_loader(stream, image_size=S, **args)) == sum(SHARD_SIZES) // 3
    assert_same_batches(epoch_batches(stream, workers=2, **args), full)
    assert_same_batches(epoch_batches(stream, start_batch=5, **args), full[5:])
    assert_same_batches(epoch_batches(stream, start_batch=2, workers=2, **args), full[2:])
    # every rank runs as many batches as the smallest one, so distributed steps stay in step
    per_rank = [make_loader(stream, image_size=S, rank=r, world_size=2, **args) for r in (0, 1)]
    lengths = stream.with_options(seed=9, epoch=1, world_size=2).rank_lengths()
    assert len(per_rank[0]) == len(per_rank[1]) == min(lengths) // 3
    assert [len(list(loader)) for loader in per_rank] == [min(lengths) // 3] * 2


def test_train_loader_over_shards_gives_make_loaders_epochs(shards):
    # a stream's epoch lives in each worker's copy of it: TrainLoader hands streams to make_loader
    stream = ShardStream(shards, seed=2)
    loader = TrainLoader(stream, batch_size=3, image_size=S, seed=2, workers=0)
    assert len(loader.epoch(1)) == sum(SHARD_SIZES) // 3
    assert_same_batches(list(loader.epoch(1, start_batch=1)), epoch_batches(stream, batch_size=3, seed=2, epoch=1)[1:])


def test_sizes_json_gives_the_shard_lengths(tmp_path):
    with tarfile.open(tmp_path / "a.tar", "w") as tf:
        for k in range(4):
            add_member(tf, f"{k}.png", noise_jpeg(k))
            add_member(tf, f"{k}.txt", b"caption")
    assert len(ShardStream(tmp_path / "a.tar")) == 4
    other = tmp_path / "listed"
    other.mkdir()
    (other / "a.tar").write_bytes((tmp_path / "a.tar").read_bytes())
    (other / "sizes.json").write_text(json.dumps({"a.tar": 3}))
    assert len(ShardStream(other)) == 3  # trusted without reading the shard


def test_a_corrupt_image_in_a_shard_is_replaced_within_its_batch(tmp_path):
    with tarfile.open(tmp_path / "s.tar", "w") as tf:
        for k in range(4):
            add_member(tf, f"{k}.jpg", noise_jpeg(k)[:200] if k == 1 else noise_jpeg(k))
            add_member(tf, f"{k}.txt", f"caption {k}".encode())
    stream = ShardStream(tmp_path / "s.tar", shuffle_buffer=0, shuffle_shards=False)
    with pytest.warns(BadSampleWarning, match=r"s\.tar:1\.jpg: corrupt"):
        (batch,) = epoch_batches(stream, batch_size=4)
    assert batch["index"].tolist() == [0, 2, 2, 3]
    assert batch["captions"] == ["caption 0", "caption 2", "caption 2", "caption 3"]
    assert torch.equal(batch["pixels"][1], batch["pixels"][2])


def test_real_photos_decode_into_batches_with_their_file_sizes():
    data = PairDataset.from_file(shared_data("flickr8k-subset/captions.jsonl"), images=slice(0, 48))
    (batch,) = epoch_batches(data, batch_size=48, image_size=112)
    assert batch["pixels"].shape == (48, 112, 112, 3)
    for i, size in zip(batch["index"].tolist(), batch["sizes"].tolist()):
        with Image.open(data[i].image) as im:
            assert tuple(size) == im.size  # sides under 4S: the JPEG draft keeps the full size
    assert batch["pixels"].float().std() > 20  # photos, not blank views
