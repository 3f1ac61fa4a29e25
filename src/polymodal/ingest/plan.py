"""Walk the roots, compare what is on disk with what the collection holds, decide the work.

A file whose size and modification time equal the stored ones is unchanged and is not read
(`rehash=True` reads and hashes it anyway). Everything else is read and hashed by the pipeline,
which then tells apart a touched file (same hash: only the row's mtime moves), a renamed or copied
file (a hash stored under another path: the vector is reused, not recomputed) and a new or changed
file (decoded and embedded).

Rows whose file is gone are either moved (their content is now stored under another path: always
removed) or missing (removed only with `prune`). Only rows under the given roots are considered,
so indexing one folder never touches another's rows.

The plan is recomputed from the collection on every run, and every write is an atomic commit, so
a run killed at any point is finished by the next one with nothing twice and nothing lost.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from polymodal.errors import InvalidInputError
from polymodal.ingest.decoders import decoder_for

_SKIP_DIRS = {"__pycache__", "node_modules"}


@dataclass(frozen=True)
class SourceFile:
    path: str  # absolute, symlinks resolved
    size: int
    mtime: float  # seconds since the epoch (st_mtime_ns / 1e9: compares exactly after a round trip)


@dataclass
class Plan:
    roots: list[str]
    version: int = 0  # the collection's version the plan was made from (copies read vectors there)
    work: list[SourceFile] = field(default_factory=list)  # new, changed or unverified files to read
    unchanged: int = 0
    stored: dict[str, list[dict]] = field(default_factory=dict)  # source -> its rows under the roots
    by_hash: dict[str, str] = field(default_factory=dict)  # content hash -> a stored source holding it
    gone: list[str] = field(default_factory=list)  # stored sources no longer on disk
    duplicate_rows: list[tuple[str, float]] = field(default_factory=list)  # (id, indexed_at) of stale twins
    ignored: list[str] = field(default_factory=list)  # files of no known media type inside walked folders
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, why) found while walking
    unsupported: list[str] = field(default_factory=list)  # files named explicitly that no decoder reads


def _mtime(st: os.stat_result) -> float:
    return st.st_mtime_ns / 1e9


def walk(roots: list[str], plan: Plan) -> list[SourceFile]:
    """Every file under `roots` that a decoder claims, sorted; explicit files are always taken."""
    found: dict[str, SourceFile] = {}
    for root in roots:
        try:
            st = os.stat(root)
        except OSError as exc:
            plan.unreadable.append((root, exc.strerror or str(exc)))
            continue
        if stat.S_ISREG(st.st_mode):
            if decoder_for(root) is None:
                plan.unsupported.append(root)
            else:
                found[root] = SourceFile(root, st.st_size, _mtime(st))
            continue
        # A link inside a walked folder that points outside it is not followed: indexing (and
        # the server, which serves indexed files) stays within what was asked for.
        inside = root.rstrip("/") + "/"
        for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: plan.unreadable.append((e.filename, e.strerror or str(e)))):
            # Hidden folders (.git, .cache, ...) and tool folders are not collections' content.
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
            for name in filenames:
                if name.startswith("."):
                    continue
                path = os.path.join(dirpath, name)
                if decoder_for(name) is None:
                    plan.ignored.append(path)
                    continue
                try:
                    real = os.path.realpath(path)
                    st = os.stat(real)
                except OSError as exc:
                    plan.unreadable.append((path, exc.strerror or str(exc)))
                    continue
                if not real.startswith(inside):
                    plan.ignored.append(path)
                    continue
                if stat.S_ISREG(st.st_mode):
                    found[real] = SourceFile(real, st.st_size, _mtime(st))
    return [found[p] for p in sorted(found)]


def normalise_roots(paths: list[str]) -> list[str]:
    if not paths:
        raise InvalidInputError("give at least one file or folder to index")
    roots = []
    for p in paths:
        p = os.path.realpath(os.path.expanduser(str(p)))
        if not os.path.exists(p):
            raise InvalidInputError(f"no such file or folder: {p}; check the path (nothing was changed)")
        roots.append(p)
    return roots


def root_filter(roots: list[str]) -> str:
    """SQL predicate: the row's source lies under one of the roots."""
    def quote(s: str) -> str:
        return "'" + s.replace("'", "''") + "'"

    def like_prefix(s: str) -> str:
        return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

    parts = []
    for root in roots:
        if os.path.isdir(root):
            parts.append(f"source LIKE {quote(like_prefix(root.rstrip('/')) + '/%')} ESCAPE '\\'")
        else:
            parts.append(f"source = {quote(root)}")
    return " OR ".join(parts)


def scan_under(collection, roots: list[str], columns: list[str]):
    """Stored rows whose source lies under one of `roots` (a few roots filter in the database;
    many, as when a collection is re-embedded file by file, filter here)."""
    if len(roots) <= 32:
        yield from collection.scan(columns, where=root_filter(roots))
        return
    files = {r for r in roots if not os.path.isdir(r)}
    prefixes = tuple(r.rstrip("/") + "/" for r in roots if os.path.isdir(r))
    for row in collection.scan(columns):
        if row["source"] in files or (prefixes and row["source"].startswith(prefixes)):
            yield row


def make_plan(collection, paths: list[str], *, rehash: bool = False) -> Plan:
    roots = normalise_roots(paths)
    plan = Plan(roots=roots, version=collection.version)
    files = walk(roots, plan)

    latest: dict[str, dict] = {}  # id -> newest row (twins with one id can only come from a crash between engines)
    columns = ["id", "uri", "source", "size", "mtime", "content_hash", "indexed_at"]
    for row in scan_under(collection, roots, columns):
        other = latest.get(row["id"])
        if other is not None:
            stale = row if row["indexed_at"] < other["indexed_at"] else other
            plan.duplicate_rows.append((stale["id"], stale["indexed_at"]))
            if stale is other:
                latest[row["id"]] = row
            continue
        latest[row["id"]] = row
    for row in latest.values():
        plan.stored.setdefault(row["source"], []).append(row)
        if row["content_hash"]:
            plan.by_hash.setdefault(row["content_hash"], row["source"])

    on_disk = set()
    for f in files:
        on_disk.add(f.path)
        rows = plan.stored.get(f.path)
        if rows and not rehash and all(r["size"] == f.size and r["mtime"] == f.mtime for r in rows):
            plan.unchanged += 1
        else:
            plan.work.append(f)
    # A folder that could not be listed hides its files; they are not gone.
    hidden = tuple(p.rstrip("/") + "/" for p, _ in plan.unreadable)
    plan.gone = sorted(s for s in plan.stored if s not in on_disk and not (hidden and s.startswith(hidden)))
    return plan
