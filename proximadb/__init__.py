"""ProximaDB: a vector database with a binary-Avro write path.

In-process use (the daemon and the network SDK build on the same engine)::

    import proximadb
    with proximadb.open_engine("./data") as engine:
        ...
"""

from proximadb._version import __version__
from proximadb.errors import ProximaDBError

__all__ = ["ProximaDBError", "__version__", "open_engine"]


def open_engine(data_dir, **options):  # type: ignore[no-untyped-def]
    """Open (or create) a data directory in this process. See :class:`proximadb.storage.engine.Engine`."""
    from proximadb.storage.engine import Engine

    return Engine.open(data_dir, **options)
