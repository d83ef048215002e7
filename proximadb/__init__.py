"""ProximaDB: a vector database with a binary-Avro write path.

One API (:class:`proximadb.client_api.ProximaDBAPI`) in this process or against a daemon::

    import proximadb
    with proximadb.connect_embedded("./data") as db:      # or proximadb.connect("http://host:5678")
        db.create_collection("docs", 3, exist_ok=True)
        db.upsert_vectors("docs", ids=["a"], vectors=[[1, 0, 0]], metadatas=[{"lang": "en"}])
        hits = db.search("docs", [1, 0, 0], k=5, filter={"lang": "en"})
        docs = db.get_or_create_collection("docs", 3)    # a handle: docs.add(...), docs.query(...), docs.count()

``open_engine(path)`` gives the engine itself (the daemon and both clients build on it).
"""

import sys as _sys

# `proximadb serve` holds its stop signals from its first line of ours, which is this package's import
# (both `python -m proximadb serve` and the console script import it before proximadb.cli.entry runs):
# a SIGINT during the imports below could otherwise be raised in an import lock's weakref callback and
# dropped (proximadb/cli/entry.py says why).
if _sys.orig_argv[1:4] == ["-m", "proximadb", "serve"] or (
        len(_sys.orig_argv) > 2 and _sys.orig_argv[1].endswith("/proximadb") and _sys.orig_argv[2] == "serve"):
    from proximadb.cli.entry import hold_stop_signals as _hold

    _hold()

from proximadb._version import __version__
from proximadb.errors import ProximaDBError

__all__ = [
    "ProximaDBError", "__version__", "connect", "connect_async", "connect_embedded", "connect_grpc", "connect_rest",
    "open_engine",
]


def connect(url=None, **options):  # type: ignore[no-untyped-def]
    """A client for a running daemon: gRPC preferred, REST fallback. See :mod:`proximadb.sdk`."""
    from proximadb.sdk import connect as _connect

    return _connect(url, **options)


def connect_async(url=None, **options):  # type: ignore[no-untyped-def]
    """An asyncio client (``await`` it or ``async with`` it): gRPC preferred, REST fallback.
    See :mod:`proximadb.sdk.async_client`."""
    from proximadb.sdk import connect_async as _connect_async

    return _connect_async(url, **options)


def connect_grpc(target="127.0.0.1:5679", **options):  # type: ignore[no-untyped-def]
    from proximadb.sdk import connect_grpc as _connect_grpc

    return _connect_grpc(target, **options)


def connect_rest(url="http://127.0.0.1:5678", **options):  # type: ignore[no-untyped-def]
    from proximadb.sdk import connect_rest as _connect_rest

    return _connect_rest(url, **options)


def connect_embedded(data_dir, **options):  # type: ignore[no-untyped-def]
    """A client for a data directory opened in this process: the same API as :func:`connect`.
    See :mod:`proximadb.embedded`."""
    from proximadb.embedded import connect_embedded as _connect_embedded

    return _connect_embedded(data_dir, **options)


def open_engine(data_dir, **options):  # type: ignore[no-untyped-def]
    """Open (or create) a data directory in this process. See :class:`proximadb.storage.engine.Engine`."""
    from proximadb.storage.engine import Engine

    return Engine.open(data_dir, **options)
