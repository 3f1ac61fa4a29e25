"""Sample images drawn in code, so the demo and the docs need no data files and no download.

Each drawing is an object the offline default model knows from ImageNet (a traffic light, a
crossword, a maze, a honeycomb, a pinwheel), so the demo shows real zero-shot results.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 256
SAMPLE_LABELS = ["traffic light", "crossword puzzle", "maze", "honeycomb", "pinwheel"]


def _traffic_light() -> Image.Image:
    im = Image.new("RGB", (SIZE, SIZE), (135, 190, 235))  # sky
    d = ImageDraw.Draw(im)
    d.rectangle((120, 150, 136, SIZE), fill=(60, 60, 60))  # pole
    d.rounded_rectangle((93, 20, 163, 180), 12, fill=(25, 25, 25))  # housing
    for i, colour in enumerate([(230, 30, 30), (90, 70, 10), (20, 60, 20)]):  # red lit, amber and green off
        d.ellipse((106, 30 + 50 * i, 150, 74 + 50 * i), fill=colour)
    return im


def _crossword(n: int = 11) -> Image.Image:
    im = Image.new("RGB", (SIZE, SIZE), "white")
    d = ImageDraw.Draw(im)
    rnd, c = random.Random(0), SIZE // n
    for i in range(n):
        for j in range(n):
            if rnd.random() < 0.2:
                d.rectangle((i * c, j * c, i * c + c, j * c + c), fill="black")
    for k in range(n + 1):
        d.line((k * c, 0, k * c, SIZE), fill="black", width=2)
        d.line((0, k * c, SIZE, k * c), fill="black", width=2)
    return im


def _maze(n: int = 12) -> Image.Image:
    """A perfect maze carved by a depth-first walk from the top-left cell."""
    c = SIZE // n
    walls = {(x, y): [True, True, True, True] for x in range(n) for y in range(n)}  # N E S W
    steps = [(0, -1, 0, 2), (1, 0, 1, 3), (0, 1, 2, 0), (-1, 0, 3, 1)]  # dx, dy, wall here, wall there
    rnd, seen, stack = random.Random(1), {(0, 0)}, [(0, 0)]
    while stack:
        x, y = stack[-1]
        options = [s for s in steps if (x + s[0], y + s[1]) in walls and (x + s[0], y + s[1]) not in seen]
        if not options:
            stack.pop()
            continue
        dx, dy, here, there = rnd.choice(options)
        walls[(x, y)][here] = walls[(x + dx, y + dy)][there] = False
        seen.add((x + dx, y + dy))
        stack.append((x + dx, y + dy))
    im = Image.new("RGB", (SIZE, SIZE), "white")
    d = ImageDraw.Draw(im)
    for (x, y), (north, east, south, west) in walls.items():
        X, Y = x * c, y * c
        for present, line in ((north, (X, Y, X + c, Y)), (east, (X + c, Y, X + c, Y + c)),
                              (south, (X, Y + c, X + c, Y + c)), (west, (X, Y, X, Y + c))):
            if present:
                d.line(line, fill="black", width=3)
    return im


def _honeycomb(r: int = 18) -> Image.Image:
    im = Image.new("RGB", (SIZE, SIZE), (120, 70, 10))  # wax walls
    d = ImageDraw.Draw(im)
    for row in range(-1, 12):
        for col in range(-1, 10):
            cx, cy = col * r * math.sqrt(3) + (row % 2) * r * math.sqrt(3) / 2, row * r * 1.5
            corners = [(cx + (r - 2) * math.cos(math.pi / 6 + k * math.pi / 3),
                        cy + (r - 2) * math.sin(math.pi / 6 + k * math.pi / 3)) for k in range(6)]
            d.polygon(corners, fill=(235, 170, 40))  # honey
    return im


def _pinwheel() -> Image.Image:
    im = Image.new("RGB", (SIZE, SIZE), (200, 225, 245))
    d = ImageDraw.Draw(im)
    d.rectangle((124, 128, 132, SIZE), fill=(140, 100, 60))  # stick
    hub = (128, 110)
    for k, colour in enumerate([(230, 40, 40), (40, 90, 220), (250, 200, 30), (40, 170, 70)]):
        a = k * math.pi / 2
        tip = (hub[0] + 95 * math.cos(a), hub[1] + 95 * math.sin(a))
        side = (hub[0] + 71 * math.cos(a + math.pi / 4), hub[1] + 71 * math.sin(a + math.pi / 4))
        d.polygon([hub, tip, side], fill=colour)
    d.ellipse((121, 103, 135, 117), fill="white")
    return im


def draw_samples() -> dict[str, Image.Image]:
    """One RGB image per sample label, keyed by a file name, in SAMPLE_LABELS order."""
    return {"traffic-light.png": _traffic_light(), "crossword.png": _crossword(), "maze.png": _maze(),
            "honeycomb.png": _honeycomb(), "pinwheel.jpg": _pinwheel()}


def write_samples(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, image in draw_samples().items():
        path = folder / name
        image.save(path)
        paths.append(path)
    return paths
