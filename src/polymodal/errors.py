"""The one error hierarchy of polymodal.

Every message names the bad value and the fix. Catch `PolymodalError` to catch them all; the
subclasses also derive from the matching built-in (ValueError, LookupError, ...) so that callers
who already catch those keep working.
"""

from __future__ import annotations

import difflib


def _rebuild(cls, message: str, state: dict):
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    return exc


class PolymodalError(Exception):
    """Base of every error polymodal raises on purpose."""

    #: exit status of the `polymodal` command when this error ends it
    exit_code = 1

    def __reduce__(self):
        # Subclasses take other constructor arguments than their message; rebuilding from the
        # message and attributes lets every one cross a process boundary (Ray workers, pools).
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


class InvalidInputError(PolymodalError, ValueError):
    """An argument a caller gave is unusable (empty label list, empty text, bad option)."""

    exit_code = 2


class MediaError(PolymodalError, ValueError):
    """A media item could not be decoded into something a model can take.

    `reason` is one of: "corrupt", "unsupported", "too-large", "unreadable", "empty".
    `source` names the item (a path, "<bytes>", "<array>", "item 3").
    """

    def __init__(self, source: str, reason: str, detail: str):
        self.source, self.reason, self.detail = source, reason, detail
        super().__init__(f"{source}: {reason}: {detail}")


class ModelNotFoundError(PolymodalError, LookupError):
    """A model name is neither registered, nor `hf:org/repo`, nor an existing path."""

    def __init__(self, name: str, known: list[str]):
        self.name = name
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(
            f"unknown model {name!r}.{hint} Run `polymodal models list` for the registered names, "
            f"or pass `hf:org/repo` or a local directory."
        )


class ModelNotAvailableError(PolymodalError, FileNotFoundError):
    """A known model whose weights are not on this machine and cannot be fetched."""


class CheckpointError(PolymodalError, ValueError):
    """Weights that do not fit the architecture (missing keys, wrong shapes, unknown layout)."""


class BackendUnavailableError(PolymodalError, ImportError):
    """An optional dependency is missing; the message gives the pip command that installs it."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the Python package {package!r}, which is not installed. "
            f"Install it with: pip install 'polymodal[{extra}]'"
        )


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or raise `BackendUnavailableError` with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BackendUnavailableError(module.split(".")[0], extra, purpose) from exc


class CollectionNotFoundError(PolymodalError, LookupError):
    """A collection name that the database does not hold."""

    def __init__(self, name: str, known: list[str], db: str):
        self.name = name
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        have = f"it holds: {', '.join(sorted(known))}" if known else "it holds none yet"
        super().__init__(
            f"no collection {name!r} in {db} ({have}).{hint} Create one with `polymodal index PATH --collection {name}`."
        )


class ModelMismatchError(PolymodalError, ValueError):
    """Vectors (or a query) from a model other than the one that filled a collection."""

    exit_code = 2


class CollectionBusyError(PolymodalError, RuntimeError):
    """Another process is writing to the collection right now."""
