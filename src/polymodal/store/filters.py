"""Metadata filters that combine with vector search, turned into LanceDB's SQL predicates.

Users give structured filters (a path pattern, kinds or media types, a time range) and polymodal
writes the SQL, quoting every value, so a path with a quote in it filters correctly and nothing a
user types can change the query's shape. A raw SQL predicate (`where`) is accepted from Python and
the command line only (never from the HTTP API), for what the structured filters do not cover.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field

from polymodal.errors import InvalidInputError

_KINDS = ("image", "text")


@dataclass
class Filter:
    path: str | None = None  # glob over the source path: "*.png", "/photos/2024/*", "*beach*"
    kinds: list[str] = field(default_factory=list)  # "image", "text", or MIME types "image/png"
    since: float | None = None  # file modification time >= (seconds since the epoch)
    until: float | None = None  # file modification time < (seconds since the epoch)
    where: str | None = None  # raw SQL predicate over the record columns (trusted callers only)

    def is_empty(self) -> bool:
        return not (self.path or self.kinds or self.since is not None or self.until is not None or self.where)

    def to_sql(self) -> str | None:
        parts = []
        if self.path:
            parts.append(f"source LIKE {_quote(glob_to_like(self.path))} ESCAPE '\\'")
        if self.kinds:
            alternatives = []
            for kind in self.kinds:
                kind = kind.strip().lower()
                if kind in _KINDS:
                    alternatives.append(f"kind = {_quote(kind)}")
                elif re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+*-]+", kind):
                    alternatives.append(f"media_type LIKE {_quote(kind.replace('*', '%'))}")
                else:
                    raise InvalidInputError(
                        f"unknown media type {kind!r}: use 'image', 'text' or a MIME type such as 'image/png' or 'image/*'")
            parts.append("(" + " OR ".join(alternatives) + ")")
        if self.since is not None:
            parts.append(f"mtime >= {float(self.since)!r}")
        if self.until is not None:
            parts.append(f"mtime < {float(self.until)!r}")
        if self.where:
            parts.append(f"({self.where})")
        return " AND ".join(parts) if parts else None


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def glob_to_like(pattern: str) -> str:
    """Shell glob -> SQL LIKE pattern ('*' any run, '?' one character; LIKE's own wildcards escaped).

    A pattern without a slash matches anywhere in the path ("*.png", "beach*"), like `find -name`
    on the last part; one with a slash is matched against the whole absolute path."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    like = "".join(out)
    if "/" not in pattern:
        like = "%/" + like
    return like


def parse_time(text: str) -> float:
    """An ISO date or date-time ("2024-05-01", "2024-05-01T12:00"), or a number of seconds since
    the epoch -> seconds since the epoch (naive times are local time)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return _dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise InvalidInputError(f"cannot read time {text!r}: give a date like 2024-05-01, a date-time like 2024-05-01T12:30, or seconds since the epoch") from None
