"""ProximaDB: a vector database with a binary-Avro write path.

In-process use (the daemon and the network SDK build on the same engine)::

    import proximadb
    with proximadb.open_engine("./data") as engine:
        ...
"""

from proximadb._version import __version__
from proximadb.errors import ProximaDBError

__all__ = ["ProximaDBError", "__version__", "connect", "connect_grpc", "connect_rest", "open_engine"]


def connect(url=None, **options):  # type: ignore[no-untyped-def]
    """A client for a running daemon: gRPC preferred, REST fallback. See :mod:`proximadb.sdk`."""
    from proximadb.sdk import connect as _connect

    return _connect(url, **options)


def connect_grpc(target="127.0.0.1:5679", **options):  # type: ignore[no-untyped-def]
    from proximadb.sdk import connect_grpc as _connect_grpc

    return _connect_grpc(target, **options)


def connect_rest(url="http://127.0.0.1:5678", **options):  # type: ignore[no-untyped-def]
    from proximadb.sdk import connect_rest as _connect_rest

    return _connect_rest(url, **options)


def open_engine(data_dir, **options):  # type: ignore[no-untyped-def]
    """Open (or create) a data directory in this process. See :class:`proximadb.storage.engine.Engine`."""
    from proximadb.storage.engine import Engine

    return Engine.open(data_dir, **options)
