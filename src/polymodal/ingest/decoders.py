"""Decoders turn one source file into the items a collection stores.

Ingestion has one pipeline (walk -> read -> decode -> embed -> write); what varies with the kind of
file is only the decoder. A decoder claims file suffixes and turns the file's bytes into items:
one item for an image or a text file; a PDF decoder would give one image item per page
(uri "doc.pdf#page=3"), a video decoder one per keyframe, an audio decoder one per segment. Each
item says which tower embeds it (`kind`), so new media plug in with `register_decoder` and need no
new pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from polymodal.errors import MediaError

#: Longest text file read whole; longer ones are cut (the model's context is far shorter anyway).
MAX_TEXT_BYTES = 1 << 20


@dataclass
class Item:
    uri: str  # the source path, plus "#fragment" for a part of a file
    kind: str  # which tower embeds it: "image" | "text"
    payload: Any  # image: encoded bytes or a PIL image; text: the string
    media_type: str
    width: int | None = None
    height: int | None = None
    text: str | None = None
    metadata: dict = field(default_factory=dict)


class Decoder(Protocol):
    suffixes: tuple[str, ...]  # lower-case, with the dot

    def decode(self, path: str, data: bytes) -> list[Item]:
        """The items of one file; raise MediaError for a file that cannot be used."""


class ImageDecoder:
    suffixes = (".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
    _MIME = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
             "GIF": "image/gif", "BMP": "image/bmp", "TIFF": "image/tiff"}

    def decode(self, path: str, data: bytes) -> list[Item]:
        from polymodal.media import probe_image

        width, height, fmt = probe_image(data, source=path)  # header only; pixels decode later, in the embedder's threads
        mime = self._MIME.get(fmt, f"image/{fmt.lower() or 'unknown'}")
        return [Item(uri=path, kind="image", payload=data, media_type=mime, width=width, height=height)]


class TextDecoder:
    suffixes = (".txt", ".md", ".markdown", ".rst")

    def decode(self, path: str, data: bytes) -> list[Item]:
        if b"\x00" in data[:8192]:
            raise MediaError(path, "unsupported", "looks binary (NUL bytes), not a text file")
        try:
            text = data[:MAX_TEXT_BYTES].decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < MAX_TEXT_BYTES - 4:  # not just a character cut at the size limit
                raise MediaError(path, "corrupt", f"not valid UTF-8 at byte {exc.start}; re-save the file as UTF-8") from None
            text = data[:exc.start].decode("utf-8")
        text = text.strip()
        if not text:
            raise MediaError(path, "empty", "the text file holds no text")
        mime = "text/markdown" if path.lower().endswith((".md", ".markdown")) else "text/plain"
        return [Item(uri=path, kind="text", payload=text, media_type=mime, text=text)]


_DECODERS: list = [ImageDecoder(), TextDecoder()]


def register_decoder(decoder) -> None:
    """Add a decoder (first registered wins for a suffix it shares with a later one)."""
    _DECODERS.insert(0, decoder)


def decoder_for(path: str):
    lower = path.lower()
    for decoder in _DECODERS:
        if lower.endswith(decoder.suffixes):
            return decoder
    return None


def known_suffixes() -> list[str]:
    return sorted({s for d in _DECODERS for s in d.suffixes})
