"""polymodal: one toolkit for multimodal AI.

`import polymodal` stays light: torch and every backend load only when a model is used.

    >>> import polymodal
    >>> model = polymodal.load("clip-tiny-random")          # or "hf:org/repo", or a directory
    >>> model.encode_texts(["a photo of a cat"]).shape
    (1, 32)
    >>> polymodal.classify(model, ["cat.jpg"], labels=["cat", "dog"])
    >>> photos = polymodal.open_collection("photos", create=True)
    >>> photos.add(["~/Pictures"]); photos.search("a dog jumping into a lake", k=5)

Where each capability lives (command; Python entry point; guide):

    embed            polymodal embed;        polymodal.load(spec).encode_images/encode_texts;  README.md
    classify         polymodal classify;     polymodal.classify;                               docs/cli.md
    models           polymodal models;       polymodal.load, polymodal.backends.onnx;          README.md, docs/models/lite.md
    evaluate         polymodal eval;         polymodal.eval.zeroshot, polymodal.eval.retrieval; docs/cli.md
    index, search    polymodal index/search/dupes/collections;
                                             polymodal.open_collection -> Collection;          docs/collections.md
    Ray ingestion    polymodal index --engine ray; Collection.add(..., engine="ray");          docs/ray.md
    HTTP, web page   polymodal serve;        polymodal.serve.create_app;                       docs/serve.md
    train            polymodal train;        polymodal.train.trainer.train(TrainConfig(...));  docs/train.md
    guard            polymodal guard scan/analyze/consistency/attacks/probe;
                                             polymodal.guard.scan.scan_image, guard.analyze.analyze,
                                             guard.consistency, guard.safety, guard.attacks, guard.probe;
                                                                                               docs/guard.md
    adversarial      -;                      polymodal.guard.adversarial, polymodal.guard.squeeze; docs/guard/adversarial.md
    benchmarks       python benchmarks/NAME.py;                                                benchmarks/README.md, benchmarks/RESULTS.md
    shipped weights  python lab/lite/train_lite.py, lab/guard_injection/;                      lab/
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
