"""The Python API for collections: open one, add files, search it, delete from it.

    >>> import polymodal
    >>> photos = polymodal.open_collection("photos", create=True)      # default db and model
    >>> report = photos.add(["~/Pictures"])                              # incremental
    >>> photos.search("a dog jumping into a lake", k=5).hits[0]["source"]
    >>> photos.search(image="query.jpg", filter=polymodal.Filter(path="*.png"))
    >>> photos.delete(sources=["/home/me/Pictures/old.jpg"])

The `polymodal` command and the HTTP server go through this same class, so they behave alike.
"""

from __future__ import annotations

import os
from pathlib import Path

from polymodal.store import Database, Filter
from polymodal.store import Collection as _Stored


def model_spec(model: str | os.PathLike | None) -> str:
    """The spec a collection records for its model: registered names and hf: ids as given, local
    paths made absolute (so the collection can load its model again from anywhere)."""
    from polymodal.models.registry import default_model_name

    if model is None:
        return default_model_name()
    text = os.fspath(model)
    if os.path.exists(text):
        return str(Path(text).resolve())
    return text


class Collection:
    """A stored collection plus its model, loaded the first time it is needed."""

    def __init__(self, stored: _Stored, embedder=None):
        self.stored = stored
        self._embedder = embedder

    @property
    def name(self) -> str:
        return self.stored.name

    @property
    def embedder(self):
        if self._embedder is None:
            from polymodal.embed.resolve import load_embedder

            self._embedder = load_embedder(self.stored.model)
            self.stored.check_model(self._embedder.name, self._embedder.dim)
        return self._embedder

    def info(self) -> dict:
        return self.stored.info()

    def add(self, paths, *, prune: bool = False, rehash: bool = False, metadata: dict | None = None,
            progress: bool | None = None, on_progress=None, engine: str = "local", ray_address: str | None = None,
            should_stop=None, guard: bool = False):
        """Index files and folders (only what is new or changed is embedded); an IndexReport.
        guard: also scan new images for prompt injections (verdicts in metadata["guard"])."""
        from polymodal.ingest import index_paths

        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        embedder = self.embedder if engine == "local" else self._embedder
        return index_paths(self.stored, [os.fspath(p) for p in paths], embedder, prune=prune, rehash=rehash,
                           metadata=metadata, progress=progress, on_progress=on_progress, engine=engine,
                           ray_address=ray_address, should_stop=should_stop, guard=guard)

    def search(self, text: str | None = None, *, image=None, text_weight: float = 1.0, image_weight: float = 1.0,
               k: int = 10, filter: Filter | None = None, threshold: float | None = None, exact: bool = False):
        from polymodal.tasks.search import search

        return search(self.stored, self.embedder, text=text, image=image, text_weight=text_weight,
                      image_weight=image_weight, k=k, filter=filter, threshold=threshold, exact=exact)

    def duplicates(self, *, threshold: float = 0.95, filter: Filter | None = None) -> list[dict]:
        from polymodal.tasks.search import find_duplicates

        return find_duplicates(self.stored, threshold=threshold, filter=filter)

    def get(self, item_id: str) -> dict | None:
        return self.stored.get(item_id)

    def delete(self, ids: list[str] | None = None, *, sources: list[str] | None = None) -> int:
        """Remove items by id, or every item of the given source files; the number removed."""
        from polymodal.ingest.plan import root_filter

        removed = 0
        with self.stored.writer_lock():
            if ids:
                before = self.stored.count()
                self.stored.delete(ids)
                removed += before - self.stored.count()
            if sources:
                where = root_filter([os.path.realpath(os.path.expanduser(s)) for s in sources])
                before = self.stored.count()
                self.stored.delete_where(where)
                removed += before - self.stored.count()
        return removed

    def __len__(self) -> int:
        return self.stored.count()

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, model={self.stored.model!r}, items={len(self)})"


def open_collection(name: str, *, db: str | os.PathLike | Database | None = None, model: str | None = None,
                    create: bool = False, embedder=None) -> Collection:
    """Open collection `name` (in `db`, default ~/.local/share/polymodal/db).

    model: None uses the collection's own model; a different one is refused (its vectors would
        not compare). When the collection does not exist and `create` is true, it is made for
        `model` (default: the offline default model).
    embedder: an already loaded model for `model` (saves loading it again)."""
    database = db if isinstance(db, Database) else Database(db)
    if database.exists(name) or not create:
        stored = database.open(name)
        if model is not None:
            spec = model_spec(model)
            stored.check_model(spec if spec == stored.model else _model_name(spec))
        if embedder is not None:
            stored.check_model(embedder.name, embedder.dim)
        return Collection(stored, embedder)
    from polymodal.embed.resolve import load_embedder

    spec = model_spec(model)
    embedder = embedder or load_embedder(spec)
    stored = database.create(name, model=spec, dim=embedder.dim, model_name=embedder.name)
    return Collection(stored, embedder)


def _model_name(spec: str) -> str:
    """The model's own name for a spec, without loading weights when the registry knows it."""
    from polymodal.models.registry import get_entry

    try:
        return get_entry(spec).name
    except Exception:  # noqa: BLE001 - not a registered name: hf:... ids and paths name themselves
        return spec
