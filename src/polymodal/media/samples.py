"""Sample images drawn in code, so the demo and the docs need no data files and no download."""

from __future__ import annotations

from pathlib import Path

SAMPLE_LABELS = ["red circle", "blue square", "green triangle", "striped pattern", "sunset"]


def draw_samples(size: int = 256) -> dict[str, "Image.Image"]:
    """One RGB image per sample label, keyed by a file name."""
    from PIL import Image, ImageDraw

    s, m = size, size // 6
    images = {}
    im = Image.new("RGB", (s, s), "white")
    ImageDraw.Draw(im).ellipse((m, m, s - m, s - m), fill=(220, 30, 30))
    images["red-circle.png"] = im
    im = Image.new("RGB", (s, s), "white")
    ImageDraw.Draw(im).rectangle((m, m, s - m, s - m), fill=(30, 60, 220))
    images["blue-square.png"] = im
    im = Image.new("RGB", (s, s), "white")
    ImageDraw.Draw(im).polygon([(s // 2, m), (s - m, s - m), (m, s - m)], fill=(30, 170, 60))
    images["green-triangle.png"] = im
    im = Image.new("RGB", (s, s), "white")
    draw = ImageDraw.Draw(im)
    for x in range(0, s, s // 8):
        draw.rectangle((x, 0, x + s // 16, s), fill="black")
    images["stripes.png"] = im
    im = Image.new("RGB", (s, s))
    draw = ImageDraw.Draw(im)
    for y in range(s):  # orange sky fading to purple, a sun on the horizon, dark sea below
        t = y / s
        draw.line((0, y, s, y), fill=(int(250 - 120 * t), int(150 - 120 * t), int(60 + 60 * t)))
    draw.ellipse((s // 2 - m, 2 * s // 3 - m, s // 2 + m, 2 * s // 3 + m), fill=(255, 220, 80))
    draw.rectangle((0, 2 * s // 3, s, s), fill=(20, 30, 70))
    images["sunset.jpg"] = im
    return images


def write_samples(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, image in draw_samples().items():
        path = folder / name
        image.save(path)
        paths.append(path)
    return paths
