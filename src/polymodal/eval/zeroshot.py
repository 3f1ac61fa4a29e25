"""Zero-shot classification accuracy on a folder-per-class data set (e.g. CIFAR-10 JPEGs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polymodal.errors import InvalidInputError
from polymodal.tasks.zeroshot import ZeroShotClassifier

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


def read_class_folders(root: str | Path, per_class: int | None = None) -> tuple[list[str], list[str], list[int]]:
    """(class names, image paths, label index per image) from root/CLASS/*.jpg, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a directory of class folders")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise InvalidInputError(f"{root} needs at least two class folders, found {classes}")
    paths, labels = [], []
    for i, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for p in files[:per_class]:
            paths.append(str(p))
            labels.append(i)
    return classes, paths, labels


def evaluate_zeroshot(model, root: str | Path, *, templates=None, per_class: int | None = None,
                      progress: bool = False) -> dict:
    """Top-1 accuracy and per-class accuracy, with folder names as the labels."""
    classes, paths, labels = read_class_folders(root, per_class)
    labels_arr = np.asarray(labels)
    clf = ZeroShotClassifier(model, [c.replace("_", " ") for c in classes], templates)
    emb = model.embed_images(paths, progress=progress)
    pred = clf.scores(emb.vectors).argmax(axis=1)
    truth = labels_arr[emb.kept]
    per_class = {c: float(np.mean(pred[truth == i] == i)) for i, c in enumerate(classes) if np.any(truth == i)}
    return {"accuracy": float(np.mean(pred == truth)), "images": int(len(truth)), "skipped": len(emb.failures),
            "per_class": per_class, "templates": len(clf.templates)}
