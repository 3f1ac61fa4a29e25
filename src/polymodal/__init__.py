"""polymodal: one toolkit for multimodal AI.

`import polymodal` stays light: torch and every backend load only when a model is used.

    >>> import polymodal
    >>> model = polymodal.load("clip-tiny-random")          # or "hf:org/repo", or a directory
    >>> model.encode_texts(["a photo of a cat"]).shape
    (1, 32)
    >>> polymodal.classify(model, ["cat.jpg"], labels=["cat", "dog"])
    >>> photos = polymodal.open_collection("photos", create=True)
    >>> photos.add(["~/Pictures"]); photos.search("a dog jumping into a lake", k=5)
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load", "classify", "open_collection", "Filter", "__version__"]


def __getattr__(name: str):
    # Lazy exports keep the import cheap (no torch until a model is touched).
    if name == "load":
        from polymodal.embed.resolve import load_embedder

        return load_embedder
    if name == "classify":
        from polymodal.tasks.zeroshot import classify

        return classify
    if name == "open_collection":
        from polymodal.collections import open_collection

        return open_collection
    if name == "Filter":
        from polymodal.store.filters import Filter

        return Filter
    raise AttributeError(f"module 'polymodal' has no attribute {name!r}")
