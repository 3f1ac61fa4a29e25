"""Image decoding for the media room: anything a user may hand us -> one fully loaded RGB image.

`load_image` accepts a path (str or os.PathLike), the bytes of an encoded file (bytes, bytearray,
memoryview), a binary file object, a PIL image or a numpy array, and returns a PIL image of mode
"RGB" that owns its pixels (no open file behind it). Every way the input can be bad ends in a
`MediaError` whose `reason` is one of "empty", "unreadable", "unsupported", "corrupt" or
"too-large", and whose message names the item; an item of a type we do not take at all is an
`InvalidInputError`.

Guards, in the order they act:

* paths: missing files, directories, unreadable files and non-regular files (devices, FIFOs) are
  refused before anything is read; zero-byte input is "empty".
* decompression bombs: the file is opened lazily (header only), and width * height is checked
  against `max_pixels` (default `DEFAULT_MAX_PIXELS`, or the environment variable
  POLYMODAL_MAX_IMAGE_PIXELS read at call time) before a single pixel is decoded. PIL's own global
  limit (`Image.MAX_IMAGE_PIXELS`) is lifted for the header parse only, under a lock, so that its
  warning/error never decides in our place and the error can name the real size; it is restored
  right after. It is left in force while decoding, except for images between PIL's limit and
  ours (rare, and the lock then serialises only those).
* formats: PostScript/EPS is refused (decoding it runs Ghostscript, an external interpreter).
* truncated data: `ImageFile.LOAD_TRUNCATED_IMAGES` is left False (we never set it), so a cut-off
  JPEG or PNG raises instead of being silently padded with grey, and becomes "corrupt".

Conversions: EXIF orientation is applied (`ImageOps.exif_transpose`); 16-bit and 32-bit integer
greyscale ("I;16*", "I") are scaled from the 0..65535 range to 8 bits (PIL's own conversion clips
at 255 instead, which turns most 16-bit images white); float ("F") images are taken as 0..1 when
all values lie in that range, else as PIL's 0..255 scale; every mode with transparency is
composited onto white exactly as `transformers.image_transforms.convert_to_rgb` does (see
`_to_rgb`). Animated images (GIF, WebP, APNG) give their first frame.
"""

from __future__ import annotations

import contextlib
import io
import numbers
import os
import stat
import struct
import threading

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from polymodal.errors import InvalidInputError, MediaError

__all__ = ["DEFAULT_MAX_PIXELS", "MAX_PIXELS_ENV", "describe_source", "load_image", "probe_image"]

#: Images with more pixels than this are refused before decoding (a 10000 x 10000 photo fits).
DEFAULT_MAX_PIXELS: int = 100_000_000
#: Environment variable overriding DEFAULT_MAX_PIXELS; read at every call.
MAX_PIXELS_ENV = "POLYMODAL_MAX_IMAGE_PIXELS"

_ACCEPTED_TYPES = (
    "a path (str or pathlib.Path), bytes/bytearray/memoryview of an encoded image, "
    "a binary file object, a PIL.Image.Image or a numpy array"
)
_ACCEPTED_ARRAYS = (
    "numpy arrays of shape (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA with dtype uint8, "
    "uint16 (scaled to 8 bits) or float (values in [0, 1])"
)
# Decoding these would run an external program (Ghostscript); never do it on untrusted input.
_REFUSED_FORMATS = frozenset({"EPS"})
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})  # MPO: the multi-picture JPEGs many cameras write
_WIDE_INT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_MAX_SOURCE_CHARS = 200

# Exceptions Pillow is known to let escape from a plugin parsing bad data.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, TypeError,
                  KeyError, ZeroDivisionError)

# Serialises the windows in which PIL's global MAX_IMAGE_PIXELS is lifted (see module docstring).
_PIL_LIMIT_LOCK = threading.RLock()


# ----------------------------------------------------------------------------------------------
# Public API


def describe_source(item, index: int | None = None) -> str:
    """A short name for `item` in messages: the path itself for str/PathLike, else a tag such as
    "<bytes #3>", "<array #3 shape=(480, 640, 3)>", "<PIL.Image #3>" or "<file #3>"."""
    tag = f" #{index}" if index is not None else ""
    if isinstance(item, (str, os.PathLike)):
        try:
            name = os.fsdecode(os.fspath(item))
        except (TypeError, ValueError):
            return f"<path{tag}>"
        if len(name) > _MAX_SOURCE_CHARS:  # e.g. base64 data passed as a "path" by mistake
            name = name[: _MAX_SOURCE_CHARS - 3] + "..."
        return name
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"<bytes{tag}>"
    if isinstance(item, np.ndarray):
        return f"<array{tag} shape={tuple(int(n) for n in item.shape)}>"
    if isinstance(item, Image.Image):
        return f"<PIL.Image{tag}>"
    if callable(getattr(item, "read", None)):
        name = getattr(item, "name", None)
        if isinstance(name, str) and name:
            return name
        return f"<file{tag}>"
    return f"<{type(item).__name__}{tag}>"


def load_image(item, *, max_pixels: int | None = None, draft_size: tuple[int, int] | None = None,
               source: str | None = None) -> Image.Image:
    """Decode `item` into a fully loaded RGB PIL image (see the module docstring for the rules).

    max_pixels: refuse images with more pixels than this ("too-large"); default: the environment
        variable POLYMODAL_MAX_IMAGE_PIXELS if set, else DEFAULT_MAX_PIXELS.
    draft_size: (width, height) of the upright image the caller needs at least; JPEGs are then
        decoded by libjpeg at the smallest 1/2, 1/4 or 1/8 scale that stays >= this size in both
        dimensions. Other formats and in-memory images ignore it.
    source: the name used in error messages (default: `describe_source(item)`).
    """
    name = source if source is not None else describe_source(item)
    limit = _resolve_max_pixels(max_pixels)
    draft = _check_draft_size(draft_size)

    if isinstance(item, Image.Image):
        return _from_pil(item, name, limit)
    if isinstance(item, np.ndarray):
        return _from_array(item, name, limit)
    if isinstance(item, (str, os.PathLike)):
        return _from_path(item, name, limit, draft)
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)  # no copy for bytes; flattens any memoryview layout
        return _decode_stream(io.BytesIO(data), name, limit, draft)
    if callable(getattr(item, "read", None)):
        return _from_file_object(item, name, limit, draft)
    raise InvalidInputError(
        f"{name}: cannot load an image from an object of type {type(item).__module__}."
        f"{type(item).__qualname__}; expected {_ACCEPTED_TYPES}"
    )


def probe_image(data: bytes, *, source: str = "<bytes>", max_pixels: int | None = None) -> tuple[int, int, str]:
    """(width, height, format) of an encoded image, upright (after EXIF rotation), from its header
    alone: no pixel is decoded. Raises the same MediaError as `load_image` for a bad header."""
    limit = _resolve_max_pixels(max_pixels)
    if not data:
        raise MediaError(source, "empty", "no data (0 bytes)")
    try:
        with _pil_limit_lifted():
            im = Image.open(io.BytesIO(data), formats=_allowed_formats())
    except UnidentifiedImageError:
        raise _unidentified(source, bytes(data[:32])) from None
    except _DECODE_ERRORS as exc:
        raise MediaError(source, "corrupt", f"the image header cannot be parsed: {exc}") from None
    with im:
        w, h = im.size
        _check_pixels(w, h, limit, source)
        if _orientation(im) in (5, 6, 7, 8):
            w, h = h, w
        return w, h, im.format or ""


# ----------------------------------------------------------------------------------------------
# Arguments


def _resolve_max_pixels(max_pixels) -> int:
    if max_pixels is None:
        raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not raw:
            return DEFAULT_MAX_PIXELS
        value = _parse_pixels(raw)
        if value is None:
            raise InvalidInputError(
                f"environment variable {MAX_PIXELS_ENV}={raw!r} is not a positive whole number of "
                f"pixels; set it to e.g. 200000000 or unset it for the default {DEFAULT_MAX_PIXELS}"
            )
        return value
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Integral) or max_pixels <= 0:
        raise InvalidInputError(
            f"max_pixels must be a positive integer (a number of pixels) or None, got {max_pixels!r}"
        )
    return int(max_pixels)


def _parse_pixels(raw: str) -> int | None:
    try:
        value = int(raw)  # accepts "200_000_000"
    except ValueError:
        try:
            f = float(raw)  # accepts "2e8"
        except ValueError:
            return None
        if not f.is_integer():
            return None
        value = int(f)
    return value if value > 0 else None


def _check_draft_size(draft_size) -> tuple[int, int] | None:
    if draft_size is None:
        return None
    ok = (
        isinstance(draft_size, (tuple, list)) and len(draft_size) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in draft_size)
    )
    if not ok:
        raise InvalidInputError(
            f"draft_size must be None or a (width, height) pair of positive integers, got {draft_size!r}"
        )
    return int(draft_size[0]), int(draft_size[1])


# ----------------------------------------------------------------------------------------------
# Sources


def _from_path(item, name: str, limit: int, draft) -> Image.Image:
    try:
        path = os.fspath(item)
        fh = open(path, "rb")  # noqa: SIM115 - closed by the `with` below
    except FileNotFoundError:
        raise MediaError(name, "unreadable", "no such file" + _path_hint(item)) from None
    except IsADirectoryError:
        raise MediaError(name, "unreadable", "is a directory, not an image file") from None
    except PermissionError:
        if os.path.isdir(path):  # Windows reports directories this way
            raise MediaError(name, "unreadable", "is a directory, not an image file") from None
        raise MediaError(name, "unreadable", "permission denied: the file cannot be read") from None
    except ValueError:  # embedded NUL character
        raise MediaError(name, "unreadable", "not a valid path (it contains a NUL character)") from None
    except OSError as exc:
        raise MediaError(name, "unreadable", f"cannot open the file: {exc.strerror or exc}"
                         + _path_hint(item)) from None
    with fh:
        st = os.fstat(fh.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise MediaError(name, "unreadable", "is a directory, not an image file")
        if not stat.S_ISREG(st.st_mode):
            # Devices and FIFOs may never end (/dev/zero) and cannot be seeked.
            raise MediaError(name, "unreadable",
                             "not a regular file (a device, FIFO or socket); pass its bytes instead")
        if st.st_size == 0:
            raise MediaError(name, "empty", "the file is empty (0 bytes)")
        return _decode_stream(fh, name, limit, draft)


def _path_hint(item) -> str:
    text = str(item)
    if text.startswith(("http://", "https://")):
        return "; URLs are not downloaded, fetch the file first and pass its path or bytes"
    if text.startswith("data:"):
        return "; data: URIs are not decoded, pass the decoded bytes instead"
    return ""


def _from_file_object(fp, name: str, limit: int, draft) -> Image.Image:
    try:
        seekable = bool(fp.seekable()) if callable(getattr(fp, "seekable", None)) else (
            callable(getattr(fp, "seek", None)) and callable(getattr(fp, "tell", None)))
    except (OSError, ValueError) as exc:
        raise MediaError(name, "unreadable", f"cannot use the file object: {exc}") from None
    if seekable:
        return _decode_stream(fp, name, limit, draft)
    # A stream (socket, pipe, HTTP response): read it whole, but not without end. A file of an
    # image within the pixel limit is smaller than its raw 16-bit RGBA pixels plus metadata.
    cap = 8 * limit + (64 << 20)
    chunks, total = [], 0
    try:
        while True:
            chunk = fp.read(1 << 20)
            if not chunk:
                break
            if isinstance(chunk, str):
                _text_mode_error(name)
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                raise MediaError(name, "too-large",
                                 f"the stream holds more than {cap:,} bytes, more than any image "
                                 f"within the limit of {limit:,} pixels needs; {_raise_limit_hint()}")
    except (OSError, ValueError) as exc:
        raise MediaError(name, "unreadable", f"reading the stream failed: {exc}") from None
    return _decode_stream(io.BytesIO(b"".join(chunks)), name, limit, draft)


def _text_mode_error(name: str):
    raise InvalidInputError(
        f"{name}: the file object returns text (str); open the image in binary mode, e.g. open(path, 'rb')"
    )


def _from_pil(im: Image.Image, name: str, limit: int) -> Image.Image:
    # The caller's image is not modified except that a lazily opened one gets loaded. Its current
    # frame is used (we do not seek the caller's animation).
    w, h = im.size
    _check_pixels(w, h, limit, name)
    _load(im, name)
    return _to_rgb(im, name)


def _from_array(arr: np.ndarray, name: str, limit: int) -> Image.Image:
    arr = np.asarray(arr)  # drop subclasses (masked arrays, matrices)
    shape_ok = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))
    kind = arr.dtype.kind
    dtype_ok = (kind == "u" and arr.dtype.itemsize in (1, 2)) or kind == "f"
    if not (shape_ok and dtype_ok):
        raise MediaError(name, "unsupported",
                         f"a numpy array of dtype {arr.dtype} and shape {tuple(arr.shape)} is not an "
                         f"image we take; accepted: {_ACCEPTED_ARRAYS}")
    h, w = int(arr.shape[0]), int(arr.shape[1])
    _check_pixels(w, h, limit, name)
    if kind == "u" and arr.dtype.itemsize == 1:
        arr8 = arr
    elif kind == "u":
        arr8 = _sixteen_to_eight(arr)
    else:
        work = arr.astype(np.float32, copy=False)
        if not np.isfinite(work).all():
            raise MediaError(name, "unsupported",
                             f"the float array contains NaN or infinite values; accepted: {_ACCEPTED_ARRAYS}")
        lo, hi = float(work.min()), float(work.max())
        if lo < 0.0 or hi > 1.0:
            raise MediaError(name, "unsupported",
                             f"float arrays must hold values in [0, 1], got [{lo:g}, {hi:g}] (divide "
                             f"0..255 data by 255, or pass it as uint8); accepted: {_ACCEPTED_ARRAYS}")
        arr8 = np.rint(work * 255.0).astype(np.uint8)
    # fromarray picks "L", "RGB" or "RGBA" from the shape; the copy detaches it from the caller.
    return _to_rgb(Image.fromarray(np.ascontiguousarray(arr8, dtype=np.uint8)), name)


# ----------------------------------------------------------------------------------------------
# Decoding


def _decode_stream(fp, name: str, limit: int, draft) -> Image.Image:
    """Decode the image in the seekable binary stream `fp` (read from its start, as PIL does)."""
    try:
        fp.seek(0)
        head = fp.read(32)
        fp.seek(0)
    except (OSError, ValueError) as exc:
        raise MediaError(name, "unreadable", f"reading failed: {exc}") from None
    if isinstance(head, str):
        _text_mode_error(name)
    if not head:
        raise MediaError(name, "empty", "no data (0 bytes)")

    try:
        with _pil_limit_lifted():
            im = Image.open(fp, formats=_allowed_formats())
    except UnidentifiedImageError:
        raise _unidentified(name, bytes(head)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # defensive
        raise MediaError(name, "too-large", f"{exc} {_raise_limit_hint()}") from None
    except MemoryError:
        raise MediaError(name, "too-large", f"ran out of memory reading the header; "
                         f"{_raise_limit_hint()}") from None
    except _DECODE_ERRORS as exc:
        raise MediaError(name, "corrupt", f"the image header cannot be parsed: {exc}") from None

    with im:  # closes PIL's handle on exit; a caller's file object stays open
        w, h = im.size
        _check_pixels(w, h, limit, name)
        if draft is not None and im.format in _JPEG_FORMATS:
            dw, dh = draft
            if _orientation(im) in (5, 6, 7, 8):  # stored sideways: EXIF rotation swaps w and h
                dw, dh = dh, dw
            im.draft("RGB", (dw, dh))
        _load(im, name)
        return _to_rgb(im, name)  # a new image owning its pixels


def _allowed_formats() -> list[str]:
    Image.init()  # registers every plugin (a no-op after the first call); picks up late plugins
    return [f for f in Image.OPEN if f not in _REFUSED_FORMATS]


_NO_PIL_LIMIT = 1 << 62  # pixels: far above anything our own limit admits


@contextlib.contextmanager
def _pil_limit_lifted():
    """Lift PIL's global decompression-bomb limit for the duration; our own check replaces it.

    The limit is raised to a huge integer, never set to None: other threads may be inside PIL's
    `_decompression_bomb_check` (crops, resizes), which reads the global twice, and a None between
    its two reads fails with `TypeError: int * NoneType`."""
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = _NO_PIL_LIMIT
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_pixels(w: int, h: int, limit: int, name: str) -> None:
    if w <= 0 or h <= 0:
        raise MediaError(name, "empty", f"the image has no pixels (size {w}x{h})")
    pixels = w * h
    if pixels > limit:
        raise MediaError(name, "too-large",
                         f"{w}x{h} = {pixels:,} pixels exceeds the limit of {limit:,} pixels "
                         f"(a guard against decompression bombs); {_raise_limit_hint()}")


def _raise_limit_hint() -> str:
    return (f"to allow bigger images pass load_image(..., max_pixels=N) or set the environment "
            f"variable {MAX_PIXELS_ENV}=N")


def _load(im: Image.Image, name: str) -> None:
    """Decode the pixels, mapping every failure to a MediaError. Our size check has passed."""
    pil_limit = Image.MAX_IMAGE_PIXELS
    w, h = im.size
    guard = (_pil_limit_lifted() if pil_limit is not None and w * h > pil_limit
             else contextlib.nullcontext())
    try:
        with guard:
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # e.g. a GIF frame or TIFF tile declaring a size far beyond the image's own
        raise MediaError(name, "too-large", f"{exc} {_raise_limit_hint()}") from None
    except MemoryError:
        raise MediaError(name, "too-large", f"ran out of memory decoding {w}x{h} pixels") from None
    except _DECODE_ERRORS as exc:
        raise MediaError(name, "corrupt", f"the image data is truncated or corrupt: {exc}") from None


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make a good image unusable
        return 1


# Signatures of formats we can name when Pillow cannot identify the data: a known signature with
# an unparsable header is "corrupt", not "unsupported".
def _sniff(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in (
            12, 40, 52, 56, 64, 108, 124):
        return "BMP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim", b"heis"):
            return "HEIF"
        if brand in (b"avif", b"avis"):
            return "AVIF"
    if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):
        return "EPS"
    return None


def _unidentified(name: str, head: bytes) -> MediaError:
    fmt = _sniff(head)
    if fmt == "EPS":
        return MediaError(name, "unsupported", "PostScript/EPS is refused: decoding it would run "
                          "Ghostscript; convert it to PNG first")
    if fmt == "HEIF" and "HEIF" not in Image.OPEN:
        return MediaError(name, "unsupported", "HEIC/HEIF images need the pillow-heif plugin: "
                          "pip install pillow-heif, then call pillow_heif.register_heif_opener()")
    if fmt is not None and fmt in Image.OPEN:
        return MediaError(name, "corrupt", f"starts like a {fmt} file but its header cannot be parsed")
    if fmt is not None:
        return MediaError(name, "unsupported", f"a {fmt} file, which this Pillow build cannot read")
    return MediaError(name, "unsupported",
                      f"not a recognised image format (it starts with {head[:12]!r})")


# ----------------------------------------------------------------------------------------------
# Conversion to RGB


def _sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255, rounded (x / 257 is exactly x * 255 / 65535); out-of-range clipped."""
    x = np.clip(values.astype(np.int64), 0, 65535)
    return ((x + 128) // 257).astype(np.uint8)


def _to_rgb(im: Image.Image, name: str) -> Image.Image:
    """Loaded image of any mode -> new RGB image: EXIF orientation applied, alpha on white."""
    fresh = False  # True once `im` is a new image that we may hand out as it is
    try:
        im = ImageOps.exif_transpose(im)  # always a new image (a copy when nothing to do)
        fresh = True
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make a good image unusable
        pass  # the conversions below copy

    if im.mode in _WIDE_INT_MODES:
        # PIL's "I;16"/"I" -> "L" conversion clips at 255, which turns a 16-bit image white.
        values = np.asarray(im)
        grey = Image.fromarray(_sixteen_to_eight(values))
        transparency = im.info.get("transparency")
        if isinstance(transparency, int):  # 16-bit PNG tRNS: one grey value is transparent
            alpha = np.where(values == transparency, 0, 255).astype(np.uint8)
            grey = Image.merge("LA", (grey, Image.fromarray(alpha)))
        im, fresh = grey, True
    elif im.mode == "F":
        values = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        # 0..1 data (scientific float images) is normalised; otherwise PIL's own F scale, 0..255.
        scale = 255.0 if values.size and values.min() >= 0.0 and values.max() <= 1.0 else 1.0
        im = Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8))
        fresh = True

    # Transparency: the same rule and the same operations as transformers'
    # image_transforms.convert_to_rgb, so that our preprocessing stays identical to theirs: an
    # image has alpha if it has an "A" band (RGBA, LA, PA) or a "transparency" entry (palette or
    # grey/RGB PNG tRNS); it is converted to RGBA and alpha-composited onto an opaque WHITE
    # background, then alpha is dropped. (A plain convert("RGB") would instead expose whatever
    # colour the transparent pixels happen to store, often black.) Everything else (CMYK,
    # YCbCr, "1", "L", "P" without transparency...) goes through PIL's convert("RGB").
    try:
        if "A" in im.getbands() or im.info.get("transparency") is not None:
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        if im.mode == "RGB" and fresh:
            return im  # spare a copy of a large photo
        return im.convert("RGB")
    except ValueError as exc:  # e.g. "conversion from LAB to RGB not supported"
        raise MediaError(name, "unsupported", f"images of mode {im.mode!r} cannot be converted to "
                         f"RGB: {exc}") from None
