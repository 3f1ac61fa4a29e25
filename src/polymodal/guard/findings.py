"""A piece of text found in or on an image: by OCR, in a QR code, or in the file's metadata.

`guard/textfind.py` (OCR over enhanced views) and `guard/metadata.py` (metadata, QR codes) return
these; the guard's scan judges their text and reports them. Plain data, JSON-able via `to_dict`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["TextFinding"]


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
