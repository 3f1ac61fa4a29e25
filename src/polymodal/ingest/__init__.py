"""The ingest room: walk -> read -> decode -> embed -> write, streaming and resumable.

`index_paths(collection, paths)` brings a collection up to date with files on disk; new media
types plug in as decoders (`polymodal.ingest.decoders.register_decoder`), not as new pipelines.
"""

from polymodal.ingest.pipeline import IndexReport, index_paths

__all__ = ["IndexReport", "index_paths"]
