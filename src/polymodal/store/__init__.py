"""The store room: collections of items and vectors in an embedded LanceDB database.

Nothing else in polymodal touches storage. Needs the `store` extra (lancedb, pylance).
"""

from polymodal.store.collection import Collection, Database, check_name, default_db_path
from polymodal.store.filters import Filter

__all__ = ["Collection", "Database", "Filter", "check_name", "default_db_path", "open_db"]


def open_db(path=None) -> Database:
    """The database at `path` (default: $POLYMODAL_DB or ~/.local/share/polymodal/db)."""
    return Database(path)
