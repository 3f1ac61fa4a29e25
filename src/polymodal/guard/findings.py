"""A piece of text found in or on an image: by OCR, in a QR code, or in the file's metadata.

`guard/textfind.py` (OCR over enhanced views) and `guard/metadata.py` (metadata, QR codes) return
these; the guard's scan judges their text and reports them. Plain data, JSON-able via `to_dict`.
Both also share `warn_once`, for a missing optional reader (Tesseract, zxing-cpp) that a scan of
thousands of images must mention once, not per image.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

__all__ = ["TextFinding", "warn_once"]

_log = logging.getLogger("polymodal.guard")
_warned: set[str] = set()


def warn_once(message: str) -> None:
    """Log `message` as a warning of "polymodal.guard" the first time this process sees it."""
    if message not in _warned:
        _warned.add(message)
        _log.warning(message)


@dataclass
class TextFinding:
    text: str
    box: list[int] | None            # [x0, y0, x1, y1] in original image pixels, None for metadata
    confidence: float                # 0..1: the recogniser's (OCR), 1.0 for decoded QR / metadata
    source: str                      # "ocr:<view that found it>", "qr", "metadata:<key>"
    rotation: int = 0                # degrees the text is turned from horizontal (counter-clockwise)
    contrast: float | None = None    # luma difference text vs background, 0-255
    relative_height: float | None = None  # text height / image height
    enhanced_only: bool = False      # found only in an enhanced view, not in the plain image
    hidden: float = 0.0              # 0 plain sight .. 1 invisible to a person

    def to_dict(self) -> dict:
        return asdict(self)
