"""Tesseract OCR (the Debian `tesseract` program) for reading lines of text already found.

PP-OCR's recogniser in backends/ocr.py knows Chinese and Latin but no Cyrillic: Russian comes
back as Latin look-alikes ("Срочно" -> "Cpo4Ho"). Tesseract 5 with the `rus` data reads it.
Here it only recognises lines other code has cut out (straightened crops), never detects.

All the crops of one call go through one `tesseract` process: they are scaled to one line
height, stacked top to bottom with blank gaps, read as one block of text (page segmentation
mode 6) and each recognised word goes back to the crop whose rows hold its centre. Starting the
program and loading its language data costs ~0.1-0.2 s, reading a line a few ms, so one process
per image instead of one per line keeps the cost of a Russian image near that of one line.

No Python binding: the program is called with the stacked PNG on stdin and its TSV (one row per
word with a 0-100 confidence) on stdout. Where the program or its `rus` data is missing,
`available()` is False and `read_lines` raises TesseractUnavailableError (the apt command).
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess

import numpy as np

from polymodal.errors import BackendUnavailableError, InvalidInputError, require

__all__ = ["LINE_HEIGHT", "TesseractUnavailableError", "available", "languages", "read_lines"]

LINE_HEIGHT = 48     # crops are scaled to this many rows: capitals ~30 px, Tesseract's best range
GAP = 24             # blank rows between stacked crops (half a line: kept apart as lines)
MARGIN = 12          # blank border around the stack
TIMEOUT_S = 60.0     # a stuck process must not hang a scan


class TesseractUnavailableError(BackendUnavailableError):
    """The `tesseract` program or one of its languages is not installed."""

    def __init__(self, reason: str):
        Exception.__init__(self, f"{reason}; install it with: "
                                 "apt-get install tesseract-ocr tesseract-ocr-rus")


@functools.lru_cache(maxsize=1)
def languages() -> frozenset[str]:
    """The language data the installed `tesseract` has (empty when it is not installed)."""
    exe = shutil.which("tesseract")
    if exe is None:
        return frozenset()
    try:
        out = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    # First line is a header ("List of available languages in ...:").
    return frozenset(line.strip() for line in out.stdout.splitlines()[1:] if line.strip())


def available(lang: str = "rus+eng") -> bool:
    """True when `tesseract` is installed with every language of `lang` ("rus+eng")."""
    have = languages()
    return bool(have) and all(part in have for part in lang.split("+"))


def read_lines(crops, *, lang: str = "rus+eng") -> list[tuple[str, float]]:
    """(text, confidence 0..1) of each line crop (uint8 arrays (h, w) grey or (h, w, 3) RGB,
    one line of dark or light text each), read by one `tesseract` process. The confidence is
    the mean of Tesseract's word confidences weighted by word length; ("", 0.0) for a crop in
    which it read nothing."""
    crops = list(crops)
    if not crops:
        return []
    if not available(lang):
        raise TesseractUnavailableError(f"tesseract with languages {lang!r} is not installed "
                                        f"(found: {sorted(languages()) or 'no tesseract program'})")
    stack, spans = _stack([_prepare(c) for c in crops])
    png = io.BytesIO()
    from PIL import Image

    Image.fromarray(stack).save(png, format="PNG")
    # One OpenMP thread: the scan around it already uses the cores, and Tesseract's threads
    # only pay off on whole pages.
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    try:
        out = subprocess.run(["tesseract", "stdin", "stdout", "-l", lang, "--psm", "6", "tsv"],
                             input=png.getvalue(), capture_output=True, timeout=TIMEOUT_S, env=env)
    except (OSError, subprocess.SubprocessError) as exc:
        raise TesseractUnavailableError(f"running tesseract failed ({exc})") from exc
    if out.returncode != 0:
        raise TesseractUnavailableError(f"tesseract exited with status {out.returncode} "
                                        f"({out.stderr.decode(errors='replace').strip()[:200]})")
    return _parse_tsv(out.stdout.decode("utf-8", errors="replace"), spans)


def _prepare(crop) -> np.ndarray:
    """The crop scaled to LINE_HEIGHT rows and cleaned to dark ink on white: Tesseract's own
    global binarisation breaks on text over a photo (texture turns into glyph fragments, word
    confidences fall to 0.0-0.5 for correctly read words).

    Ink = pixels standing out from the background in the ink's polarity: background = median
    filter over a window of the line's height (ink covers well under half of any such window);
    the polarity is the one holding most of the strongest residuals. In grey crops the residual
    is mapped so that below a quarter of its 97th percentile is white and above three quarters
    black. In colour crops the ink is also keyed by its colour, since injected text is drawn in
    one colour while the photo's edges that also stand out (branches, window frames) are of
    others: ink colour = median RGB of the clearest ink (residual >= half the peak); a pixel is
    black within 2 spreads of that colour (spread = the median distance of the clearest ink from
    it, at least 8), white beyond 6, and white wherever its residual is under a fifth of the
    peak. (Its effect on Russian readings over photos: benchmarks/RESULTS.md.)"""
    cv2 = require("cv2", "guard", "reading text lines with Tesseract")
    a = np.asarray(crop)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3) or min(a.shape[:2]) < 1:
        raise InvalidInputError(f"a line crop must be a uint8 (h, w) or (h, w, 3) array, got "
                                f"{getattr(a, 'dtype', type(crop))} {getattr(a, 'shape', None)}")
    h, w = a.shape[:2]
    a = cv2.resize(a, (max(1, round(w * LINE_HEIGHT / h)), LINE_HEIGHT), interpolation=cv2.INTER_CUBIC)
    grey = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) if a.ndim == 3 else a
    background = cv2.medianBlur(grey, LINE_HEIGHT | 1).astype(np.float32)
    residual = grey.astype(np.float32) - background                  # (LINE_HEIGHT, w')
    strong = np.abs(residual) >= np.percentile(np.abs(residual), 90)
    ink = residual if residual[strong].sum() >= 0 else -residual      # ink > 0 in either polarity
    peak = max(float(np.percentile(ink, 97)), 1.0)
    if a.ndim == 2:
        return (255 - np.clip((ink - 0.25 * peak) / (0.5 * peak) * 255, 0, 255)).astype(np.uint8)
    rgb = a.astype(np.float32)                                        # (LINE_HEIGHT, w', 3)
    clearest = ink >= 0.5 * peak
    colour = np.median(rgb[clearest], axis=0)
    distance = np.linalg.norm(rgb - colour, axis=2)
    spread = max(float(np.median(distance[clearest])), 8.0)
    like = np.clip((6 * spread - distance) / (4 * spread), 0, 1) * (ink > 0.2 * peak)
    return (255 - like * 255).astype(np.uint8)


def _stack(lines: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Lines stacked top to bottom on white with GAP rows between; (image, row span per line)."""
    width = max(line.shape[1] for line in lines) + 2 * MARGIN
    height = 2 * MARGIN + sum(line.shape[0] for line in lines) + GAP * (len(lines) - 1)
    out = np.full((height, width), 255, np.uint8)
    spans, y = [], MARGIN
    for line in lines:
        out[y:y + line.shape[0], MARGIN:MARGIN + line.shape[1]] = line
        spans.append((y, y + line.shape[0]))
        y += line.shape[0] + GAP
    return out, spans


def _parse_tsv(tsv: str, spans: list[tuple[int, int]]) -> list[tuple[str, float]]:
    """Words of Tesseract's TSV (level 5 rows) back to the stacked line holding their centre,
    in reading order; confidence = length-weighted mean word confidence / 100."""
    words: list[list[tuple[int, str, float]]] = [[] for _ in spans]
    rows = tsv.splitlines()
    for row in rows[1:]:  # first row: column names
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5":
            continue
        text, conf = cols[11].strip(), float(cols[10])
        if not text or conf < 0:
            continue
        left, top, height = int(cols[6]), int(cols[7]), int(cols[9])
        centre = top + height / 2
        for i, (y0, y1) in enumerate(spans):
            if y0 - GAP / 2 <= centre < y1 + GAP / 2:
                words[i].append((left, text, conf))
                break
    out = []
    for line in words:
        line.sort()
        weight = sum(len(t) for _, t, _ in line)
        conf = sum(len(t) * c for _, t, c in line) / weight / 100 if weight else 0.0
        out.append((" ".join(t for _, t, _ in line), round(conf, 4)))
    return out
