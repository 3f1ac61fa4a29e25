"""Prompt templates for zero-shot classification. `{}` stands for the label.

IMAGENET_80 is the ensemble of 80 templates that Radford et al. (2021) used for ImageNet; their
prompt-engineering notebook also picked the 7 below as a cheaper ensemble of nearly equal quality.
"""

from __future__ import annotations

from pathlib import Path

from polymodal.errors import InvalidInputError

IMAGENET_80 = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)

IMAGENET_7 = (
    "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
    "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
)

SIMPLE = ("a photo of a {}.",)

NAMED = {"imagenet80": IMAGENET_80, "imagenet7": IMAGENET_7, "simple": SIMPLE}
DEFAULT = "imagenet80"


def resolve_templates(templates: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """A named set ("imagenet80", "imagenet7", "simple"), a file with one template per line, or a
    list of templates; each must contain `{}` (or `{label}`) where the label goes."""
    if templates is None:
        templates = DEFAULT
    if isinstance(templates, str):
        if templates in NAMED:
            return NAMED[templates]
        path = Path(templates)
        if not path.is_file():
            raise InvalidInputError(
                f"templates {templates!r} is neither a named set ({', '.join(NAMED)}) nor a file"
            )
        templates = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = tuple(t.replace("{label}", "{}") for t in templates)
    if not out:
        raise InvalidInputError("the template list is empty: give at least one template such as 'a photo of a {}.'")
    bad = [t for t in out if t.count("{}") != 1]
    if bad:
        raise InvalidInputError(f"each template needs exactly one '{{}}' where the label goes; these do not: {bad[:3]}")
    return out
