"""Text an image carries outside its visible pixels: file metadata and QR codes.

`metadata_text(source)` reads every text field a viewer, a captioner or a vision-language model's
preprocessing might pick up, without decoding the pixels:

* EXIF (JPEG APP1, PNG eXIf, TIFF/WebP through Pillow): every string tag of IFD0 and the Exif IFD
  (ImageDescription, Artist, Copyright, Make, Model, Software, ...), plus the three encoded ones:
  UserComment (8-byte charset prefix "ASCII", "UNICODE" in the file's byte order, "JIS", or
  undefined) and the Windows XP* tags (XPTitle, XPComment, XPAuthor, XPKeywords, XPSubject: UTF-16LE,
  stored as BYTE arrays).
* XMP packets (JPEG APP1 "http://ns.adobe.com/xap/1.0/", PNG iTXt "XML:com.adobe.xmp", Pillow's
  `info["xmp"]` for other formats): every element text and attribute value that reads as text.
* PNG text chunks: tEXt (Latin-1), zTXt (deflated Latin-1), iTXt (UTF-8, optionally deflated,
  with its language tag and translated keyword), anywhere in the file (also after the pixels).
* JPEG COM segments, and IPTC records in Photoshop APP13 (caption, headline, keywords, by-line...).
* GIF / WebP / other comments Pillow reports in `info["comment"]`.

`qr_text(image)` decodes QR codes (also Micro QR and rMQR) with zxing-cpp, which reads every QR mode
(kanji included) and honours ECI charsets; a code it locates but cannot decode is read again from a
4x enlargement of its neighbourhood. Without zxing-cpp it falls back to OpenCV's QR detectors (one
logged warning), which miss kanji-mode and Micro QR codes.

Both return `TextFinding`s: source "metadata:<key>" (e.g. "metadata:exif:ImageDescription",
"metadata:png:iTXt:Comment", "metadata:xmp:description") with box None, or "qr" with the code's
box in image pixels; `hidden` is 1.0 for both: a person looking at the image sees no metadata,
and sees a QR code but not its words. Values are capped at `MAX_VALUE_CHARS`; compressed chunks are inflated at most
`MAX_INFLATE_BYTES` (a zTXt chunk must not be a decompression bomb).
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from xml.etree import ElementTree

import numpy as np
from PIL import ExifTags, Image

from polymodal.errors import InvalidInputError, MediaError, require
from polymodal.guard.findings import TextFinding, warn_once

__all__ = ["MAX_INFLATE_BYTES", "MAX_VALUE_CHARS", "metadata_text", "qr_text"]


MAX_VALUE_CHARS = 20_000        # longer values are cut (a caption or prompt fits easily)
MAX_INFLATE_BYTES = 1 << 20     # per compressed PNG chunk
_MAX_FILE_BYTES = 512 << 20     # refuse to read more than this to look for metadata

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_XMP_JPEG = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_EXT_JPEG = b"http://ns.adobe.com/xmp/extension/\x00"
_XMP_PNG_KEY = "XML:com.adobe.xmp"

_IFD_EXIF, _IFD_GPS = 0x8769, 0x8825
_USER_COMMENT = 0x9286
_XP_TAGS = {0x9C9B: "XPTitle", 0x9C9C: "XPComment", 0x9C9D: "XPAuthor", 0x9C9E: "XPKeywords",
            0x9C9F: "XPSubject"}
# String tags that hold dates, versions or identifiers: machine data, not prose a model reads.
_EXIF_SKIP = {0x0132, 0x9003, 0x9004, 0x9010, 0x9011, 0x9012, 0x9290, 0x9291, 0x9292, 0xA420,
              0x0000, 0x9000, 0xA000, 0xA431, 0xA434, 0xA435}
# IPTC IIM record 2 datasets that carry text (ISO/IEC IPTC-NAA Information Interchange Model 4.2).
_IPTC = {5: "ObjectName", 25: "Keywords", 40: "SpecialInstructions", 80: "By-line",
         85: "By-lineTitle", 90: "City", 95: "Province-State", 101: "Country", 103: "OriginalTransmissionReference",
         105: "Headline", 110: "Credit", 115: "Source", 116: "CopyrightNotice", 120: "Caption-Abstract",
         122: "Writer-Editor"}
# XMP attributes that structure the packet rather than say anything.
_XMP_STRUCTURAL = {"about", "parseType", "lang", "resource", "nodeID", "ID", "datatype"}
_HAS_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


# ----------------------------------------------------------------------------------------------
# Public API


def metadata_text(source) -> list[TextFinding]:
    """Every text field in the metadata of `source` (a path, the bytes of an encoded image, a
    binary file object, or a PIL image opened from a file), in file order. Empty for an image
    without metadata. Pixels are never decoded."""
    data, pil = _read_source(source)
    out: list[tuple[str, str]] = []
    if data is not None and data.startswith(_PNG_SIGNATURE):
        _png(data, out)
    elif data is not None and data[:2] == b"\xff\xd8":
        _jpeg(data, out)
    else:
        _pillow(pil if pil is not None else _open(data, source), out)
    return _findings(out)


def qr_text(image) -> list[TextFinding]:
    """QR codes in `image` (anything `polymodal.media.load_image` takes): their decoded text and
    box [x0, y0, x1, y1] in image pixels, source "qr", confidence 1.0 (a decoded code passed its
    error correction)."""
    from polymodal.media import load_image  # media is a lower room

    grey = np.asarray(load_image(image).convert("L"))
    try:
        import zxingcpp  # optional: pip install "polymodal[guard]"
    except ImportError:
        warn_once("qr_text: zxing-cpp is not installed; reading QR codes with OpenCV, which misses "
                   "kanji-mode and Micro QR codes (pip install zxing-cpp)")
        return _qr_opencv(grey)
    return _qr_zxing(zxingcpp, grey)


# ----------------------------------------------------------------------------------------------
# Reading the source


def _read_source(source) -> tuple[bytes | None, Image.Image | None]:
    if isinstance(source, Image.Image):
        fp = getattr(source, "fp", None)
        name = getattr(source, "filename", "")
        if name and os.path.isfile(name):
            return _read_path(name), None
        if fp is not None and hasattr(fp, "seek"):
            try:
                fp.seek(0)
                return fp.read(_MAX_FILE_BYTES), None
            except (OSError, ValueError):
                pass
        return None, source  # an in-memory image: only what Pillow kept in .info / getexif()
    if isinstance(source, (str, os.PathLike)):
        return _read_path(source), None
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise MediaError("<bytes>", "empty", "no data")
        return bytes(source), None
    if callable(getattr(source, "read", None)):
        data = source.read(_MAX_FILE_BYTES)
        if not isinstance(data, bytes):
            raise InvalidInputError(f"{source!r} is opened in text mode; open it with 'rb'")
        return data, None
    raise InvalidInputError(f"metadata_text takes a path, bytes, a binary file object or a PIL image, "
                            f"not {type(source).__name__}")


def _read_path(path) -> bytes:
    name = os.fsdecode(os.fspath(path))
    try:
        with open(name, "rb") as f:
            data = f.read(_MAX_FILE_BYTES)
    except FileNotFoundError:
        raise MediaError(name, "unreadable", "no such file; check the path") from None
    except OSError as exc:
        raise MediaError(name, "unreadable", str(exc)) from None
    if not data:
        raise MediaError(name, "empty", "the file has no data")
    return data


def _open(data: bytes, source) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except Exception as exc:  # Pillow raises many types on bad data
        from polymodal.media import describe_source
        raise MediaError(describe_source(source), "unsupported", f"not an image Pillow can open ({exc})") from None


# ----------------------------------------------------------------------------------------------
# Containers


def _png(data: bytes, out: list) -> None:
    """Walk the PNG chunks (length, type, payload, CRC) up to IEND or the end of the data."""
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"tEXt" and b"\x00" in body:
            key, text = body.split(b"\x00", 1)
            out.append((f"png:tEXt:{_latin1(key)}", _latin1(text)))
        elif kind == b"zTXt" and b"\x00" in body:
            key, rest = body.split(b"\x00", 1)
            text = _inflate(rest[1:]) if rest[:1] == b"\x00" else None
            if text is not None:
                out.append((f"png:zTXt:{_latin1(key)}", _latin1(text)))
        elif kind == b"iTXt":
            _png_itxt(body, out)
        elif kind == b"eXIf":
            _exif(body, out)
        elif kind == b"IEND":
            break


def _png_itxt(body: bytes, out: list) -> None:
    # keyword \0 compression-flag compression-method language \0 translated-keyword \0 text
    try:
        key, rest = body.split(b"\x00", 1)
        flag, rest = rest[0], rest[2:]  # the compression method byte is always 0 (deflate)
        _lang, rest = rest.split(b"\x00", 1)
        _translated, text = rest.split(b"\x00", 1)
    except (ValueError, IndexError):
        return
    if flag:
        text = _inflate(text)
        if text is None:
            return
    key_s, value = _latin1(key), text.decode("utf-8", "replace")
    if key_s == _XMP_PNG_KEY:
        _xmp(value, out)
    else:
        out.append((f"png:iTXt:{key_s}", value))


def _jpeg(data: bytes, out: list) -> None:
    """Walk the JPEG marker segments from SOI up to SOS (metadata never follows the scan)."""
    pos = 2
    extended_xmp: list[bytes] = []
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:          # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # stand-alone markers
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image
            break
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        body = data[pos + 4:pos + 2 + length]
        pos += 2 + length
        if marker == 0xFE:
            out.append(("jpeg:COM", _utf8_or_latin1(body)))
        elif marker == 0xE1 and body.startswith(b"Exif\x00\x00"):
            _exif(body[6:], out)
        elif marker == 0xE1 and body.startswith(_XMP_JPEG):
            _xmp(_utf8_or_latin1(body[len(_XMP_JPEG):]), out)
        elif marker == 0xE1 and body.startswith(_XMP_EXT_JPEG):
            # GUID (32) + full length (4) + offset (4), then this piece of the extended packet
            extended_xmp.append(body[len(_XMP_EXT_JPEG) + 40:])
        elif marker == 0xED and body.startswith(b"Photoshop 3.0\x00"):
            _photoshop(body[14:], out)
    if extended_xmp:
        _xmp(_utf8_or_latin1(b"".join(extended_xmp)), out)


def _pillow(im: Image.Image, out: list) -> None:
    """Other formats (TIFF, WebP, GIF, ...): what Pillow parsed into `info` and `getexif()`."""
    info = getattr(im, "info", {}) or {}
    for key in ("comment", "Comment", "Description", "Title", "Author"):
        value = info.get(key)
        if isinstance(value, (bytes, str)) and value:
            out.append((f"{(im.format or 'image').lower()}:{key}",
                        value if isinstance(value, str) else _utf8_or_latin1(value)))
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if xmp:
        _xmp(xmp if isinstance(xmp, str) else _utf8_or_latin1(xmp), out)
    try:
        exif = im.getexif()
    except Exception:  # a broken EXIF block must not hide the rest
        return
    _exif_tags(exif, out)


# ----------------------------------------------------------------------------------------------
# EXIF, XMP, IPTC


def _exif(payload: bytes, out: list) -> None:
    exif = Image.Exif()
    try:
        exif.load(payload)
    except Exception:  # malformed TIFF structure: nothing readable
        return
    _exif_tags(exif, out)


def _exif_tags(exif, out: list) -> None:
    endian = getattr(exif, "endian", "<") or "<"
    groups = [dict(exif)]
    try:
        groups.append(dict(exif.get_ifd(_IFD_EXIF)))
    except Exception:  # a broken Exif IFD pointer: IFD0 still counts
        pass
    for tags in groups:
        for tag, value in tags.items():
            name = ExifTags.TAGS.get(tag, f"0x{tag:04X}")
            if tag == _USER_COMMENT:
                text = _user_comment(value, endian)
            elif tag in _XP_TAGS:
                text = _xp(value)
                name = _XP_TAGS[tag]
            elif tag in _EXIF_SKIP or tag in (_IFD_EXIF, _IFD_GPS):
                continue
            elif isinstance(value, str):
                text = value
            elif isinstance(value, bytes) and tag in (0x010E, 0x013B, 0x8298):
                text = _utf8_or_latin1(value)  # declared ASCII but stored as UNDEFINED/UTF-8
            else:
                continue
            out.append((f"exif:{name}", text))


def _user_comment(value, endian: str) -> str:
    """EXIF 2.32 section 4.6.5: an 8-byte character code, then the comment."""
    if isinstance(value, str):
        return value
    raw = bytes(value)
    code, body = raw[:8], raw[8:]
    if code.startswith(b"UNICODE"):
        # UCS-2 in the byte order of the TIFF header; a BOM, when a writer adds one, wins
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return body.decode("utf-16", "replace")
        return body.decode("utf-16-be" if endian == ">" else "utf-16-le", "replace")
    if code.startswith(b"JIS"):
        for codec in ("iso2022_jp", "shift_jis", "euc_jp"):
            try:
                return body.decode(codec)
            except UnicodeDecodeError:
                continue
    if code.startswith(b"ASCII") or code == b"\x00" * 8:
        return _utf8_or_latin1(body)
    return _utf8_or_latin1(raw)  # no recognised prefix: some writers store plain text


def _xp(value) -> str:
    # Windows writes these as BYTE arrays of UTF-16LE; Pillow gives bytes or a tuple of ints.
    raw = bytes(value) if not isinstance(value, str) else value.encode("latin-1", "replace")
    return raw.decode("utf-16-le", "replace")


def _xmp(packet: str, out: list) -> None:
    """Every element text and non-structural attribute value in an XMP packet."""
    if "<!ENTITY" in packet or "<!DOCTYPE" in packet:
        # XMP never needs a DTD; entity definitions are how XML bombs are built. Keep the text
        # outside markup instead of parsing.
        for text in re.findall(r">([^<>]+)<", packet):
            out.append(("xmp:text", text))
        return
    start = packet.find("<x:xmpmeta")
    if start < 0:
        start = packet.find("<rdf:RDF")
    end_tag = "</x:xmpmeta>" if packet.find("</x:xmpmeta>") >= 0 else "</rdf:RDF>"
    end = packet.find(end_tag)
    body = packet[max(start, 0): end + len(end_tag)] if end >= 0 else packet
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        for text in re.findall(r">([^<>]+)<", packet):
            out.append(("xmp:text", text))
        return
    parents = {child: parent for parent in root.iter() for child in parent}
    for element in root.iter():
        name = _local(element.tag)
        for attr, value in element.attrib.items():
            if _local(attr) not in _XMP_STRUCTURAL:
                out.append((f"xmp:{_local(attr)}", value))
        if element.text and element.text.strip():
            # rdf:li items are named after the property that holds the list (dc:description)
            node = element
            while _local(node.tag) in ("li", "Alt", "Bag", "Seq") and node in parents:
                node = parents[node]
            out.append((f"xmp:{_local(node.tag) if node is not element else name}", element.text))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].split(":")[-1]


def _photoshop(data: bytes, out: list) -> None:
    """Image resource blocks ("8BIM", id, Pascal name padded to even, size, data padded to even);
    resource 0x0404 holds the IPTC-NAA records."""
    pos = 0
    while pos + 12 <= len(data) and data[pos:pos + 4] == b"8BIM":
        (rid,) = struct.unpack(">H", data[pos + 4:pos + 6])
        name_len = data[pos + 6]
        pos += 6 + 1 + name_len + ((1 + name_len) % 2)
        (size,) = struct.unpack(">I", data[pos:pos + 4])
        block = data[pos + 4:pos + 4 + size]
        pos += 4 + size + (size % 2)
        if rid == 0x0404:
            _iptc(block, out)


def _iptc(block: bytes, out: list) -> None:
    pos = 0
    utf8 = b"\x1b%G" in block[:64]  # 1:90 coded character set ESC % G = UTF-8
    while pos + 5 <= len(block) and block[pos] == 0x1C:
        record, dataset, size = block[pos + 1], block[pos + 2], struct.unpack(">H", block[pos + 3:pos + 5])[0]
        value = block[pos + 5:pos + 5 + size]
        pos += 5 + size
        if record == 2 and dataset in _IPTC:
            out.append((f"iptc:{_IPTC[dataset]}", value.decode("utf-8", "replace") if utf8 else _utf8_or_latin1(value)))


# ----------------------------------------------------------------------------------------------
# Small helpers


def _inflate(data: bytes) -> bytes | None:
    try:
        d = zlib.decompressobj()
        return d.decompress(data, MAX_INFLATE_BYTES)
    except zlib.error:
        return None


def _latin1(raw: bytes) -> str:
    return raw.decode("latin-1")


def _utf8_or_latin1(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _findings(pairs: list[tuple[str, str]]) -> list[TextFinding]:
    found = []
    for key, text in pairs:
        text = text.replace("\x00", " ").strip()
        if not _HAS_LETTER.search(text):
            continue  # numbers, dates, empty padding
        found.append(TextFinding(text=text[:MAX_VALUE_CHARS], box=None, confidence=1.0,
                                 source=f"metadata:{key}", hidden=1.0))
    return found


# ----------------------------------------------------------------------------------------------
# QR codes

# A code located but not decoded is read again from its neighbourhood enlarged 4x (bicubic), when
# that neighbourhood is at most 512 px wide. On 315 codes with 2-px modules rotated 2-7 degrees
# (Micro QR among them, on flat backgrounds) 122 were located but not decoded: 4x read all 122,
# 3x 91, 2x 36.
_ENLARGE = 4
_ENLARGE_MAX_CROP = 512


def _qr_zxing(zxingcpp, grey: np.ndarray) -> list[TextFinding]:
    """zxing-cpp reads kanji mode and Micro QR (segno's choice for short payloads), which OpenCV
    does not, and transcodes a payload by its ECI or, without one, by the charset its bytes fit
    (Cyrillic that segno writes as Shift-JIS arrives as Cyrillic). Of 216 generated codes pasted
    into photos (benchmarks/guard_qr.py) the first pass read 187, the enlarged second
    pass 194, OpenCV 123. Photos without a code locate none (0 of 560 coco-mini and flickr8k
    photos), so they cost one pass: ~0.002 CPU-s per megapixel, OpenCV's two detectors ~0.04."""
    found, located = _read_zxing(zxingcpp, grey, (0, 0), 1)
    for box in located:
        if any(_boxes_touch(f.box, box) for f in found):
            continue  # the same code, located twice, already read
        x0, y0, x1, y1 = box
        margin = max(x1 - x0, y1 - y0) // 2 + 8  # quiet zone and some photo around the code
        left, top = max(0, x0 - margin), max(0, y0 - margin)
        crop = grey[top:y1 + margin, left:x1 + margin]
        if max(crop.shape) > _ENLARGE_MAX_CROP:
            continue
        big = Image.fromarray(crop).resize((_ENLARGE * crop.shape[1], _ENLARGE * crop.shape[0]), Image.BICUBIC)
        found += _read_zxing(zxingcpp, np.asarray(big), (left, top), _ENLARGE)[0]
    return _merge_qr(found)


def _read_zxing(zxingcpp, grey: np.ndarray, offset: tuple[int, int], scale: int):
    """(decoded codes with boxes in the original image, boxes of codes located but not decoded)."""
    formats = (zxingcpp.BarcodeFormat.QRCode, zxingcpp.BarcodeFormat.MicroQRCode,
               zxingcpp.BarcodeFormat.RMQRCode)
    # Plain: the payload's own characters; the default (HRI) writes "<NUL>" for control characters
    # of binary payloads and reformats GS1 data.
    codes = zxingcpp.read_barcodes(grey, formats=formats, text_mode=zxingcpp.TextMode.Plain,
                                   return_errors=True)
    found, located = [], []
    for code in codes:
        p = code.position
        quad = [(c.x, c.y) for c in (p.top_left, p.top_right, p.bottom_right, p.bottom_left)]
        box = _qr_box(quad, offset, scale)
        if code.valid and code.text:
            found.append(TextFinding(text=code.text, box=box, confidence=1.0, source="qr", hidden=1.0))
        elif not code.valid:
            located.append(box)
    return found, located


def _qr_opencv(grey: np.ndarray) -> list[TextFinding]:
    """The fallback without zxing-cpp: OpenCV's two detectors (finder-pattern contours; ArUco-style
    quads) miss different codes: on 40 qr attack images over photos the first decoded 38, the
    second 40; both together cost ~0.04 CPU-s per megapixel. Neither reads kanji mode or Micro QR."""
    cv2 = require("cv2", "guard", "QR code reading")
    detectors = [cv2.QRCodeDetector(), cv2.QRCodeDetectorAruco()]
    results = [_decode_qr(d, grey, 1.0) for d in detectors]
    found = _merge_qr([f for decoded, _ in results for f in decoded])
    located = any(somewhere for _, somewhere in results)
    if not found and located and max(grey.shape) <= 2048:
        # Codes whose modules are 1-2 pixels wide are located but often only decode enlarged (7 of
        # 10 such codes pasted into photos). The enlarged pass costs 3x the first one, so it runs
        # only when a code was located: none of 40 coco-mini photos locates one.
        big = cv2.resize(grey, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        found = _merge_qr([f for d in detectors for f in _decode_qr(d, big, 2.0)[0]])
    return found


def _decode_qr(detector, grey: np.ndarray, scale: float) -> tuple[list[TextFinding], bool]:
    """(decoded codes, whether any code was located at all, decodable or not)."""
    try:
        ok, texts, points, _ = detector.detectAndDecodeMulti(grey)
    except Exception:  # cv2.error on degenerate input; UnicodeDecodeError on kanji-mode payloads
        return [], False
    if not ok or points is None:
        return [], False
    found = []
    for text, quad in zip(texts, points):
        if not text:
            continue  # located but not decodable
        box = _qr_box(np.asarray(quad, dtype=np.float64).reshape(-1, 2), (0, 0), scale)
        found.append(TextFinding(text=_repair_qr_text(text), box=box, confidence=1.0, source="qr", hidden=1.0))
    return found, True


_C1 = re.compile("[\x80-\x9f]")


def _repair_qr_text(text: str) -> str:
    """OpenCV returns a byte-mode payload as Latin-1 whatever its encoding. Encoders such as segno
    write text that Latin-1 cannot hold as Shift-JIS (Cyrillic, Greek, kana) or UTF-8 bytes, which
    then arrive as C1 control characters ("\\x84R\\x84\\x82..." for "Сро..."); real text has none.
    Such a payload is decoded again, as UTF-8 first, then as Shift-JIS; else it is left as it is."""
    if not _C1.search(text):
        return text
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        return text
    for encoding in ("utf-8", "shift_jis"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return text


def _qr_box(quad, offset: tuple[int, int], scale: float) -> list[int]:
    """[x0, y0, x1, y1] around a code's four corners found in an image enlarged `scale` times
    from the crop at `offset`."""
    q = np.asarray(quad, dtype=np.float64).reshape(-1, 2) / scale
    x, y = q[:, 0] + offset[0], q[:, 1] + offset[1]
    return [int(np.floor(x.min())), int(np.floor(y.min())), int(np.ceil(x.max())), int(np.ceil(y.max()))]


def _merge_qr(found: list[TextFinding]) -> list[TextFinding]:
    """One finding per code: the same text in overlapping boxes is the same code."""
    kept: list[TextFinding] = []
    for f in found:
        if not any(k.text == f.text and _boxes_touch(k.box, f.box) for k in kept):
            kept.append(f)
    return kept


def _boxes_touch(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


