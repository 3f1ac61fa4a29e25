"""The CLIP tokenizer against the real vocabulary and against Hugging Face's implementation."""

from __future__ import annotations

import html
import importlib.machinery
import importlib.util
import pickle
import random
import shutil
import time
from pathlib import Path

import ftfy
import numpy as np
import pytest

from polymodal.errors import CheckpointError, InvalidInputError, ModelNotAvailableError
from polymodal.models.tokenizer import ClipTokenizer, TokenizedTexts, clean_text

BPE_PATH = Path(__file__).resolve().parents[2] / "shared/data/clip-bpe/bpe_simple_vocab_16e6.txt.gz"

SOT, EOT = 49406, 49407

# Chosen to exercise every branch of cleaning and pre-tokenisation: case, whitespace, contractions,
# digits (one token each), punctuation runs, accents, non-Latin scripts, emoji (multi-byte and ZWJ
# sequences), HTML entities (escaped once and twice), mojibake, ligatures, full-width forms, words
# far longer than any merge, and texts that clean to nothing.
VARIED_TEXTS = [
    "a photo of a cat",
    "A PHOTO OF A CAT",
    "Hello, world!",
    "don't stop believing",
    "I'm sure you're right, we've seen they'll say she'd go and it's fine",
    "DON'T SHOUT, IT'S LATE",
    "it's 5 o'clock, isn't it?",
    "the year 2024 had 366 days",
    "3.14159 is pi and 1e-9 is small",
    "$100,000.00 (approx.) or 50%",
    "e-mail: someone@example.com #hashtag @mention",
    "https://example.com/path?q=1&r=2",
    "multiple    spaces\tand\ttabs\nand\r\nnewlines",
    "   leading and trailing   ",
    "naïve café résumé",
    "Ångström, Straße, façade, Ünïcödé ÀÉÎÕÜ",
    "Ελληνικά κείμενα ΟΔΟΣ",
    "Русский текст, ЗАГЛАВНЫЕ",
    "日本語のテキスト",
    "中文字符测试",
    "한국어 텍스트",
    "arabic العربية and hindi हिन्दी",
    "emoji 😀🎉👍🏽 party",
    "family 👨‍👩‍👧‍👦 emoji",
    "Tom &amp; Jerry",
    "&lt;b&gt;bold&lt;/b&gt;",
    "double escaped &amp;amp; entity",
    "&quot;quoted&quot; and &#39;single&#39; and &eacute;",
    "“curly quotes” and ‘apostrophes’ — dashes…",
    "mojibake: cafÃ© and âœ” done",
    "ﬁne ligatures ﬂow",
    "ＬＯＵＤ　ＮＯＩＳＥＳ",
    "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "x" * 300,
    "abc" * 200,
    "!!!???...---***",
    "a_b_c snake_case CamelCaseWord",
    "İstanbul",
    "zero\u200bwidth and non\u00a0breaking spaces",
    "math ∑∫√∞ ≠ ≤ and arrows → ⇒",
    "control\x07char and bell",
    "''quoted'' `backticks` ~tilde~ ^caret^",
    "the quick brown fox jumps over the lazy dog " * 5,
    "",
    "   ",
]


@pytest.fixture(scope="module")
def tok() -> ClipTokenizer:
    if not BPE_PATH.is_file():
        pytest.skip(f"the CLIP vocabulary is missing: expected {BPE_PATH} (shared data of the project)")
    return ClipTokenizer.from_bpe_file(BPE_PATH)


@pytest.fixture(scope="module")
def saved_dir(tok, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("clip-tokenizer")
    tok.save(directory)
    return directory


@pytest.fixture
def fresh_default():
    """default() caches across the process: isolate each test from the others."""
    ClipTokenizer.default.cache_clear()
    yield
    ClipTokenizer.default.cache_clear()


def _unpadded(row: np.ndarray) -> list[int]:
    return row[: int(np.argmax(row == EOT)) + 1].tolist()


# ------------------------------------------------------------------------------------------ basics


def test_known_caption(tok):
    out = tok("a photo of a cat")
    assert isinstance(out, TokenizedTexts)
    assert out.ids.shape == (1, 77) and out.ids.dtype == np.int64
    expected = [SOT, 320, 1125, 539, 320, 2368, EOT]
    assert out.ids[0].tolist() == expected + [0] * (77 - len(expected))
    assert out.truncated == []


def test_special_ids_and_size(tok):
    assert (tok.sot_token_id, tok.eot_token_id, tok.vocab_size) == (SOT, EOT, 49408)
    assert len(tok.merges) == 48894


def test_batch_shapes_and_empty_text(tok):
    out = tok(["", "a cat", "a photo of a dog"], context_length=16)
    assert out.ids.shape == (3, 16)
    assert out.ids[0, :3].tolist() == [SOT, EOT, 0]
    assert (out.ids == EOT).sum(axis=1).tolist() == [1, 1, 1]
    assert tok([]).ids.shape == (0, 77)
    assert tok.encode("") == []


def test_special_token_text_is_not_a_special_token(tok):
    # The text encoder pools at the first eot: a caption must not be able to move it.
    ids = tok.encode("<|endoftext|> and <|startoftext|>")
    assert SOT not in ids and EOT not in ids
    assert (tok("<|endoftext|> hi").ids == EOT).sum() == 1


def test_fast_path_cleaning_matches_ftfy(tok):
    def reference(text):
        return " ".join(html.unescape(html.unescape(ftfy.fix_text(text))).split()).lower()

    rng = random.Random(0)
    alphabet = [chr(c) for c in range(0x20, 0x7F)]
    samples = ["".join(rng.choices(alphabet, k=rng.randint(0, 30))) for _ in range(2000)]
    for text in samples + VARIED_TEXTS:
        assert clean_text(text) == reference(text), text


# -------------------------------------------------------------------------------- Hugging Face parity


@pytest.mark.parametrize("class_name", ["CLIPTokenizer", "CLIPTokenizerFast"])
def test_parity_with_transformers(tok, saved_dir, class_name):
    transformers = pytest.importorskip("transformers")
    cls = getattr(transformers, class_name, None)
    if cls is None:
        pytest.skip(f"transformers {transformers.__version__} has no {class_name}")
    try:
        hf = cls.from_pretrained(saved_dir)
    except Exception as exc:  # pragma: no cover - depends on the transformers version
        pytest.skip(f"{class_name} cannot load the saved files: {exc}")
    assert (hf.bos_token_id, hf.eos_token_id) == (SOT, EOT)

    ours = tok(VARIED_TEXTS, context_length=2048)
    assert ours.truncated == []
    raw_checked = 0
    for text, row in zip(VARIED_TEXTS, ours.ids):
        # Hugging Face's tokenizers-backed CLIPTokenizer skips ftfy and HTML unescaping (the old
        # Python one did both), so it gets the cleaned text. Where cleaning only folds whitespace
        # and case, it must agree on the raw text too; "case" as Rust folds it, one character at a
        # time, without the final-sigma rule of Python's str.lower ("ΟΔΟΣ" -> "οδος", not "οδοσ").
        assert _unpadded(row) == hf(clean_text(text))["input_ids"], text
        if clean_text(text) == "".join(char.lower() for char in " ".join(text.split())):
            assert _unpadded(row) == hf(text)["input_ids"], text
            raw_checked += 1
    assert raw_checked >= 25


# ----------------------------------------------------------------------------------- files and loading


def test_from_dir_of_saved_files_equals_bpe_file(tok, saved_dir):
    loaded = ClipTokenizer.from_dir(saved_dir)
    assert dict(loaded.vocab) == dict(tok.vocab)
    assert loaded.merges == tok.merges
    assert (loaded.sot_token_id, loaded.eot_token_id, loaded.vocab_size) == (SOT, EOT, 49408)
    np.testing.assert_array_equal(loaded(VARIED_TEXTS).ids, tok(VARIED_TEXTS).ids)


def test_from_dir_with_openai_file(tmp_path):
    if not BPE_PATH.is_file():
        pytest.skip(f"the CLIP vocabulary is missing: expected {BPE_PATH}")
    shutil.copy(BPE_PATH, tmp_path / BPE_PATH.name)
    assert ClipTokenizer.from_dir(tmp_path).encode("a photo of a cat") == [320, 1125, 539, 320, 2368]


def test_plain_text_bpe_file(tmp_path):
    if not BPE_PATH.is_file():
        pytest.skip(f"the CLIP vocabulary is missing: expected {BPE_PATH}")
    import gzip

    plain = tmp_path / "bpe_simple_vocab_16e6.txt"
    plain.write_bytes(gzip.decompress(BPE_PATH.read_bytes()))
    assert ClipTokenizer.from_bpe_file(plain).encode("a photo of a cat") == [320, 1125, 539, 320, 2368]


def test_from_dir_without_tokenizer_files(tmp_path):
    with pytest.raises(CheckpointError, match="vocab.json"):
        ClipTokenizer.from_dir(tmp_path)
    with pytest.raises(CheckpointError):
        ClipTokenizer.from_dir(tmp_path / "missing")


def test_broken_files(tmp_path):
    with pytest.raises(ModelNotAvailableError):
        ClipTokenizer.from_bpe_file(tmp_path / "nope.txt.gz")
    bad = tmp_path / "bad.txt"
    bad.write_text("header\ni n\nthree parts here\n")
    with pytest.raises(CheckpointError, match="line 3"):
        ClipTokenizer.from_bpe_file(bad)
    (tmp_path / "vocab.json").write_text('{"a": 0}')
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(CheckpointError, match="<|startoftext|>"):
        ClipTokenizer.from_dir(tmp_path)


def test_pickle_round_trip(tok):
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode(VARIED_TEXTS[4]) == tok.encode(VARIED_TEXTS[4])


# ----------------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    "text", ["a photo of a cat", "A Photo  of the   CAT", "  the quick brown fox jumps over the lazy dog  "]
)
def test_decode_round_trip(tok, text):
    assert tok.decode(tok.encode(text)) == " ".join(text.split()).lower()


def test_decode_padded_row_and_unicode(tok):
    assert tok.decode(tok("a photo of a cat").ids[0]) == "a photo of a cat"
    assert tok.decode(tok.encode("café 日本 😀")) == "café 日本 😀"


# --------------------------------------------------------------------------------------- truncation


def test_truncation_is_reported(tok):
    long_text = " ".join(f"word{i}" for i in range(200))
    out = tok(["short one", long_text, "another short one"], context_length=77)
    assert out.truncated == [1]
    row = out.ids[1]
    assert row[0] == SOT and row[-1] == EOT and (row == EOT).sum() == 1
    assert row[1:-1].tolist() == tok.encode(long_text)[:75]
    assert out.ids[0, -1] == 0 and out.ids[2, -1] == 0


def test_exact_fit_is_not_truncated(tok):
    text = " ".join(["cat"] * 75)  # one token each
    out = tok([text, text + " cat"], context_length=77)
    assert out.truncated == [1]
    assert out.ids[0, -1] == EOT and out.ids[0, -2] == 2368


def test_smallest_context(tok):
    out = tok(["", "a cat"], context_length=2)
    assert out.ids.tolist() == [[SOT, EOT], [SOT, EOT]]
    assert out.truncated == [1]


def test_very_long_word_is_fast(tok):
    # A scraped "word" can be a kilobyte-long blob; BPE must not be quadratic in its length.
    rng = random.Random(1)
    blob = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=20_000))
    start = time.perf_counter()
    ids = tok.encode(blob)
    assert time.perf_counter() - start < 5
    assert tok.decode(ids) == blob


# ----------------------------------------------------------------------------------------- default()


def test_default_from_environment(monkeypatch, fresh_default):
    if not BPE_PATH.is_file():
        pytest.skip(f"the CLIP vocabulary is missing: expected {BPE_PATH}")
    monkeypatch.setenv("POLYMODAL_CLIP_BPE", str(BPE_PATH))
    monkeypatch.setattr(importlib.util, "find_spec", lambda *a, **k: pytest.fail("env must win"))
    first = ClipTokenizer.default()
    assert first.encode("a photo of a cat") == [320, 1125, 539, 320, 2368]
    assert ClipTokenizer.default() is first


def test_default_from_open_clip_location(monkeypatch, tmp_path, fresh_default):
    if not BPE_PATH.is_file():
        pytest.skip(f"the CLIP vocabulary is missing: expected {BPE_PATH}")
    package = tmp_path / "open_clip"
    package.mkdir()
    shutil.copy(BPE_PATH, package / "bpe_simple_vocab_16e6.txt.gz")
    spec = importlib.machinery.ModuleSpec("open_clip", None, origin=str(package / "__init__.py"), is_package=True)
    spec.submodule_search_locations = [str(package)]
    monkeypatch.delenv("POLYMODAL_CLIP_BPE", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: spec if name == "open_clip" else None)
    assert ClipTokenizer.default().vocab_size == 49408


def test_default_not_found(monkeypatch, fresh_default):
    monkeypatch.delenv("POLYMODAL_CLIP_BPE", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda *a, **k: None)
    with pytest.raises(ModelNotAvailableError) as info:
        ClipTokenizer.default()
    message = str(info.value)
    assert "pip install --no-deps open_clip_torch" in message and "POLYMODAL_CLIP_BPE" in message


def test_default_env_pointing_nowhere(monkeypatch, tmp_path, fresh_default):
    monkeypatch.setenv("POLYMODAL_CLIP_BPE", str(tmp_path / "missing.txt.gz"))
    with pytest.raises(ModelNotAvailableError, match="POLYMODAL_CLIP_BPE"):
        ClipTokenizer.default()


# ---------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("context_length", [1, 0, -5, 2.5, "77", None, True])
def test_bad_context_length(tok, context_length):
    with pytest.raises(InvalidInputError, match="context_length") as info:
        tok("a cat", context_length=context_length)
    assert repr(context_length) in str(info.value)


@pytest.mark.parametrize(
    "texts, where",
    [(None, "texts"), (5, "texts"), (b"bytes", "texts"), (["ok", 3], r"texts\[1\]"), ([None], r"texts\[0\]")],
)
def test_bad_texts(tok, texts, where):
    with pytest.raises(InvalidInputError, match=where):
        tok(texts)


def test_bad_encode_and_decode_input(tok):
    with pytest.raises(InvalidInputError, match="None"):
        tok.encode(None)
    with pytest.raises(InvalidInputError, match="99999"):
        tok.decode([320, 99999])
    with pytest.raises(InvalidInputError, match="-1"):
        tok.decode([-1])
    for bad in ([[320, 1125]], [1.5]):
        with pytest.raises(InvalidInputError, match="1-D"):
            tok.decode(bad)
