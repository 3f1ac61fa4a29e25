"""CLIP's byte-level byte-pair tokenizer, compatible with OpenAI CLIP and Hugging Face's CLIPTokenizer.

The vocabulary comes either from OpenAI's `bpe_simple_vocab_16e6.txt.gz` (a merge list from which
the vocabulary is derived) or from Hugging Face's `vocab.json` + `merges.txt`; `save()` writes the
latter so a saved model directory is readable by polymodal and by transformers alike.

Every tokenized row is `[sot, tokens..., eot, 0, 0, ...]`. The text encoder pools at the eot
position, so a row must hold exactly one eot: unlike OpenAI's and Hugging Face's tokenizers, the
literal strings "<|startoftext|>" and "<|endoftext|>" inside a caption are tokenized as ordinary
text rather than turned into special tokens.
"""

from __future__ import annotations

import functools
import gzip
import heapq
import html
import importlib.util
import json
import zlib
import numbers
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import ftfy
import numpy as np
import regex

from polymodal.errors import CheckpointError, InvalidInputError, ModelNotAvailableError

__all__ = ["ClipTokenizer", "TokenizedTexts", "clean_text", "DEFAULT_CONTEXT_LENGTH"]

DEFAULT_CONTEXT_LENGTH = 77
SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
BPE_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
BPE_ENV_VAR = "POLYMODAL_CLIP_BPE"

# OpenAI's file lists ~262k merges, but CLIP was trained with only the first 48,894 of them:
# 49,408 tokens = 256 bytes + 256 end-of-word bytes + 48,894 merges + sot + eot.
_CLIP_MERGE_COUNT = 49408 - 512 - 2

# OpenAI's pattern minus its two special-token alternatives (see the module docstring).
# IGNORECASE is kept for fidelity although the text is already lower-cased when it runs.
_PRETOKENIZE = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE)
_WHITESPACE = regex.compile(r"\s+")

# Distinct words seen in a corpus grow without bound; 65k entries keep the hit rate on captions
# high while bounding the cache to a few tens of MB.
_BPE_CACHE_SIZE = 1 << 16


def _byte_alphabet() -> list[tuple[int, str]]:
    """(byte, printable character) pairs in the order OpenAI's vocabulary lists them.

    BPE runs on text, so each byte needs a visible stand-in: the printable Latin-1 bytes stand for
    themselves and the rest (control bytes, space, soft hyphen...) borrow characters from U+0100 on,
    because merges are stored one pair per line with a space between the two halves.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = sorted(set(range(256)) - set(printable))
    return [(b, chr(b)) for b in printable] + [(b, chr(256 + n)) for n, b in enumerate(others)]


_BYTE_ALPHABET = _byte_alphabet()
_CHAR_TO_BYTE = {char: byte for byte, char in _BYTE_ALPHABET}
# Applied to a latin-1 decoded UTF-8 string, i.e. to one character per byte.
_BYTES_TO_ALPHABET = str.maketrans({byte: char for byte, char in _BYTE_ALPHABET})


def clean_text(text: str) -> str:
    """OpenAI's caption cleaning: repair mojibake, unescape HTML, collapse whitespace, lower-case."""
    # ftfy costs more than the whole rest of tokenization, yet it can only change non-ASCII text,
    # control characters and HTML entities; skipping it for the rest (most captions) is exact.
    if not (text.isascii() and text.isprintable() and "&" not in text):
        text = ftfy.fix_text(text)
        # Twice, because scraped alt-text is often escaped twice ("&amp;amp;").
        text = html.unescape(html.unescape(text))
    return _WHITESPACE.sub(" ", text).strip().lower()


@dataclass
class TokenizedTexts:
    """A batch of tokenized texts.

    `ids` is (N, context_length) int64, each row `[sot, tokens..., eot, 0, 0, ...]`;
    `truncated` lists the indices of the texts whose tokens were cut to fit.
    """

    ids: np.ndarray
    truncated: list[int] = field(default_factory=list)


def _describe(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:80] + '...' if len(text) > 80 else text}"


def _check_text(text: object, where: str) -> str:
    if not isinstance(text, str):
        raise InvalidInputError(f"{where} must be a str, got {_describe(text)}")
    return text


def _check_context_length(context_length: object) -> int:
    # Integral admits numpy integers; bool is an Integral that is surely a mistake here.
    if isinstance(context_length, bool) or not isinstance(context_length, numbers.Integral) or context_length < 2:
        raise InvalidInputError(
            "context_length must be an integer >= 2 (room for the start and end tokens), "
            f"got {_describe(context_length)}"
        )
    return int(context_length)


class ClipTokenizer:
    """CLIP's tokenizer. Build it with `default()`, `from_bpe_file()`, `from_hf_files()` or `from_dir()`."""

    def __init__(self, vocab: Mapping[str, int], merges: Iterable[tuple[str, str]]):
        self._encoder: dict[str, int] = dict(vocab)
        self._merges: list[tuple[str, str]] = [tuple(m) for m in merges]
        self._ranks = {pair: rank for rank, pair in enumerate(self._merges)}
        self._validate()
        self.sot_token_id = self._encoder[SOT_TOKEN]
        self.eot_token_id = self._encoder[EOT_TOKEN]
        self.vocab_size = max(self._encoder.values()) + 1
        self._decoder: list[str | None] = [None] * self.vocab_size
        for token, index in self._encoder.items():
            self._decoder[index] = token
        self._bpe = functools.lru_cache(maxsize=_BPE_CACHE_SIZE)(self._bpe_uncached)

    def _validate(self) -> None:
        for token in (SOT_TOKEN, EOT_TOKEN):
            if token not in self._encoder:
                raise CheckpointError(f"the CLIP vocabulary has no {token!r} token")
        if any(not isinstance(i, int) or i < 0 for i in self._encoder.values()):
            raise CheckpointError("the CLIP vocabulary maps tokens to ids that are not non-negative integers")
        if len(set(self._encoder.values())) != len(self._encoder):
            raise CheckpointError("the CLIP vocabulary gives the same id to two tokens")
        # Any byte may survive merging on its own, so all 512 base symbols must have an id; and so
        # must every merge's result, or encoding would fail on the first word that uses it.
        for _, char in _BYTE_ALPHABET:
            for symbol in (char, char + END_OF_WORD):
                if symbol not in self._encoder:
                    raise CheckpointError(f"the CLIP vocabulary lacks the byte symbol {symbol!r}")
        for rank, (left, right) in enumerate(self._merges):
            if left + right not in self._encoder:
                raise CheckpointError(
                    f"merge {rank} ({left!r} {right!r}) makes {left + right!r}, which is not in the vocabulary"
                )

    # ----------------------------------------------------------------------------------- loading

    @classmethod
    def from_bpe_file(cls, path: str | os.PathLike) -> ClipTokenizer:
        """Read OpenAI's merge list (`bpe_simple_vocab_16e6.txt.gz`, gzip-compressed or plain)."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError as exc:
            raise ModelNotAvailableError(f"CLIP BPE vocabulary file not found: {path}") from exc
        except OSError as exc:
            raise CheckpointError(f"cannot read the CLIP BPE vocabulary {path}: {exc}") from exc
        try:
            if raw[:2] == b"\x1f\x8b":  # the gzip magic number, whatever the file is called
                raw = gzip.decompress(raw)
            lines = raw.decode("utf-8").split("\n")
        except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path} is not a CLIP BPE vocabulary (gzip or UTF-8 text): {exc}") from exc
        # Line 1 is a version header; the merges follow, best first.
        merges = _parse_merges(lines[1 : 1 + _CLIP_MERGE_COUNT], path, first_line=2)
        symbols = [char for _, char in _BYTE_ALPHABET]
        tokens = symbols + [s + END_OF_WORD for s in symbols] + [a + b for a, b in merges] + [SOT_TOKEN, EOT_TOKEN]
        if len(set(tokens)) != len(tokens):
            raise CheckpointError(f"{path} is not a CLIP BPE vocabulary: two merges produce the same token")
        return cls._checked({token: i for i, token in enumerate(tokens)}, merges, path)

    @classmethod
    def from_hf_files(cls, vocab_json: str | os.PathLike, merges_txt: str | os.PathLike) -> ClipTokenizer:
        """Read Hugging Face's CLIPTokenizer files (`vocab.json` and `merges.txt`)."""
        vocab_json, merges_txt = Path(vocab_json), Path(merges_txt)
        for path in (vocab_json, merges_txt):
            if not path.is_file():
                raise ModelNotAvailableError(f"CLIP tokenizer file not found: {path}")
        try:
            vocab = json.loads(vocab_json.read_text(encoding="utf-8"))
            lines = merges_txt.read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read the CLIP tokenizer files {vocab_json} / {merges_txt}: {exc}") from exc
        if not isinstance(vocab, dict):
            raise CheckpointError(f"{vocab_json} must hold a JSON object mapping tokens to ids")
        # Only a "#version" first line is a header: real merges such as "# #</w>" start with "#" too.
        start = 1 if lines and lines[0].startswith("#version") else 0
        return cls._checked(vocab, _parse_merges(lines[start:], merges_txt, first_line=start + 1), vocab_json)

    @classmethod
    def _checked(cls, vocab: dict, merges: list[tuple[str, str]], source: Path) -> ClipTokenizer:
        try:
            return cls(vocab, merges)
        except CheckpointError as exc:  # the constructor cannot say which file was wrong
            raise CheckpointError(f"{source}: {exc}") from None

    @classmethod
    def from_dir(cls, directory: str | os.PathLike) -> ClipTokenizer:
        """Read a directory holding `vocab.json` + `merges.txt`, or else a `bpe_simple_vocab*.txt[.gz]`."""
        directory = Path(directory)
        vocab_json, merges_txt = directory / "vocab.json", directory / "merges.txt"
        if vocab_json.is_file() and merges_txt.is_file():
            return cls.from_hf_files(vocab_json, merges_txt)
        # Compressed first: that is the name OpenAI ships.
        candidates = sorted(directory.glob("bpe_simple_vocab*.txt*"), key=lambda p: (p.suffix != ".gz", p.name))
        if candidates:
            return cls.from_bpe_file(candidates[0])
        state = "holds neither" if directory.is_dir() else "does not exist, so it has neither"
        raise CheckpointError(
            f"tokenizer directory {directory} {state} vocab.json + merges.txt nor a {BPE_FILENAME}; "
            f"copy the tokenizer files of the checkpoint there"
        )

    @classmethod
    @functools.lru_cache(maxsize=None)
    def default(cls) -> ClipTokenizer:
        """The standard CLIP vocabulary, loaded once per process.

        Looked up in ${POLYMODAL_CLIP_BPE}, then beside the installed open_clip package.
        """
        configured = os.environ.get(BPE_ENV_VAR)
        if configured:
            if not Path(configured).is_file():
                # An explicit setting that points nowhere is a mistake worth reporting, not skipping.
                raise ModelNotAvailableError(
                    f"{BPE_ENV_VAR}={configured!r} is not a file; point it at {BPE_FILENAME} or unset it"
                )
            return cls.from_bpe_file(configured)
        bundled = _open_clip_bpe_file()
        if bundled is not None:
            return cls.from_bpe_file(bundled)
        raise ModelNotAvailableError(
            f"the CLIP tokenizer vocabulary ({BPE_FILENAME}) was not found. Install it with "
            f"`pip install --no-deps open_clip_torch`, or set {BPE_ENV_VAR} to the path of a copy of the file"
        )

    # ------------------------------------------------------------------------------------ saving

    def save(self, directory: str | os.PathLike) -> None:
        """Write `vocab.json` and `merges.txt` in Hugging Face's format."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "vocab.json").write_text(json.dumps(self._encoder, ensure_ascii=False), encoding="utf-8")
        merges = "".join(f"{left} {right}\n" for left, right in self._merges)
        (directory / "merges.txt").write_text("#version: 0.2\n" + merges, encoding="utf-8")

    # -------------------------------------------------------------------------------- inspection

    @property
    def vocab(self) -> Mapping[str, int]:
        """Token -> id (read-only)."""
        return MappingProxyType(self._encoder)

    @property
    def merges(self) -> list[tuple[str, str]]:
        """The merges, highest priority first."""
        return list(self._merges)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, merges={len(self._merges)})"

    # The cache wraps a bound method, which pickle cannot store; workers rebuild it.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_bpe"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bpe = functools.lru_cache(maxsize=_BPE_CACHE_SIZE)(self._bpe_uncached)

    # ---------------------------------------------------------------------------------- encoding

    def _bpe_uncached(self, piece: str) -> tuple[int, ...]:
        """The ids of one pre-tokenized piece.

        Merges the lowest-ranked adjacent pair first, leftmost first among equals, which gives the
        same result as OpenAI's loop. A heap over a linked list keeps this O(n log n): a scraped
        "word" can be a kilobyte-long base64 blob, and the naive rescan is quadratic in it.
        """
        symbols: list[str | None] = list(piece.encode("utf-8").decode("latin-1").translate(_BYTES_TO_ALPHABET))
        symbols[-1] += END_OF_WORD
        n = len(symbols)
        ranks = self._ranks
        following = list(range(1, n + 1))  # n marks the end
        preceding = list(range(-1, n - 1))  # -1 marks the start

        heap = []
        for i in range(n - 1):
            rank = ranks.get((symbols[i], symbols[i + 1]))
            if rank is not None:
                heap.append((rank, i, symbols[i], symbols[i + 1]))
        heapq.heapify(heap)
        while heap:
            _, i, left, right = heapq.heappop(heap)
            j = following[i]
            # Symbols only ever grow, so an entry whose two halves no longer match is stale: one of
            # them has been merged with something else since the pair was queued.
            if j == n or symbols[i] != left or symbols[j] != right:
                continue
            merged = left + right
            symbols[i], symbols[j] = merged, None
            following[i] = k = following[j]
            if k < n:
                preceding[k] = i
                rank = ranks.get((merged, symbols[k]))
                if rank is not None:
                    heapq.heappush(heap, (rank, i, merged, symbols[k]))
            h = preceding[i]
            if h >= 0:
                rank = ranks.get((symbols[h], merged))
                if rank is not None:
                    heapq.heappush(heap, (rank, h, symbols[h], merged))
        encoder = self._encoder
        return tuple(encoder[s] for s in symbols if s is not None)

    def _encode(self, text: str, limit: int | None = None) -> list[int]:
        """BPE ids of `text`; stops early once there are more than `limit` of them."""
        ids: list[int] = []
        bpe = self._bpe
        for piece in _PRETOKENIZE.findall(clean_text(text)):
            ids.extend(bpe(piece))
            if limit is not None and len(ids) > limit:
                break
        return ids

    def encode(self, text: str) -> list[int]:
        """The BPE ids of `text`, without the start and end tokens."""
        return self._encode(_check_text(text, "text"))

    def decode(self, ids) -> str:
        """The text of a sequence of ids.

        The start token is dropped and decoding stops at the first end token, so a padded row of
        `__call__` decodes to its text. Words come back separated by single spaces, punctuation
        included ("a cat." -> "a cat .") since the tokenizer splits it into words of its own.
        """
        array = np.asarray(ids)
        if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
            raise InvalidInputError(f"decode takes a 1-D sequence of integer token ids, got {_describe(ids)}")
        pieces = []
        for index in array.tolist():
            if index == self.eot_token_id:
                break
            if index == self.sot_token_id:
                continue
            token = self._decoder[index] if 0 <= index < self.vocab_size else None
            if token is None:
                raise InvalidInputError(f"token id {index} is not in the vocabulary (0..{self.vocab_size - 1})")
            pieces.append(token)
        data = bytearray()
        for char in "".join(pieces).replace(END_OF_WORD, " "):
            byte = _CHAR_TO_BYTE.get(char)
            # Only tokens added to a Hugging Face vocabulary hold characters outside the alphabet.
            data.extend(char.encode("utf-8") if byte is None else (byte,))
        # A character cut in half (by truncation, or by slicing ids) comes back as U+FFFD.
        return data.decode("utf-8", errors="replace").strip()

    def __call__(self, texts: str | list[str], context_length: int = DEFAULT_CONTEXT_LENGTH) -> TokenizedTexts:
        """Tokenize one text or a list of texts into a padded (N, context_length) int64 array.

        Texts longer than `context_length - 2` tokens keep their first tokens and still end with
        eot; their indices are listed in `truncated`.
        """
        context_length = _check_context_length(context_length)
        if isinstance(texts, str):
            texts = [texts]
        elif isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
            raise InvalidInputError(f"texts must be a str or a list of str, got {_describe(texts)}")
        texts = list(texts)
        for i, text in enumerate(texts):
            _check_text(text, f"texts[{i}]")

        room = context_length - 2
        ids = np.zeros((len(texts), context_length), dtype=np.int64)
        truncated = []
        for row, text in enumerate(texts):
            tokens = self._encode(text, limit=room)
            if len(tokens) > room:
                tokens = tokens[:room]
                truncated.append(row)
            ids[row, : len(tokens) + 2] = [self.sot_token_id, *tokens, self.eot_token_id]
        return TokenizedTexts(ids=ids, truncated=truncated)


def _parse_merges(lines: list[str], path: Path, first_line: int) -> list[tuple[str, str]]:
    merges = []
    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise CheckpointError(f"{path}, line {number}: expected a merge 'left right', got {line[:80]!r}")
        merges.append((parts[0], parts[1]))
    return merges


def _open_clip_bpe_file() -> Path | None:
    """open_clip's bundled vocabulary, found without importing open_clip (which needs torchvision)."""
    try:
        spec = importlib.util.find_spec("open_clip")
    except (ImportError, ValueError):  # ValueError: a half-imported module left in sys.modules
        return None
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or [])
    if spec.origin:
        folders.append(os.path.dirname(spec.origin))
    for folder in folders:
        candidate = Path(folder) / BPE_FILENAME
        if candidate.is_file():
            return candidate
    return None
