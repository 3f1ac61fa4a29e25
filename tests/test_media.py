"""polymodal.media.load_image: every source type, every mode, every way input can be bad.

All images are generated in tmp_path; nothing touches the network.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, features

from polymodal.errors import InvalidInputError, MediaError
from polymodal.media import DEFAULT_MAX_PIXELS, describe_source, load_image
from polymodal.media import image as image_module
from polymodal.media.image import MAX_PIXELS_ENV

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
needs_webp = pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)


def quadrants(w=64, h=48) -> np.ndarray:
    """(h, w, 3) uint8: red top-left, green top-right, blue bottom-left, white bottom-right."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = RED
    a[: h // 2, w // 2:] = GREEN
    a[h // 2:, : w // 2] = BLUE
    a[h // 2:, w // 2:] = WHITE
    return a


def assert_quadrants(img: Image.Image, tol: int = 0):
    a = np.asarray(img).astype(int)
    h, w = a.shape[:2]
    for (y, x), colour in {(h // 4, w // 4): RED, (h // 4, 3 * w // 4): GREEN,
                           (3 * h // 4, w // 4): BLUE, (3 * h // 4, 3 * w // 4): WHITE}.items():
        assert np.abs(a[y, x] - colour).max() <= tol, (y, x, a[y, x], colour)


def assert_loaded_rgb(img, size=None):
    assert isinstance(img, Image.Image)
    assert img.mode == "RGB"
    assert getattr(img, "fp", None) is None  # owns its pixels, no file behind it
    if size is not None:
        assert img.size == size
    return img


def media_error(reason: str, name: str, call, *args, **kwargs) -> MediaError:
    """Assert call(*args, **kwargs) raises a MediaError of `reason` naming the item `name`."""
    with pytest.raises(MediaError) as info:
        call(*args, **kwargs)
    err = info.value
    assert err.reason == reason, str(err)
    assert err.source == name
    assert str(err).startswith(f"{name}: {reason}: ")
    return err


def save(tmp_path, name, img: Image.Image, **kw) -> Path:
    path = tmp_path / name
    img.save(path, **kw)
    return path


def rgba_test_image(w=32, h=24) -> Image.Image:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    a[0, 0, 3], a[0, 1, 3] = 0, 255  # fully transparent and fully opaque pixels too
    return Image.fromarray(a)


def hf_convert_to_rgb(img: Image.Image) -> np.ndarray:
    image_transforms = pytest.importorskip("transformers.image_transforms")
    return image_transforms.convert_to_rgb(img, return_numpy=True)


def png_bytes(width: int, height: int, bit_depth: int = 1, colour_type: int = 0, rows: bool = True) -> bytes:
    """A PNG claiming width x height. rows=True: a genuine all-zero 1-bit image (a real bomb: tiny
    file, huge decode); rows=False: header only, the pixel data is never reached."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if rows:
        comp = zlib.compressobj(9)
        row = b"\x00" * (1 + (width * bit_depth + 7) // 8)
        idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    else:
        idat = zlib.compress(b"\x00" * 16)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# ----------------------------------------------------------------------------------------------
# Valid inputs


@pytest.mark.parametrize("fmt,ext,tol", [
    ("JPEG", "jpg", 40), ("PNG", "png", 0), pytest.param("WEBP", "webp", 40, marks=needs_webp),
    ("BMP", "bmp", 0), ("GIF", "gif", 0), ("TIFF", "tif", 0),
])
def test_formats_from_path(tmp_path, fmt, ext, tol):
    path = save(tmp_path, f"img.{ext}", Image.fromarray(quadrants()), format=fmt)
    img = assert_loaded_rgb(load_image(path), (64, 48))
    assert_quadrants(img, tol)
    assert_quadrants(load_image(str(path)), tol)


def test_every_source_type_gives_the_same_pixels(tmp_path):
    path = save(tmp_path, "q.png", Image.fromarray(quadrants()))
    data = path.read_bytes()
    expected = quadrants()

    class Stream:  # not seekable, like a socket or an HTTP response
        def __init__(self, data):
            self._buf = io.BytesIO(data)

        def read(self, n=-1):
            return self._buf.read(n)

    with open(path, "rb") as fh, Image.open(path) as pil:
        sources = [str(path), path, data, bytearray(data), memoryview(data), io.BytesIO(data), fh,
                   Stream(data), pil, expected]
        for item in sources:
            img = assert_loaded_rgb(load_image(item), (64, 48))
            np.testing.assert_array_equal(np.asarray(img), expected, err_msg=describe_source(item))
        assert not fh.closed  # a caller's file object is left open


def test_file_object_read_from_start(tmp_path):
    data = (save(tmp_path, "q.png", Image.fromarray(quadrants()))).read_bytes()
    buf = io.BytesIO(data)
    buf.read(10)
    assert_quadrants(load_image(buf))


def test_no_file_handle_left_open(tmp_path):
    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        pytest.skip("needs /proc")
    good = save(tmp_path, "q.jpg", Image.fromarray(quadrants()))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(good.read_bytes()[:400])
    before = len(os.listdir(fd_dir))
    for _ in range(5):
        load_image(good, draft_size=(8, 8))
        with pytest.raises(MediaError):
            load_image(bad)
    assert len(os.listdir(fd_dir)) == before


@pytest.mark.parametrize("shape", [(6, 8), (6, 8, 3), (6, 8, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float16, np.float32, np.float64])
def test_arrays(shape, dtype):
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, shape, dtype=np.uint8)
    if shape[-1] == 4 and len(shape) == 3:
        base[..., 3] = 255  # opaque here: compositing is tested separately
    if dtype == np.uint8:
        arr = base
    elif dtype == np.uint16:
        arr = base.astype(np.uint16) * 257  # exact 16-bit versions of the 8-bit values
    else:
        arr = (base / 255.0).astype(dtype)
    img = assert_loaded_rgb(load_image(arr), (8, 6))
    out = np.asarray(img)
    expected = base[..., :3] if len(shape) == 3 else np.repeat(base[..., None], 3, axis=-1)
    np.testing.assert_array_equal(out, expected)


def test_array_value_scaling():
    np.testing.assert_array_equal(
        np.asarray(load_image(np.array([[0, 257 * 100, 65535, 128, 129]], np.uint16)))[0, :, 0],
        [0, 100, 255, 0, 1])  # rounded: 128/257 < 0.5 <= 129/257
    np.testing.assert_array_equal(
        np.asarray(load_image(np.array([[0.0, 0.5, 1.0, 0.2]], np.float32)))[0, :, 0],
        [0, 128, 255, 51])


def test_array_does_not_alias_the_callers_data():
    arr = quadrants()
    img = load_image(arr)
    arr[:] = 0
    assert_quadrants(img)


def test_rgba_array_composited_on_white_like_transformers():
    arr = np.asarray(rgba_test_image())
    out = np.asarray(load_image(arr))
    np.testing.assert_array_equal(out, hf_convert_to_rgb(Image.fromarray(arr)))
    assert tuple(out[0, 0]) == WHITE  # alpha 0 -> the white background
    assert tuple(out[0, 1]) == tuple(arr[0, 1, :3])  # alpha 255 -> the colour itself


@pytest.mark.parametrize("arr", [
    np.zeros((4, 4), np.int64), np.zeros((4, 4), np.int8), np.zeros((4, 4), bool),
    np.zeros((4, 4), np.uint32), np.zeros((4, 4), object), np.zeros((4, 4, 2), np.uint8),
    np.zeros((3, 4, 5), np.uint8), np.zeros((16,), np.uint8), np.zeros((2, 4, 4, 3), np.uint8),
    np.full((4, 4), 2.0), np.full((4, 4), -0.1, np.float32), np.full((4, 4), np.nan),
], ids=lambda a: f"{a.dtype}-{a.shape}-{a.flat[0]}")
def test_unsupported_arrays(arr):
    err = media_error("unsupported", describe_source(arr, 3), load_image, arr,
                      source=describe_source(arr, 3))
    assert "uint8" in err.detail and "uint16" in err.detail and "(H, W, 3)" in err.detail
    assert err.source.startswith("<array #3 shape=")


def test_empty_array():
    arr = np.zeros((0, 5, 3), np.uint8)
    media_error("empty", "<array shape=(0, 5, 3)>", load_image, arr)


# ----------------------------------------------------------------------------------------------
# Modes


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # no cyan, full magenta + yellow = red
    path = save(tmp_path, "cmyk.jpg", cmyk, quality=95)
    with Image.open(path) as check:
        assert check.mode == "CMYK"
    a = np.asarray(assert_loaded_rgb(load_image(path), (32, 32))).astype(int)
    assert np.abs(a[16, 16] - RED).max() <= 10


def test_16bit_png_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 100, 65535, 300], [1000, 30000, 50000, 65000]], np.uint16)
    path = save(tmp_path, "deep.png", Image.fromarray(values))
    with Image.open(path) as check:
        assert check.mode in ("I;16", "I")
    out = np.asarray(assert_loaded_rgb(load_image(path), (4, 2)))
    np.testing.assert_array_equal(out[..., 0], np.rint(values / 257.0).astype(np.uint8))
    assert out[0, 2, 0] == 255 and out[0, 1, 0] == 100 and out[0, 0, 0] == 0
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_32bit_int_and_float_images():
    ints = Image.fromarray(np.array([[0, 257 * 7, 65535, 70000, -5]], np.int32))
    assert ints.mode == "I"
    np.testing.assert_array_equal(np.asarray(load_image(ints))[0, :, 0], [0, 7, 255, 255, 0])
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert unit.mode == "F"
    np.testing.assert_array_equal(np.asarray(load_image(unit))[0, :, 0], [0, 128, 255])
    byte_scale = Image.fromarray(np.array([[0, 10, 200, 300]], np.float32))
    np.testing.assert_array_equal(np.asarray(load_image(byte_scale))[0, :, 0], [0, 10, 200, 255])


def test_palette_png_with_transparency(tmp_path):
    pal = Image.new("P", (8, 4), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red, index 1 blue
    pal.paste(1, (4, 0, 8, 4))  # right half blue
    path = save(tmp_path, "pal.png", pal, transparency=0)  # index 0 (red) is transparent
    with Image.open(path) as check:
        assert check.mode == "P" and check.info.get("transparency") is not None
        expected = hf_convert_to_rgb(check)
    out = np.asarray(assert_loaded_rgb(load_image(path), (8, 4)))
    assert tuple(out[0, 0]) == WHITE and tuple(out[0, 7]) == BLUE  # not red: it was transparent
    np.testing.assert_array_equal(out, expected)


def test_palette_without_transparency_and_bilevel(tmp_path):
    pal = Image.fromarray(quadrants()).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    assert_quadrants(load_image(save(tmp_path, "p.png", pal)))
    bilevel = Image.new("1", (8, 8), 0)
    bilevel.paste(1, (0, 0, 4, 8))
    out = np.asarray(load_image(save(tmp_path, "one.png", bilevel)))
    assert tuple(out[0, 0]) == WHITE and tuple(out[0, 7]) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_alpha_matches_transformers_convert_to_rgb(tmp_path, mode):
    img = rgba_test_image().convert(mode)
    expected = hf_convert_to_rgb(img)
    np.testing.assert_array_equal(np.asarray(load_image(img)), expected)
    if mode != "PA":  # PNG stores RGBA and LA; compare the decoded file too
        path = save(tmp_path, f"{mode}.png", img)
        with Image.open(path) as reopened:
            expected_file = hf_convert_to_rgb(reopened)
        np.testing.assert_array_equal(np.asarray(load_image(path)), expected_file)


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "CMYK", "YCbCr", "I;16", "I", "F", "RGBA", "LA"])
def test_every_mode_becomes_rgb(mode):
    if mode == "I;16":
        img = Image.fromarray(np.asarray(Image.fromarray(quadrants()).convert("L")).astype(np.uint16) * 257)
    else:
        img = Image.fromarray(quadrants()).convert("L" if mode in ("I", "F") else "RGB").convert(mode)
    out = assert_loaded_rgb(load_image(img), (64, 48))
    if mode in ("RGB", "CMYK", "YCbCr", "RGBA", "P"):
        assert_quadrants(out, tol=2)
    assert img.mode == mode  # the caller's image is untouched


# ----------------------------------------------------------------------------------------------
# EXIF orientation, animation, draft


def sideways_jpeg(tmp_path, w=40, h=20, orientation=6) -> Path:
    a = np.full((h, w, 3), 200, np.uint8)
    a[:10, :10] = RED  # the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(tmp_path, f"o{orientation}.jpg", Image.fromarray(a), exif=exif.tobytes(), quality=95)


def test_exif_orientation_applied(tmp_path):
    img = assert_loaded_rgb(load_image(sideways_jpeg(tmp_path)))
    assert img.size == (20, 40)  # width and height swapped
    a = np.asarray(img).astype(int)
    # orientation 6 = the camera was turned 90 degrees: rotating the stored pixels 90 degrees
    # clockwise puts the stored top-left corner at the top right.
    assert np.abs(a[3, 16] - RED).max() < 40
    assert np.abs(a[3, 3] - RED).max() > 100
    assert 0x0112 not in img.getexif()  # no double rotation downstream
    with Image.open(sideways_jpeg(tmp_path)) as pil:  # the same for a PIL image passed in
        assert load_image(pil).size == (20, 40)


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (10, 10), c) for c in (RED, BLUE, GREEN)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 3
    assert tuple(np.asarray(load_image(path))[5, 5]) == RED


@needs_webp
def test_animated_webp_first_frame(tmp_path):
    frames = [Image.new("RGB", (10, 10), c) for c in (RED, BLUE)]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, lossless=True)
    with Image.open(path) as check:
        assert check.n_frames == 2
    assert tuple(np.asarray(load_image(path))[5, 5]) == RED


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory) -> bytes:
    img = Image.fromarray(quadrants(2000, 1500))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def test_draft_reduces_jpeg_decode(big_jpeg):
    img = assert_loaded_rgb(load_image(big_jpeg, draft_size=(224, 224)))
    assert img.size == (500, 375)  # 1/4 scale: the smallest reduction keeping >= 224 x 224
    assert_quadrants(img, tol=40)
    assert load_image(big_jpeg).size == (2000, 1500)
    assert load_image(big_jpeg, draft_size=(1500, 1000)).size == (2000, 1500)  # no room to reduce


def test_draft_ignored_for_non_jpeg(tmp_path):
    path = save(tmp_path, "big.png", Image.new("RGB", (800, 600)))
    assert load_image(path, draft_size=(100, 100)).size == (800, 600)


def test_draft_respects_exif_rotation(tmp_path):
    # Stored 2000 x 1000, orientation 6: the upright image is 1000 x 2000.
    path = sideways_jpeg(tmp_path, w=2000, h=1000)
    img = load_image(path, draft_size=(400, 900))
    assert img.size == (500, 1000)  # half scale, upright, still >= 400 x 900
    img = load_image(path, draft_size=(900, 400))
    assert img.size[0] >= 900 and img.size[1] >= 400  # unswapped, this would give 500 x 1000


@pytest.mark.parametrize("bad", [(0, 10), (10,), (10, 10, 3), "224", (1.5, 2), (True, 3)])
def test_bad_draft_size(big_jpeg, bad):
    with pytest.raises(InvalidInputError, match="draft_size"):
        load_image(big_jpeg, draft_size=bad)


# ----------------------------------------------------------------------------------------------
# Bad input


def test_empty_inputs(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    media_error("empty", str(empty), load_image, empty)
    media_error("empty", "<bytes>", load_image, b"")
    media_error("empty", "<bytes #3>", load_image, bytearray(), source=describe_source(b"", 3))
    media_error("empty", "<file>", load_image, io.BytesIO())


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "nope.png"
    err = media_error("unreadable", str(missing), load_image, missing)
    assert "no such file" in err.detail
    err = media_error("unreadable", str(tmp_path), load_image, tmp_path)
    assert "directory" in err.detail
    err = media_error("unreadable", "https://example.com/cat.jpg", load_image, "https://example.com/cat.jpg")
    assert "URL" in err.detail


def test_permission_denied(tmp_path, monkeypatch):
    path = save(tmp_path, "locked.png", Image.new("RGB", (4, 4)))
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root ignores file modes: make open() refuse instead
            def refuse(*args, **kwargs):
                raise PermissionError(13, "Permission denied", str(path))

            monkeypatch.setattr(image_module, "open", refuse, raising=False)
        err = media_error("unreadable", str(path), load_image, path)
        assert "permission" in err.detail
    finally:
        path.chmod(0o644)


def test_special_file_refused():
    if not os.path.exists("/dev/zero"):
        pytest.skip("needs /dev/zero")
    media_error("unreadable", "/dev/zero", load_image, "/dev/zero")


def test_not_an_image(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("just some text, not a picture\n")
    err = media_error("unsupported", str(text), load_image, text)
    assert "not a recognised image format" in err.detail
    noise = np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    media_error("unsupported", "<bytes #0>", load_image, noise, source="<bytes #0>")


def test_postscript_refused(tmp_path):
    eps = tmp_path / "figure.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    err = media_error("unsupported", str(eps), load_image, eps)
    assert "Ghostscript" in err.detail


def test_truncated_jpeg_is_corrupt_not_padded(tmp_path):
    noise = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    data = save(tmp_path, "full.jpg", Image.fromarray(noise), quality=90).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    err = media_error("corrupt", str(cut), load_image, cut)
    assert "truncated" in err.detail
    media_error("corrupt", "<bytes>", load_image, data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_and_mangled_png(tmp_path):
    data = save(tmp_path, "full.png", Image.fromarray(quadrants())).read_bytes()
    media_error("corrupt", "<bytes>", load_image, data[: len(data) - 40])  # cut inside IDAT
    media_error("corrupt", "<bytes>", load_image, data[:20])  # cut inside the header
    mangled = bytearray(data)
    mangled[20] ^= 0xFF  # breaks the IHDR checksum
    media_error("corrupt", "<bytes>", load_image, bytes(mangled))


def test_wrong_item_types(tmp_path):
    for item in (42, None, [b"\x89PNG"], {"path": "x.png"}, 3.5):
        with pytest.raises(InvalidInputError) as info:
            load_image(item, source=describe_source(item, 1))
        msg = str(info.value)
        assert type(item).__name__ in msg and "PIL.Image.Image" in msg and "numpy array" in msg
        assert describe_source(item, 1) in msg
    path = save(tmp_path, "q.png", Image.new("RGB", (4, 4)))
    with open(path, encoding="latin-1") as text_mode, pytest.raises(InvalidInputError, match="binary mode"):
        load_image(text_mode)


def test_describe_source(tmp_path):
    assert describe_source("a/b.jpg", 3) == "a/b.jpg"
    assert describe_source(Path("a/b.jpg")) == "a/b.jpg"
    assert describe_source(b"xx", 3) == "<bytes #3>"
    assert describe_source(memoryview(b"xx")) == "<bytes>"
    assert describe_source(np.zeros((2, 3, 4)), 3) == "<array #3 shape=(2, 3, 4)>"
    assert describe_source(Image.new("RGB", (1, 1)), 3) == "<PIL.Image #3>"
    assert describe_source(io.BytesIO(), 3) == "<file #3>"
    assert describe_source(42, 0) == "<int #0>"
    assert len(describe_source("x" * 10_000)) <= 200


def test_source_override_names_the_item():
    media_error("empty", "item 7", load_image, b"", source="item 7")


# ----------------------------------------------------------------------------------------------
# Decompression bombs


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """A genuine 20000 x 20000 1-bit PNG (400 million pixels) in a few tens of kilobytes."""
    return png_bytes(20000, 20000)


def test_bomb_refused_with_the_default_limit(tmp_path, bomb_png):
    assert len(bomb_png) < 200_000
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png)
    pil_limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        err = media_error("too-large", str(path), load_image, path)
    assert "20000x20000" in err.detail and f"{DEFAULT_MAX_PIXELS:,}" in err.detail
    assert "max_pixels" in err.detail and MAX_PIXELS_ENV in err.detail
    assert Image.MAX_IMAGE_PIXELS == pil_limit  # PIL's global limit restored


def test_pil_limit_is_an_integer_while_lifted(tmp_path, monkeypatch):
    """While load_image has PIL's global limit lifted, a crop or resize in another thread runs
    PIL's bomb check, which reads the global twice: it must see a number, never None (None made
    such a crop fail with "int * NoneType" during training's threaded evaluation)."""
    path = tmp_path / "small.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
    seen, real_open = [], Image.open

    def open_and_check(*args, **kwargs):
        seen.append(Image.MAX_IMAGE_PIXELS)
        Image._decompression_bomb_check((4000, 3000))  # what another thread's crop runs now
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", open_and_check)
    assert load_image(path).size == (8, 8)
    assert seen and all(isinstance(v, int) and v > DEFAULT_MAX_PIXELS for v in seen)


def test_header_claiming_huge_size_refused_before_decoding():
    # Only a header: decoding it would fail, so "too-large" proves nothing was decoded.
    data = png_bytes(100_000, 100_000, bit_depth=8, colour_type=2, rows=False)
    err = media_error("too-large", "<bytes>", load_image, data)
    assert "100000x100000" in err.detail


def test_low_max_pixels_and_env_override(tmp_path, monkeypatch):
    path = save(tmp_path, "q.png", Image.fromarray(quadrants()))  # 64 x 48 = 3072 pixels
    err = media_error("too-large", str(path), load_image, path, max_pixels=3000)
    assert "64x48" in err.detail and "3,000" in err.detail
    media_error("too-large", "<array shape=(48, 64, 3)>", load_image, quadrants(), max_pixels=3000)
    media_error("too-large", "<PIL.Image>", load_image, Image.fromarray(quadrants()), max_pixels=3000)
    assert load_image(path, max_pixels=3072).size == (64, 48)

    monkeypatch.setenv(MAX_PIXELS_ENV, "3000")
    media_error("too-large", str(path), load_image, path)
    assert load_image(path, max_pixels=5000).size == (64, 48)  # the argument wins
    monkeypatch.setenv(MAX_PIXELS_ENV, "5_000")
    assert load_image(path).size == (64, 48)
    for bad in ("lots", "-1", "0", "1.5"):
        monkeypatch.setenv(MAX_PIXELS_ENV, bad)
        with pytest.raises(InvalidInputError, match=MAX_PIXELS_ENV):
            load_image(path)


@pytest.mark.parametrize("bad", [0, -5, "100", 1.5, True])
def test_bad_max_pixels(bad):
    with pytest.raises(InvalidInputError, match="max_pixels"):
        load_image(quadrants(), max_pixels=bad)


def test_pil_global_limit_never_decides(tmp_path, monkeypatch, bomb_png):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL would refuse anything over 200
    png = save(tmp_path, "q.png", Image.fromarray(quadrants()))
    gif = save(tmp_path, "q.gif", Image.fromarray(quadrants()))  # GIF checks again while loading
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_quadrants(load_image(png))
        assert_quadrants(load_image(gif))
        assert load_image(png.read_bytes(), draft_size=(10, 10)).size == (64, 48)
        err = media_error("too-large", "<bytes>", load_image, bomb_png)  # ours, naming the size
        assert "20000x20000" in err.detail
    assert Image.MAX_IMAGE_PIXELS == 100


def test_our_limit_may_exceed_pils(monkeypatch):
    # A caller raising max_pixels above PIL's hard limit (2 x MAX_IMAGE_PIXELS) must get the image.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    buf = io.BytesIO()
    Image.fromarray(quadrants(100, 100)).save(buf, format="GIF")  # 10,000 pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(buf.getvalue(), max_pixels=20_000).size == (100, 100)


def test_threads_keep_pils_limit_intact(tmp_path, monkeypatch, bomb_png):
    # The embedder decodes on a thread pool; lifting PIL's limit around the header parse must not
    # race: afterwards PIL's limit is what it was, and every call got its own answer.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    png = save(tmp_path, "q.png", Image.fromarray(quadrants())).read_bytes()

    def work(i):
        if i % 4 == 0:
            with pytest.raises(MediaError) as info:
                load_image(bomb_png)
            return info.value.reason
        return load_image(png).size

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(40)))
    assert results == ["too-large" if i % 4 == 0 else (64, 48) for i in range(40)]
    assert Image.MAX_IMAGE_PIXELS == 500
