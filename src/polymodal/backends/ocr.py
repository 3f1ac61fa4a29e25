"""OCR engine adapter: PP-OCR (detection, orientation, recognition) through RapidOCR on ONNX Runtime.

RapidOCR ships the PP-OCRv4 detector (DB, a per-pixel text probability map), the mobile 0/180
degree line classifier and the PP-OCRv4 recogniser (CTC over ~6,600 Chinese and Latin characters)
inside its wheel, so this works offline. `RapidOCR.__call__` runs all three on one image; here the
parts are exposed separately (`detect`, `classify`, `recognize`, `crop_line`) so that a caller can
detect on several cheap views of an image and recognise each line once (see guard/textfind.py).

Conventions: images in and out are uint8 RGB arrays (H, W, 3); the PP-OCR models were trained on
BGR (cv2.imread) input, which the adapter converts to. Boxes are float32 (4, 2) arrays of (x, y)
points clockwise from top-left, in the pixels of the image given to `detect`.

Threads: RapidOCR's three ONNX Runtime sessions are replaced by sessions made here, each with
`threads` intra-op threads (default: the CPUs this process may use, 2 on the build machines), one
inter-op thread (the graphs are sequential chains) and no spinning: pool threads that busy-wait
between operators take the cores from everything else on a shared machine (and make CPU time
meaningless as a measure of work); on an idle 2-core machine it costs ~5% latency.
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass

import numpy as np

from polymodal.errors import InvalidInputError, require

__all__ = ["Detection", "OcrEngine", "OcrLine", "get_engine"]

#: The detector needs sides that are multiples of 32 (five stride-2 stages).
_STRIDE = 32


@dataclass
class OcrLine:
    box: list[list[float]]   # 4 points [[x, y], ...] clockwise from top-left, input pixels
    text: str
    confidence: float        # recogniser: mean per-character probability, 0..1
    det_score: float | None  # detector: mean text probability inside the box, 0..1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Detection:
    boxes: np.ndarray            # (N, 4, 2) float32, points in the pixels of the input image
    scores: list[float]          # mean probability inside each box
    prob: np.ndarray | None      # (h, w) float32 text probability at the detector's resolution
    scale: float                 # detector pixels per input pixel (prob.shape ~ input * scale)


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _check_rgb(image, what: str = "image") -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise InvalidInputError(f"{what} must be a uint8 RGB array of shape (H, W, 3), got {dtype} "
                                f"{shape}; convert with numpy.asarray(polymodal.media.load_image(x))")
    if min(image.shape[:2]) < 1:
        raise InvalidInputError(f"{what} is empty (shape {image.shape})")
    return image


class OcrEngine:
    """PP-OCRv4 through RapidOCR, with detection, orientation and recognition callable apart.

    threads: intra-op threads per ONNX Runtime session (default: the CPUs this process may use).
    """

    def __init__(self, *, threads: int | None = None):
        threads = _default_threads() if threads is None else int(threads)
        if threads < 1:
            raise InvalidInputError(f"threads must be at least 1, got {threads}")
        rapidocr = require("rapidocr_onnxruntime", "guard", "OCR (reading text in images)")
        self.cv2 = require("cv2", "guard", "OCR (reading text in images)")
        self.threads = threads
        ort = require("onnxruntime", "guard", "OCR (reading text in images)")
        self._ocr = rapidocr.RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)
        self._det = self._ocr.text_det
        self._cls = self._ocr.text_cls
        self._rec = self._ocr.text_rec
        for holder in (self._det.infer, self._cls.infer, self._rec.session):
            holder.session = _session(ort, holder.session._model_path, threads)
        self._det_input = self._det.infer.session.get_inputs()[0].name
        # The sessions are not re-entrant in RapidOCR (post-processing state lives on the objects).
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------
    # Detection

    def detect(self, image: np.ndarray, *, max_side: int = 960, scale: float | None = None,
               box_thresh: float = 0.5, unclip_ratio: float = 1.6, return_prob: bool = False) -> Detection:
        """Text line boxes in `image` (uint8 RGB). The detector sees the image resized by `scale`
        (enlarging too), or by default shrunk to at most `max_side` pixels on the longer side;
        its sides are rounded to multiples of 32. `box_thresh` is the minimum mean text
        probability of a box. Cost grows with the detector's pixels (about 0.4 CPU-seconds per
        megapixel here)."""
        cv2 = self.cv2
        image = _check_rgb(image)
        h, w = image.shape[:2]
        if scale is None:
            scale = min(1.0, max_side / max(h, w))
        elif not scale > 0:
            raise InvalidInputError(f"scale must be positive, got {scale}")
        dh = max(_STRIDE, int(round(h * scale / _STRIDE)) * _STRIDE)
        dw = max(_STRIDE, int(round(w * scale / _STRIDE)) * _STRIDE)
        small = cv2.resize(image, (dw, dh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        # (1, 3, dh, dw) BGR in [-1, 1], as PP-OCR's DetResizeForTest + NormalizeImage give
        x = (small[:, :, ::-1].astype(np.float32) * (2 / 255.0) - 1.0).transpose(2, 0, 1)[None]
        with self._lock:
            prob = self._det.infer.session.run(None, {self._det_input: np.ascontiguousarray(x)})[0][0, 0]
            post = self._det.postprocess_op
            post.box_thresh, post.unclip_ratio = box_thresh, unclip_ratio
            # boxes come back in input pixels: the post-processor rescales from the map's size
            boxes, scores = post(prob[None, None], (h, w))
        kept, kept_scores = [], []
        for box, score in zip(boxes, scores):
            box = self._det.clip_det_res(self._det.order_points_clockwise(box.astype(np.float32)), h, w)
            if np.linalg.norm(box[0] - box[1]) > 3 and np.linalg.norm(box[0] - box[3]) > 3:
                kept.append(box)
                kept_scores.append(float(score))
        arr = np.array(kept, dtype=np.float32).reshape(-1, 4, 2)
        return Detection(arr, kept_scores, prob.astype(np.float32) if return_prob else None, dw / w)

    # ------------------------------------------------------------------------------------------
    # Line crops, orientation, recognition

    def crop_line(self, image: np.ndarray, box) -> np.ndarray:
        """The text line inside `box` (4 points), straightened by a perspective warp to an upright
        (h, w, 3) strip; turned 90 degrees when it comes out much taller than wide (vertical)."""
        cv2 = self.cv2
        pts = np.asarray(box, dtype=np.float32).reshape(4, 2)
        width = int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3])))
        height = int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2])))
        width, height = max(width, 1), max(height, 1)
        target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
        warp = cv2.getPerspectiveTransform(pts, target)
        strip = cv2.warpPerspective(image, warp, (width, height), borderMode=cv2.BORDER_REPLICATE,
                                    flags=cv2.INTER_CUBIC)
        if height / width >= 1.5:
            strip = np.ascontiguousarray(np.rot90(strip))
        return strip

    def classify(self, crops: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
        """Turn upside-down line crops the right way up: (crops, angles) with angle 0 or 180 per
        crop (the classifier's call, applied only above its 0.9 confidence)."""
        if not crops:
            return [], []
        bgr = [np.ascontiguousarray(c[:, :, ::-1]) for c in crops]
        with self._lock:
            out, results, _ = self._cls(bgr)
        angles = [180 if label == "180" and conf > self._cls.cls_thresh else 0 for label, conf in results]
        return [np.ascontiguousarray(c[:, :, ::-1]) for c in out], angles

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, confidence) per upright line crop (uint8 RGB); confidence is the mean of the
        per-character probabilities (0 for an empty reading)."""
        if not crops:
            return []
        bgr = [np.ascontiguousarray(_check_rgb(c, "line crop")[:, :, ::-1]) for c in crops]
        with self._lock:
            results, _ = self._rec(bgr)
        return [(str(text), float(conf)) for text, conf, *_ in results]

    # ------------------------------------------------------------------------------------------
    # Everything at once

    def read(self, image: np.ndarray, *, max_side: int = 960, scale: float | None = None,
             min_confidence: float = 0.5) -> list[OcrLine]:
        """Detect, turn and recognise in one call: RapidOCR's own pipeline, with the detector run
        at `scale` or at most `max_side` pixels (see `detect`); lines read with less than
        `min_confidence` are dropped. Lines come top to bottom, left to right."""
        image = _check_rgb(image)
        det = self.detect(image, max_side=max_side, scale=scale)
        crops = [self.crop_line(image, box) for box in det.boxes]
        crops, _ = self.classify(crops)
        lines = []
        for box, score, (text, conf) in zip(det.boxes, det.scores, self.recognize(crops)):
            if text.strip() and conf >= min_confidence:
                lines.append(OcrLine(box.round(1).tolist(), text, conf, score))
        lines.sort(key=lambda line: (line.box[0][1], line.box[0][0]))
        return lines


def _session(ort, path: str, threads: int):
    from polymodal.backends.onnx import cpu_session_options

    return ort.InferenceSession(path, sess_options=cpu_session_options(ort, threads), providers=["CPUExecutionProvider"])


_ENGINES: dict[int, OcrEngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(threads: int | None = None) -> OcrEngine:
    """A shared `OcrEngine` per thread count (loading the three sessions takes about a second)."""
    threads = _default_threads() if threads is None else int(threads)
    with _ENGINES_LOCK:
        if threads not in _ENGINES:
            _ENGINES[threads] = OcrEngine(threads=threads)
        return _ENGINES[threads]
