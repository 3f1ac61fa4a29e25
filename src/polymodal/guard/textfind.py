"""Find all the text in an image, including text drawn so that a person would miss it.

Prompt injections reach vision-language models as text in the pixels: large and plain, but also
tiny in a corner, a few grey levels off its background, rotated, tiled faintly over a photo. The
models read all of it; a person (and a plain OCR pass) may not. `find_text` runs PP-OCR (see
backends/ocr.py) over several views of the image, each meant to reveal one way of hiding:

  plain      the image itself, detected at a resolution where text of ~1.5% of the image height is
             still 12+ pixels tall (short side ~768 px: photos are shrunk, small images enlarged
             up to 3x, the "upscaling for tiny type" every image gets), framed by EDGE_FRAME
             flat rows above and below: without them the detector gives a line of small type
             3 px from the top or bottom edge no text probability at all
  contrast   CLAHE (contrast-limited local histogram equalisation, cv2; 16 x 16 tiles, clip 16) on
             the luma, at 640 px: text a few grey levels off a flat background, or faint text
             tiled over a photo, comes out at full contrast
  margins    the bottom tenth of the image again, enlarged 1.6 times more than the plain view (at
             most 0.2 MP), framed like it: fine print lives in the footer, and 8-11 px type there
             reaches the plain view's detector only as broken weak boxes or not at all. The top
             edge and the middle get no such pass: it would cost as much again
  rotations  targeted strips: every line worth a second look (turned from horizontal, thin, or
             found only in an enhanced view) is cut out along its direction across the whole
             image, straightened, enlarged to ~32 px line boxes, mildly equalised when thin or
             faint, and detected again, so that a line found in pieces (a rotated line over
             clutter, tiny text running from a dark into a bright area) is read whole; with
             passes="all" also the whole image turned by +-45 degrees. Thin boxes the plain
             detector was unsure of (mean text probability 0.3-0.5, under its 0.5 threshold:
             tiny type over texture scores 0.45-0.49 at the plain view's scale) are read too,
             in one batch, and earn a strip when they read as 4+ letters or digits; they never
             become findings themselves (the strip must find the line)
  local      (all) local normalisation, (y - local mean) / (local std + 3): faint text over texture
  channels   (all) each of R, G, B with CLAHE, for text that differs from its background in hue only
  inverted   (all) the contrast view inverted, for the detector's polarity bias
  upscale    (all) the image enlarged 2x in overlapping tiles, for type below ~1% of the height
             (costly: ~4x the detector pixels of the image itself)

Detection runs on every view of the plan; pieces of one line are joined, boxes are mapped back
to original pixels and grouped (a box mostly inside another of about the same line height is the
same text); each group is recognised once, from the plain pixels first and from the contrast
view when the plain reading is unsure; a box is never read twice through one view, nor again
after a strip joins its group when it already reads surely, and it is read upside down (the
0/180 classifier's turn) only when its upright reading is unsure. The detector drops the ends
of tiny and faint lines where the background turns busy or bright (strips too: the last glyphs
before the image's edge, the rest of a faint tile), and the recogniser still reads them, so the
three most hidden thin lines (the shortest first among equals) are read again lengthened by 3
line heights at each end, in one batch; the longer reading replaces the line's when it reads
surely and holds more letters or digits (the box grows with it; hiddenness stays measured on
the line as found). The finding's source names the view that found it first.

Russian: PP-OCR's recogniser has no Cyrillic and reads Russian as Latin look-alikes ("Срочно"
-> "Cpo4Ho"). When some kept reading looks like that (`looks_cyrillic_as_latin`: look-alike
capitals after lowercase letters, 3/4/6/0 inside words, the few Cyrillic letters PP-OCR has),
every kept line of the image is read again by Tesseract (`rus+eng`, backends/tesseract.py, one
process per image) and takes Tesseract's reading where that is mostly Cyrillic. The trigger almost
never fires on English text or photos, so other images pay nothing. Without Tesseract the readings
stay PP-OCR's (a warning is logged once).

Hiddenness, measured on the original pixels of each finding's straightened line crop:

  contrast c   luma difference (ITU-R BT.601, 0-255) between the ink and its local background:
               background = median filter of the crop over a window of the line's height (ink
               covers well under half of any such window), ink = the pixels furthest from it in
               the dominant polarity; c = the median residual of the ink pixels
  height       rows of the crop holding ink / image height (relative_height)
  h_c = clip((60 - c) / 50, 0, 1)          # 10 grey levels or less: invisible; 60+: plain
  h_s = max(clip((0.025 - rel) / 0.015, 0, 1),   # under 1% of the image height: unreadable
            clip((8 - px) / 4, 0, 1))            # 4 pixels or less: unreadable at any zoom
  h_e = 1 if the text was found only in an enhanced view, else 0
  hidden = 1 - (1 - h_c) * (1 - h_s) * (1 - 0.5 * h_e)   (noisy-OR: any one cue suffices)

Cost: detection dominates and grows with pixels, so "auto" runs the detector on ~0.8 MP (plain)
plus ~0.3 MP (contrast) plus at most 0.2 MP (margin) whatever the image's size, strips only
around text already read (at most six, 0.25 MP each), and reads only line-shaped boxes; a photo
without text costs three detector runs and little else (about 0.5 CPU-seconds). Weak boxes and
lengthened readings add no detector pixels. The view sizes and CLAHE settings are the smallest that
keep small-corner, low-contrast and tiled text found; the measurements behind each, and the scan's
cost per megapixel, are in benchmarks/RESULTS.md (benchmarks/guard_textfind.py measures them).
Faint tiled text that no view's detector sees stays missed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import numpy as np

from polymodal.errors import InvalidInputError, require
from polymodal.guard.findings import TextFinding, warn_once

__all__ = ["ALL_PASSES", "AUTO_PASSES", "find_text", "hiddenness", "looks_cyrillic_as_latin", "measure_ink"]


ALL_PASSES = ("plain", "contrast", "margins", "rotations", "local", "channels", "inverted", "upscale")
AUTO_PASSES = ("plain", "contrast", "margins", "rotations")

PLAIN_SHORT = 768        # detector pixels on the short side for the plain view ...
PLAIN_LONG = 1152        # ... capped on the long side (a panorama is not enlarged past this)
MAX_UPSCALE = 3.0        # small images are enlarged at most this much (more adds no detail)
EDGE_FRAME = 32          # rows of flat border added above and below the plain view: the detector
                         # gives a line of small type within ~3 px of the top or bottom edge no
                         # text probability at all (a multiple of its 32-px stride keeps the image
                         # on the same grid; left and right edges cut only a line's end glyphs)
CONTRAST_LONG = 640      # the contrast view is detected at most this long (faint text is larger)
CLAHE_CLIP, CLAHE_GRID = 16.0, 16   # 16 x 16 tiles: a card or sign fills whole tiles
LOCAL_SIGMA = 16.0       # local normalisation window (Gaussian sigma) at CONTRAST_LONG pixels
STRIP_CLIP = 4.0
MARGIN = 0.1             # the bottom band of this share of the image height is detected again ...
MARGIN_ZOOM = 1.6        # ... enlarged this much more than the plain view ...
MARGIN_PIXELS = 200_000  # ... within this many detector pixels
MIN_CONFIDENCE = 0.6     # readings below this are dropped (junk on textures reads at 0.3-0.6)
SHORT_CONFIDENCE = 0.85  # ... and readings of 3 letters or digits or fewer below this ("NO",
                         # "AA": what textures read as when they read as text at all)
REREAD_BELOW = 0.85      # a reading below this (and above REREAD_ABOVE: text, unsure) is
REREAD_ABOVE = 0.5       # tried again from an enhanced view
ORIENT_SURE = 0.9        # a line read this surely as cut is not tried upside down
BOX_THRESH = 0.5         # the detector's mean text probability for a box (RapidOCR's default)
WEAK_BOX = 0.3           # ... and for a weak box (plain view), read only as evidence for a strip
WEAK_CHARS = 4           # a weak box must read this many letters or digits to earn a strip
MIN_ELONGATION = 1.2     # boxes less elongated than this are blobs, not lines, and not read
ROTATED_MIN_DEG = 8      # lines turned more than this get a straightened strip re-detected
STRIP_PIXELS = 250_000   # detector pixels at most per strip
STRIP_LINE = 32          # thin lines are enlarged to boxes this tall in their strip
MAX_STRIPS = 6           # strips per image at most
THIN_LINE = 0.035        # line boxes thinner than this share of the image height get a strip
READ_PAD = 0.3           # line boxes are lengthened by this many heights at each end to read
EXTEND = 3.0             # thin lines are read again lengthened this many heights at each end ...
MAX_EXTEND = 3           # ... at most this many per image (a reading costs ~0.1 s per 1000 px
                         # of crop width at 48 px height, about what 0.2 MP of detection costs)
JOIN_GAP = 1.6           # boxes on one line closer than this many heights are one line
CYRILLIC_TELLS = 2       # a reading with this many Cyrillic tells (looks_cyrillic_as_latin) ...
CYRILLIC_SHARE = 0.05    # ... making up this share of its letters sends the image to Tesseract
                         # (0.1 kept 10-px Russian such as 'nepeRAMno ccbuKe H noATBepAN' from it)
TESSERACT_MIN = 0.4      # Tesseract's reading replaces PP-OCR's from this confidence (and when
                         # most of its letters are Cyrillic): right readings of Russian lines
                         # over photos come at 0.5-0.9 (word noise from texture lowers them)


@dataclass
class _Candidate:
    quad: np.ndarray         # (4, 2) float32, original pixels, clockwise from top-left
    view: str                # the view whose detector found it
    score: float             # detector's mean probability inside the box
    area: float = 0.0
    order: int = 0           # detection order: plain first, then the views, strips, turns

    def __post_init__(self):
        self.area = float(abs(_polygon_area(self.quad)))


@dataclass
class _Group:
    members: list[_Candidate] = field(default_factory=list)

    @property
    def primary(self) -> _Candidate:
        return self.members[0]


# ----------------------------------------------------------------------------------------------
# Public API


def find_text(image, *, passes="auto", min_confidence: float = MIN_CONFIDENCE,
              threads: int | None = None) -> list[TextFinding]:
    """Every line of text in `image` (anything `polymodal.media.load_image` takes), read over
    enhanced views, de-duplicated, boxes in original pixels, each with its hiddenness measured
    (see the module docstring). `passes`: "auto" (plain, contrast, margins, targeted rotations: the
    fast default), "all" (every view, several times slower), or a list of names from
    `ALL_PASSES`. Findings are sorted top to bottom, left to right."""
    from polymodal.backends.ocr import get_engine
    from polymodal.media import load_image  # media is a lower room

    plan = _plan(passes)
    if not 0 <= min_confidence <= 1:
        raise InvalidInputError(f"min_confidence must be in [0, 1], got {min_confidence}")
    cv2 = require("cv2", "guard", "finding text in images")
    engine = get_engine(threads)
    rgb = np.asarray(load_image(image))
    scan = _Scan(rgb, engine, cv2)

    if "plain" in plan:
        scan.detect_view("plain", _plain_scale(*rgb.shape[:2]), weak=WEAK_BOX if "rotations" in plan else None,
                         frame=EDGE_FRAME)
    if "contrast" in plan:
        scan.detect_view("contrast", _view_scale(*rgb.shape[:2]))
    if "margins" in plan:
        scan.detect_margin()
    if "local" in plan:
        scan.detect_view("local", _view_scale(*rgb.shape[:2]))
    if "channels" in plan and not _is_grey(rgb):
        for name in ("channel:r", "channel:g", "channel:b"):
            scan.detect_view(name, _view_scale(*rgb.shape[:2]))
    if "inverted" in plan:
        scan.detect_view("inverted", _view_scale(*rgb.shape[:2]))
    if "upscale" in plan and _plain_scale(*rgb.shape[:2]) < 2.0:
        # (a small image's plain view is already enlarged 2x or more: tiles would repeat it)
        scan.detect_tiles("upscale", 2.0)
    if "rotations" in plan:
        # Strips only for lines that read as text: junk boxes on textures must not cost strips.
        read = scan.read_groups()
        found = [(g, r) for g, r in read if r is not None and r[1] >= min_confidence and _has_text(r[0])]
        found += scan.weak_lines([g for g, _ in read], min_confidence)
        for centre, angle, height, enhance in _strip_plan(found, rgb.shape[0]):
            scan.detect_strip(centre, angle, height, enhance)
        if passes == "all":
            for angle in (45, -45):
                scan.detect_rotated(angle)
    return scan.findings(min_confidence)


def measure_ink(grey: np.ndarray) -> tuple[float | None, int | None]:
    """(contrast, ink_rows) of a straightened text-line crop of luma values (h, w), or
    (None, None) when no ink stands out. See the module docstring for the method."""
    cv2 = require("cv2", "guard", "finding text in images")
    grey = np.asarray(grey, dtype=np.float32)
    h, w = grey.shape[:2]
    if h < 3 or w < 3:
        return None, None
    k = max(3, min(255, (h | 1)))  # odd window about the line's height
    background = cv2.medianBlur(np.clip(grey, 0, 255).astype(np.uint8), k).astype(np.float32)
    residual = grey - background
    strong = np.abs(residual) >= np.percentile(np.abs(residual), 90)
    polarity = 1.0 if residual[strong].sum() >= 0 else -1.0
    signed = residual * polarity
    peak = float(np.percentile(signed, 97))
    if peak <= 1.0:
        return None, None
    ink = signed >= 0.5 * peak
    contrast = float(np.median(signed[ink]))
    rows = np.nonzero(ink.sum(axis=1) >= max(1, 0.02 * w))[0]
    return contrast, int(rows[-1] - rows[0] + 1) if rows.size else None


def hiddenness(contrast: float | None, relative_height: float | None, height_px: float | None,
               enhanced_only: bool) -> float:
    """0 (plain sight) .. 1 (invisible to a person): the formula in the module docstring.
    Unknown measurements count as not hidden."""
    h_c = 0.0 if contrast is None else min(1.0, max(0.0, (60.0 - contrast) / 50.0))
    h_rel = 0.0 if relative_height is None else min(1.0, max(0.0, (0.025 - relative_height) / 0.015))
    h_px = 0.0 if height_px is None else min(1.0, max(0.0, (8.0 - height_px) / 4.0))
    h_s = max(h_rel, h_px)
    h_e = 1.0 if enhanced_only else 0.0
    return round(1.0 - (1.0 - h_c) * (1.0 - h_s) * (1.0 - 0.5 * h_e), 3)


# ----------------------------------------------------------------------------------------------
# The scan: detection over views, grouping, reading


def _plan(passes) -> tuple[str, ...]:
    if passes == "auto":
        return AUTO_PASSES
    if passes == "all":
        return ALL_PASSES
    if isinstance(passes, str):
        passes = [passes]
    try:
        names = tuple(passes)
    except TypeError:
        names = None
    bad = [p for p in names or () if p not in ALL_PASSES]
    if not names or bad:
        raise InvalidInputError(f"passes must be 'auto', 'all' or names from {', '.join(ALL_PASSES)}; "
                                f"got {passes!r}")
    return names


class _Scan:
    def __init__(self, rgb: np.ndarray, engine, cv2):
        self.rgb, self.engine, self.cv2 = rgb, engine, cv2
        self.h, self.w = rgb.shape[:2]
        self.candidates: list[_Candidate] = []
        self.weak: list[_Candidate] = []   # boxes the detector was unsure of (detect_view's `weak`)
        self._full_views: dict[str, np.ndarray] = {"plain": rgb}
        self._readings: dict[tuple, tuple | None] = {}
        self._crop_reads: dict[tuple, tuple[str, float, bool]] = {}

    # -- views ---------------------------------------------------------------------------------

    def view(self, name: str, image: np.ndarray) -> np.ndarray:
        """`image` (RGB) as seen through view `name`."""
        cv2 = self.cv2
        if name == "plain":
            return image
        if name in ("contrast", "inverted"):
            out = _clahe(cv2).apply(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
            return cv2.cvtColor(255 - out if name == "inverted" else out, cv2.COLOR_GRAY2RGB)
        if name == "local":
            return cv2.cvtColor(_local_norm(cv2, cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)), cv2.COLOR_GRAY2RGB)
        if name.startswith("channel:"):
            channel = image[:, :, "rgb".index(name[-1])]
            return cv2.cvtColor(_clahe(cv2).apply(np.ascontiguousarray(channel)), cv2.COLOR_GRAY2RGB)
        raise InvalidInputError(f"unknown view {name!r}")  # pragma: no cover - internal names

    def full_view(self, name: str) -> np.ndarray:
        if name not in self._full_views:
            self._full_views[name] = self.view(name, self.rgb)
        return self._full_views[name]

    def _resized(self, scale: float) -> np.ndarray:
        if abs(scale - 1.0) < 1e-3:
            return self.rgb
        cv2 = self.cv2
        size = (max(1, round(self.w * scale)), max(1, round(self.h * scale)))
        return cv2.resize(self.rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)

    # -- detection -----------------------------------------------------------------------------

    def detect_view(self, name: str, scale: float, weak: float | None = None, frame: int = 0) -> None:
        """Detect on the whole image seen through `name`, at `scale` (the view is computed on
        the resized image: cheaper, and CLAHE's tiles then span the same share of the scene).
        With `weak`, boxes whose mean text probability is between `weak` and BOX_THRESH are
        kept apart as weak evidence (see `weak_lines`); the detector runs once either way.
        `frame` rows of the mean colour of the view's top and bottom rows are added above and
        below it (EDGE_FRAME says why)."""
        cv2 = self.cv2
        small = self._resized(scale)
        view = self.view(name, small)
        view = _framed(cv2, view, frame)
        det = self.engine.detect(view, scale=1.0, box_thresh=BOX_THRESH if weak is None else weak)
        back = np.array([self.w / small.shape[1], self.h / small.shape[0]], dtype=np.float32)
        shift = np.array([0, frame], dtype=np.float32)
        if weak is not None:
            strong = [i for i, s in enumerate(det.scores) if s >= BOX_THRESH]
            faint = [i for i, s in enumerate(det.scores) if s < BOX_THRESH]
            for quad, score in _join_lines([det.boxes[i] for i in faint], [det.scores[i] for i in faint]):
                back_quad = np.clip((quad - shift) * back, 0, [self.w - 1, self.h - 1]).astype(np.float32)
                self.weak.append(_Candidate(back_quad, name, score))
            det = replace(det, boxes=det.boxes[strong], scores=[det.scores[i] for i in strong])
        self._add(det, name, lambda q: (q - shift) * back)

    def detect_margin(self) -> None:
        """Detect the bottom MARGIN of the image again, enlarged MARGIN_ZOOM times more than
        the plain view (within MARGIN_PIXELS), framed like it: fine print lives in the footer,
        and 8-11 px type there reaches the plain view's detector only as broken weak boxes."""
        cv2 = self.cv2
        top = int(self.h * (1 - MARGIN))
        band = self.rgb[top:]
        scale = min(MARGIN_ZOOM * _plain_scale(self.h, self.w), math.sqrt(MARGIN_PIXELS / max(1, band.size // 3)))
        if scale <= _plain_scale(self.h, self.w) * 1.1:
            return
        view = cv2.resize(band, (round(band.shape[1] * scale), round(band.shape[0] * scale)), interpolation=cv2.INTER_LINEAR)
        view = _framed(cv2, view, EDGE_FRAME)
        det = self.engine.detect(view, scale=1.0, box_thresh=BOX_THRESH)
        back = np.array([band.shape[1] / view.shape[1], band.shape[0] / (view.shape[0] - 2 * EDGE_FRAME)], np.float32)
        shift = np.array([0, EDGE_FRAME], np.float32)
        offset = np.array([0, top], np.float32)
        self._add(det, "margin", lambda q: (q - shift) * back + offset)

    def detect_tiles(self, name: str, factor: float, tile: int = 640) -> None:
        """Detect on overlapping tiles of the image enlarged `factor` times (plain view)."""
        step = max(64, int(tile / factor * 0.8))
        size = max(64, int(tile / factor))
        for y in range(0, max(1, self.h - size // 5), step):
            for x in range(0, max(1, self.w - size // 5), step):
                patch = self.rgb[y:y + size, x:x + size]
                if min(patch.shape[:2]) < 8:
                    continue
                det = self.engine.detect(patch, scale=factor)
                offset = np.array([x, y], np.float32)
                self._add(det, name, lambda q: q + offset)

    def detect_strip(self, centre: np.ndarray, angle: float, height: float, enhance: bool) -> None:
        """Cut the strip 3 line-heights tall along the line through `centre` at `angle`
        degrees, across the whole image; straighten it, enlarge it when the line is thin,
        equalise it (CLAHE in square tiles) when `enhance`, and detect on it: a rotated, tiny or
        faint line found in pieces is found whole (a strip costs a few percent of the image's
        pixels)."""
        cv2 = self.cv2
        rad = math.radians(angle)
        u = np.array([math.cos(rad), -math.sin(rad)], dtype=np.float32)  # along the line
        n = np.array([math.sin(rad), math.cos(rad)], dtype=np.float32)   # across it, downwards
        t0, t1 = _line_extent(centre, u, self.w, self.h)
        half_h = 1.5 * height
        # enlarge thin lines to STRIP_LINE px boxes, within a budget of detector pixels
        scale = max(1.0, STRIP_LINE / max(height, 1.0))
        scale = min(scale, math.sqrt(STRIP_PIXELS / max(1.0, (t1 - t0) * 2 * half_h)))
        out_w, out_h = max(32, int((t1 - t0) * scale)), max(32, int(2 * half_h * scale))
        # The strip's corners top-left, top-right, bottom-left in the image -> the output's.
        src = np.array([centre + t0 * u - half_h * n, centre + t1 * u - half_h * n,
                        centre + t0 * u + half_h * n], dtype=np.float32)
        dst = np.array([[0, 0], [out_w, 0], [0, out_h]], dtype=np.float32)
        forward = cv2.getAffineTransform(src, dst)
        # Outside the image: flat grey (replicated edges make streaks the detector takes for text).
        strip = cv2.warpAffine(self.rgb, forward, (out_w, out_h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
        if enhance:
            grey = cv2.cvtColor(strip, cv2.COLOR_RGB2GRAY)
            # mild: a strip is mostly the line's own background, which strong clipping limits
            # would turn into texture the detector breaks the line at
            clahe = cv2.createCLAHE(clipLimit=STRIP_CLIP, tileGridSize=(max(1, out_w // out_h), 1))
            strip = cv2.cvtColor(clahe.apply(grey), cv2.COLOR_GRAY2RGB)
        det = self.engine.detect(strip, scale=1.0)
        inverse = cv2.invertAffineTransform(forward)
        self._add(det, f"strip:{round(angle)}", lambda q: _affine(q, inverse))

    def detect_rotated(self, angle: float) -> None:
        """Detect on the whole image turned by `angle` degrees (counter-clockwise)."""
        cv2 = self.cv2
        scale = min(1.0, CONTRAST_LONG / max(self.h, self.w))
        centre = (self.w / 2, self.h / 2)
        forward = cv2.getRotationMatrix2D(centre, angle, scale)
        cos, sin = abs(forward[0, 0]), abs(forward[0, 1])
        out_w, out_h = int(self.h * sin + self.w * cos), int(self.h * cos + self.w * sin)
        forward[0, 2] += out_w / 2 - centre[0]
        forward[1, 2] += out_h / 2 - centre[1]
        turned = cv2.warpAffine(self.rgb, forward, (out_w, out_h), borderMode=cv2.BORDER_REPLICATE)
        det = self.engine.detect(turned, scale=1.0)
        inverse = cv2.invertAffineTransform(forward)
        self._add(det, f"rotate:{angle}", lambda q: _affine(q, inverse))

    def _add(self, det, view: str, to_original) -> None:
        """Join the pieces of each line in the detector's own frame, map the boxes back to
        original pixels (keeping the point order: p0 -> p1 runs along the text, so the line crop
        comes out upright even for turned views) and keep them as candidates."""
        for quad, score in _join_lines(list(det.boxes), list(det.scores)):
            back = _centred_inside(np.asarray(to_original(quad), dtype=np.float32), self.h)
            back[:, 0] = np.clip(back[:, 0], 0, self.w - 1)
            back[:, 1] = np.clip(back[:, 1], 0, self.h - 1)
            self.candidates.append(_Candidate(back, view, score, order=len(self.candidates)))

    # -- reading -------------------------------------------------------------------------------

    def read_groups(self) -> list[tuple[_Group, tuple | None]]:
        """Group the candidates found so far and read each group (readings are cached by the
        group's primary box, so reading again after more detection only reads what changed)."""
        out = []
        for group in _group(self.candidates):
            key = (id(group.primary), frozenset(_pixel_view(m.view) for m in group.members))
            if key not in self._readings:
                self._readings[key] = self._read_group(group)
            out.append((group, self._readings[key]))
        return out

    def weak_lines(self, groups: list[_Group], min_confidence: float) -> list[tuple[_Group, tuple]]:
        """(group, reading) of each weak box (see `detect_view`) that is a thin line outside the
        groups found so far and reads as text (WEAK_CHARS or more): tiny type the detector is
        unsure of at the plain view's scale (its boxes on the benchmark's small-corner lines
        score 0.39-0.49 there) is found whole by the strip this earns. Weak boxes never become findings themselves. They are read in one
        batch, upright only; photos have few (64 in 280 photos, 2 of which read as text)."""
        todo = []
        for cand in self.weak:
            if not _line_shaped(cand.quad) or _height(cand.quad) >= THIN_LINE * self.h:
                continue
            if any(_intersection(cand.quad, g.primary.quad) >= 0.6 * cand.area for g in groups):
                continue  # a line already found
            todo.append(cand)
        crops = [self.engine.crop_line(self.full_view(c.view), _pad_ends(c.quad, READ_PAD, self.w, self.h))
                 for c in todo]
        return [(_Group([cand]), (text, conf, cand.quad, cand.view, False))
                for cand, (text, conf) in zip(todo, self.engine.recognize(crops))
                if conf >= min_confidence and sum(ch.isalnum() for ch in text) >= WEAK_CHARS]

    def findings(self, min_confidence: float) -> list[TextFinding]:
        cv2 = self.cv2
        kept = []
        for group, reading in self.read_groups():
            if reading is None:
                continue
            text, conf = reading[:2]
            if conf < min_confidence or not _has_text(text):
                continue
            if sum(ch.isalnum() for ch in text) <= 3 and conf < max(min_confidence, SHORT_CONFIDENCE):
                continue
            # hiddenness is measured on the line as found: the detector's box is the surest ink
            enhanced_only = all(m.view != "plain" for m in group.members)
            line = cv2.cvtColor(self.engine.crop_line(self.rgb, reading[2]), cv2.COLOR_RGB2GRAY)
            contrast, ink_rows = measure_ink(line)
            rel = ink_rows / self.h if ink_rows else None
            hidden = hiddenness(contrast, rel, ink_rows, enhanced_only)
            kept.append((group, reading, (contrast, rel, enhanced_only, hidden)))
        longer = self._extended([r for _, r, _ in kept], [m[3] for _, _, m in kept])
        readings = [e or r for (_, r, _), e in zip(kept, longer)]
        findings = []
        for (group, _, measured), reading, (text, conf) in zip(kept, readings, self._reread_cyrillic(readings)):
            contrast, rel, enhanced_only, hidden = measured
            quad, flipped = reading[2], reading[4]
            found_by = min(group.members, key=lambda m: m.order).view
            rotation = int(round(_angle(quad))) + (180 if flipped else 0)
            findings.append(TextFinding(
                text=text, box=_aabb(quad, self.w, self.h), confidence=round(conf, 4),
                source=f"ocr:{found_by}", rotation=((rotation + 180) % 360) - 180,
                contrast=None if contrast is None else round(contrast, 1),
                relative_height=None if rel is None else round(rel, 4), enhanced_only=enhanced_only,
                hidden=hidden))
        findings.sort(key=lambda f: (f.box[1] // 8, f.box[0]))
        return findings

    def _extended(self, readings: list[tuple], hidden: list[float]) -> list[tuple | None]:
        """Per reading: the reading of its line lengthened by EXTEND heights at each end, when
        it reads surely (REREAD_BELOW) and more letters or digits than the line as found; else
        None. Only thin lines (text drawn to be seen is found whole), the MAX_EXTEND most
        `hidden` of them, read in one batch, each crop the way up its line was read."""
        thin = [i for i, r in enumerate(readings) if _height(r[2]) < THIN_LINE * self.h]
        # the most hidden first, then the shortest (a line cut short is short, and cheap to read)
        todo = sorted(thin, key=lambda i: (-round(hidden[i], 1), _length(readings[i][2])))[:MAX_EXTEND]
        longer = {i: _pad_ends(readings[i][2], EXTEND - READ_PAD, self.w, self.h) for i in todo}
        crops = []
        for i in todo:
            crop = self.engine.crop_line(self.full_view(readings[i][3]), _pad_ends(longer[i], READ_PAD, self.w, self.h))
            crops.append(np.ascontiguousarray(crop[::-1, ::-1]) if readings[i][4] else crop)
        out: list[tuple | None] = [None] * len(readings)
        for i, (text, conf) in zip(todo, self.engine.recognize(crops)):
            text0, _, _, view, flipped = readings[i]
            if conf >= REREAD_BELOW and sum(ch.isalnum() for ch in text) > sum(ch.isalnum() for ch in text0):
                out[i] = (text, conf, longer[i], view, flipped)
        return out

    def _reread_cyrillic(self, readings: list[tuple]) -> list[tuple[str, float]]:
        """(text, confidence) of each kept line: Tesseract's reading where it reads Russian,
        else PP-OCR's. Only when some reading looks like Cyrillic read as Latin (PP-OCR has no
        Cyrillic) does Tesseract run, once for the whole image, over every kept line; a line
        takes Tesseract's reading (and confidence) when most of its letters are Cyrillic and
        Tesseract's confidence is TESSERACT_MIN or more. (PP-OCR's confidence already passed
        `min_confidence`: the line is text; Latin look-alikes are what made PP-OCR unsure.)"""
        from polymodal.backends import tesseract

        out = [(r[0], r[1]) for r in readings]
        if not any(looks_cyrillic_as_latin(text) for text, _ in out):
            return out
        if not tesseract.available():
            warn_once("find_text: a line looks like Russian read as Latin letters, but Tesseract "
                       "with Russian is not installed, so it keeps PP-OCR's Latin reading; install "
                       "it with: apt-get install tesseract-ocr tesseract-ocr-rus")
            return out
        crops = []
        for _, _, quad, view, flipped in readings:
            crop = self.engine.crop_line(self.full_view(view), _pad_ends(quad, READ_PAD, self.w, self.h))
            crops.append(np.ascontiguousarray(crop[::-1, ::-1]) if flipped else crop)
        try:
            again = tesseract.read_lines(crops)
        except tesseract.TesseractUnavailableError as exc:
            warn_once(f"find_text: Tesseract failed, keeping PP-OCR's readings: {exc}")
            return out
        for i, (text, conf) in enumerate(again):
            if conf >= TESSERACT_MIN and _cyrillic_share(text) >= 0.5:
                out[i] = (text, conf)
        return out

    def _read_group(self, group: _Group):
        """Read the group's largest box through the view that found it (the plain image when
        the plain detector was among them); when the reading is unsure but looks like text, try
        the other views; keep the best. Boxes that are not line-shaped are not read (blobs on
        textures; two glyphs already make a box 1.3 times as long as tall)."""
        primary = group.primary
        if not _line_shaped(primary.quad):
            return None
        views = []
        for m in group.members:
            pixel_view = _pixel_view(m.view)
            if pixel_view not in views:
                views.append(pixel_view)
        if "plain" in views:
            views.remove("plain")
            views.insert(0, "plain")
        if "contrast" not in views:
            views.append("contrast")
        best = None
        quad = _pad_ends(primary.quad, READ_PAD, self.w, self.h)
        # A line already read surely through some view (before a strip added a member from
        # another view to its group) is not read again.
        done = [(self._crop_reads[(v, quad.tobytes())], v) for v in views if (v, quad.tobytes()) in self._crop_reads]
        if done:
            (text, conf, flipped), view = max(done, key=lambda d: d[0][1])
            if conf >= REREAD_BELOW:
                return text, conf, primary.quad, view, flipped
        for view in views:
            text, conf, flipped = self._read_crop(view, quad)
            if best is None or conf > best[1]:
                best = (text, conf, primary.quad, view, flipped)
            if best[1] >= REREAD_BELOW or best[1] < REREAD_ABOVE or not _has_text(best[0]):
                break
        return best

    def _read_crop(self, view: str, quad: np.ndarray) -> tuple[str, float, bool]:
        """(text, confidence, turned) of the line `quad` cut from the whole-image `view`; cached,
        so a group re-read after more detection does not read the same pixels again. The line
        is read as cut first; the 0/180 classifier's verdict is only tried when that reading is
        unsure (the classifier is wrong now and then on upright lines, and reading costs ~10x
        classifying)."""
        key = (view, quad.tobytes())
        if key not in self._crop_reads:
            crop = self.engine.crop_line(self.full_view(view), quad)
            text, conf = self.engine.recognize([crop])[0]
            best = (text, conf, False)
            if conf < ORIENT_SURE:
                turned, angles = self.engine.classify([crop])
                if angles[0] == 180:
                    text, conf = self.engine.recognize(turned)[0]
                    if conf > best[1]:
                        best = (text, conf, True)
            self._crop_reads[key] = best
        return self._crop_reads[key]


# ----------------------------------------------------------------------------------------------
# Geometry and small helpers


def _framed(cv2, view: np.ndarray, frame: int) -> np.ndarray:
    """`view` (H, W, 3) with `frame` rows of the mean colour of its top and bottom two rows added
    above and below (EDGE_FRAME says why); unchanged when `frame` is 0."""
    if not frame:
        return view
    edge = np.concatenate([view[:2].reshape(-1, 3), view[-2:].reshape(-1, 3)]).mean(axis=0)
    return cv2.copyMakeBorder(view, frame, frame, 0, 0, cv2.BORDER_CONSTANT, value=edge.tolist())


def _pixel_view(view: str) -> str:
    """The pixel transform of a view: geometric views (strips, turns, tiles) read plain pixels."""
    return "plain" if view.startswith(("rotate:", "strip:", "upscale", "margin")) else view


def _local_norm(cv2, grey: np.ndarray) -> np.ndarray:
    """(y - local mean) / (local std + 3), mapped around 128: faint text over texture (tiled at
    low opacity) comes out where CLAHE's clip limit holds it back."""
    f = grey.astype(np.float32)
    sigma = LOCAL_SIGMA * max(grey.shape) / CONTRAST_LONG  # the same share of the scene at any size
    mean = cv2.GaussianBlur(f, (0, 0), sigma)
    std = np.sqrt(cv2.GaussianBlur((f - mean) ** 2, (0, 0), sigma))
    return np.clip(128 + 40 * (f - mean) / (std + 3.0), 0, 255).astype(np.uint8)


def _clahe(cv2):
    return cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=(CLAHE_GRID, CLAHE_GRID))


def _plain_scale(h: int, w: int) -> float:
    return min(PLAIN_SHORT / min(h, w), PLAIN_LONG / max(h, w), MAX_UPSCALE)


def _view_scale(h: int, w: int) -> float:
    """Scale of the whole-image enhanced views: at most CONTRAST_LONG long."""
    return min(CONTRAST_LONG / max(h, w), MAX_UPSCALE)


def _is_grey(rgb: np.ndarray) -> bool:
    sample = rgb[::7, ::7].astype(np.int16)
    return int(np.abs(sample - sample[:, :, :1]).max()) <= 8


def _polygon_area(q: np.ndarray) -> float:
    x, y = q[:, 0], q[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _angle(quad: np.ndarray) -> float:
    """Degrees the box's top edge is turned counter-clockwise from horizontal (y points down)."""
    dx, dy = quad[1] - quad[0]
    return math.degrees(math.atan2(-dy, dx))


def _line_shaped(quad: np.ndarray) -> bool:
    """The box is at least MIN_ELONGATION times as long as it is tall (a line, not a blob)."""
    sides = sorted((np.linalg.norm(quad[1] - quad[0]), np.linalg.norm(quad[3] - quad[0])))
    return sides[1] >= MIN_ELONGATION * sides[0]


def _length(quad: np.ndarray) -> float:
    """The box's side along the text (p0 -> p1)."""
    return float(np.linalg.norm(quad[1] - quad[0]))


def _height(quad: np.ndarray) -> float:
    """The box's short side: the line height for a line box."""
    return float(min(np.linalg.norm(quad[3] - quad[0]), np.linalg.norm(quad[1] - quad[0])))


def _line_extent(centre: np.ndarray, u: np.ndarray, w: int, h: int) -> tuple[float, float]:
    """The range of t for which centre + t * u lies inside the image (slab clipping)."""
    lo, hi = -math.inf, math.inf
    for c, d, size in ((centre[0], u[0], w), (centre[1], u[1], h)):
        if abs(d) < 1e-9:
            continue
        a, b = (0 - c) / d, (size - 1 - c) / d
        lo, hi = max(lo, min(a, b)), min(hi, max(a, b))
    return float(lo), float(hi)


def _strip_plan(found, image_h: int) -> list[tuple[np.ndarray, float, float, bool]]:
    """(centre, angle, height, enhance) of one strip per line worth a second look among the
    read groups: lines turned from horizontal (may be in pieces), thin lines and lines only an
    enhanced view found (may continue where the first detectors lost them; equalised). Turned
    lines first, then the thinnest; at most MAX_STRIPS. A strip crosses the whole image: the
    detectors lose tiny lines for long stretches (a strip reaching only 6 line heights past the
    pieces read loses 4 of 32 small-corner canaries in benchmarks/guard_textfind.py)."""
    wanted = []
    for group, _ in found:
        quad = group.primary.quad
        angle, height = _angle(quad), _height(quad)
        turned = ROTATED_MIN_DEG <= abs(angle) <= 90 - ROTATED_MIN_DEG
        thin = height < THIN_LINE * image_h
        faint = all(m.view != "plain" for m in group.members)
        if turned or thin or faint:
            wanted.append((not turned, height, quad.mean(axis=0), angle, thin or faint))
    strips: list[tuple[np.ndarray, float, float, bool]] = []
    for _, height, centre, angle, enhance in sorted(wanted, key=lambda x: x[:2]):
        if any(abs(angle - a) < 5 and _line_distance(centre, c, a) < h for c, a, h, _ in strips):
            continue  # the same line as a strip already planned
        strips.append((centre, angle, height, enhance))
    return strips[:MAX_STRIPS]


def _line_distance(point: np.ndarray, centre: np.ndarray, angle: float) -> float:
    rad = math.radians(angle)
    n = np.array([math.sin(rad), math.cos(rad)])
    return abs(float(np.dot(point - centre, n)))


def _affine(quad: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return (np.hstack([quad, np.ones((len(quad), 1), np.float32)]) @ matrix.T).astype(np.float32)


def _frame(quad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors along the text (p0 -> p1) and across it (towards p3)."""
    u = quad[1] - quad[0]
    u = u / max(float(np.linalg.norm(u)), 1e-6)
    n = np.array([-u[1], u[0]], dtype=np.float32)
    if np.dot(quad[3] - quad[0], n) < 0:
        n = -n
    return u.astype(np.float32), n


def _rect(points: np.ndarray, u: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The rectangle along (u, n) around `points`, clockwise from top-left in that frame."""
    s, t = points @ u, points @ n
    corners = [(s.min(), t.min()), (s.max(), t.min()), (s.max(), t.max()), (s.min(), t.max())]
    return np.array([a * u + b * n for a, b in corners], dtype=np.float32)


def _join_lines(quads: list[np.ndarray], scores: list[float]) -> list[tuple[np.ndarray, float]]:
    """Join boxes that are pieces of one line: about the same angle and height, on the same
    baseline, less than JOIN_GAP heights apart (detectors break lines at busy backgrounds and
    at low-contrast stretches; the recogniser reads a whole line better than its pieces)."""
    items = [(np.asarray(q, np.float32), float(s)) for q, s in zip(quads, scores)]
    merged = True
    while merged:
        merged = False
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                joined = _join_pair(items[i][0], items[j][0])
                if joined is not None:
                    items[i] = (joined, max(items[i][1], items[j][1]))
                    del items[j]
                    merged = True
                    break
            if merged:
                break
    return items


def _join_pair(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    ha, hb = _height(a), _height(b)
    if not (0.67 <= ha / max(hb, 1e-3) <= 1.5):
        return None
    wa, wb = float(np.linalg.norm(a[1] - a[0])), float(np.linalg.norm(b[1] - b[0]))
    if wa < ha or wb < hb:
        return None  # not line-shaped: no direction to join along
    diff = abs(_angle(a) - _angle(b)) % 180
    if min(diff, 180 - diff) > 6:
        return None
    u, n = _frame(a)
    h = max(ha, hb)
    if abs(float(np.dot(b.mean(axis=0) - a.mean(axis=0), n))) > 0.4 * h:
        return None
    sa, sb = a @ u, b @ u
    gap = max(float(sb.min() - sa.max()), float(sa.min() - sb.max()))
    if gap > JOIN_GAP * h:
        return None
    return _rect(np.vstack([a, b]), u, n)


def _centred_inside(quad: np.ndarray, h: int) -> np.ndarray:
    """A box that runs past the image's top or bottom (a line along the edge, detected with
    EDGE_FRAME), trimmed by as much on its other side: the detector's boxes are centred on their
    line, about twice its height, and a box cut on one side only would hold a band of the
    background on the other, which the hiddenness measurement would take for a taller line."""
    below, above = float(quad[:, 1].max()) - (h - 1), -float(quad[:, 1].min())
    if below <= 0 and above <= 0:
        return quad
    out = quad.copy()
    centre = float(quad[:, 1].mean())
    upper, lower = out[:, 1] < centre, out[:, 1] > centre
    if below > 0:
        out[upper, 1] = np.minimum(out[upper, 1] + below, centre)
    if above > 0:
        out[lower, 1] = np.maximum(out[lower, 1] - above, centre)
    return out


def _pad_ends(quad: np.ndarray, pad: float, w: int, h: int) -> np.ndarray:
    """The box lengthened by `pad` line heights at both ends (detectors cut end glyphs)."""
    u, _ = _frame(quad)
    grow = pad * _height(quad) * u
    out = quad.copy()
    out[[0, 3]] -= grow
    out[[1, 2]] += grow
    out[:, 0] = np.clip(out[:, 0], 0, w - 1)
    out[:, 1] = np.clip(out[:, 1], 0, h - 1)
    return out


def _aabb(quad: np.ndarray, w: int, h: int) -> list[int]:
    x0, y0 = np.floor(quad.min(axis=0))
    x1, y1 = np.ceil(quad.max(axis=0))
    return [int(max(0, x0)), int(max(0, y0)), int(min(w, x1)), int(min(h, y1))]


def _intersection(a: np.ndarray, b: np.ndarray) -> float:
    import cv2

    area, _ = cv2.intersectConvexConvex(a.astype(np.float32), b.astype(np.float32))
    return float(area)


def _group(candidates: list[_Candidate], contain: float = 0.6) -> list[_Group]:
    """Largest first; a candidate mostly (by `contain` of its area) inside a group's primary box,
    and of a similar line height (a line inside a big blob is a line of its own), joins that
    group. Axis-aligned boxes pre-filter the polygon test."""
    groups: list[_Group] = []
    boxes: list[np.ndarray] = []
    for cand in sorted(candidates, key=lambda c: -c.area):
        lo, hi = cand.quad.min(axis=0), cand.quad.max(axis=0)
        height = _height(cand.quad)
        placed = False
        for group, (glo, ghi) in zip(groups, boxes):
            if (lo >= ghi).any() or (hi <= glo).any():
                continue
            if not 0.5 <= height / max(_height(group.primary.quad), 1e-3) <= 2.0:
                continue
            if cand.area > 0 and _intersection(cand.quad, group.primary.quad) >= contain * cand.area:
                group.members.append(cand)
                placed = True
                break
        if not placed:
            groups.append(_Group([cand]))
            boxes.append((lo, hi))
    return groups


_CYRILLIC = re.compile("[\u0400-\u04ff]")
_WORD = re.compile("[0-9A-Za-z\u0400-\u04ff]+")
# Latin capitals PP-OCR reads lowercase Cyrillic letters as (в н к м т ш с о р и -> B H K M T W
# C O P N), right after a lowercase letter ...
_INNER_CAP = re.compile("(?<=[a-z\u0430-\u044f])[BHKMTWCOPN]")
# ... and digits it reads Cyrillic letters as (З Ч Б О -> 3 4 6 0), next to a letter.
_DIGIT_GLYPH = re.compile("(?<=[A-Za-z])[0346]|[0346](?=[A-Za-z])")


def _cyrillic_tells(text: str) -> int:
    """Signs of Russian read by a recogniser without Cyrillic ("ВНИМАНИЕ, модель" ->
    "BHNMaHNe, mOeJb", "замени" -> "3aMeHИ", "СРОЧНО" -> "CPO4HO"): Cyrillic characters (PP-OCR
    knows a few), a look-alike capital right after a lowercase letter (lowercase н, в, к, м, т,
    ш look like Latin capitals), and 3/4/6/0 touching a letter (з, ч, б, о). English in capitals
    ("INSTRUCTIos", a misread), canary codes and ordinary words give few of these."""
    n = len(_CYRILLIC.findall(text))
    for word in _WORD.findall(text):
        if sum(ch.isalpha() for ch in word) >= 2:
            n += len(_INNER_CAP.findall(word)) + len(_DIGIT_GLYPH.findall(word))
    return n


def looks_cyrillic_as_latin(text: str) -> bool:
    """True when a reading looks like Russian read as Latin letters: at least CYRILLIC_TELLS
    tells (see `_cyrillic_tells`), at least CYRILLIC_SHARE of its letters. Small type is read with
    few tells per letter, hence a low share; where it fires on the benchmark's readings (Russian
    and English images, photos) is in benchmarks/RESULTS.md."""
    tells = _cyrillic_tells(text)
    return tells >= CYRILLIC_TELLS and tells >= CYRILLIC_SHARE * sum(ch.isalpha() for ch in text)


def _cyrillic_share(text: str) -> float:
    letters = [ch for ch in text if ch.isalpha()]
    return sum(bool(_CYRILLIC.match(ch)) for ch in letters) / len(letters) if letters else 0.0




def _has_text(text: str) -> bool:
    """At least two letters or digits: single glyphs are what textures read as."""
    return sum(ch.isalnum() for ch in text) >= 2
