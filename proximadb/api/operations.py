"""The table of API operations: one entry per thing a client can ask, for both protocols.

Each :class:`Operation` says

* ``name``: stable and protocol-neutral (``"search"``, ``"create_collection"``);
* ``kind``: :attr:`Kind.READ`, :attr:`Kind.WRITE` or :attr:`Kind.PROBE`. A read-only API key may run
  reads and probes, writes need a read-write key. Probes (health, readiness, metrics, the API
  document) bypass admission, so an operator can still look at a daemon at its limit; reads and
  writes hold an admission slot and a deadline (:mod:`proximadb.service.admission`);
* ``rest``: the ``(method, route template)`` pairs that serve it; for each method the first pair
  with that method is the one the SDK's REST transport calls;
* ``rpc``: its gRPC RPC name, or ``None`` when it exists over REST only;
* ``open``: answered without an API key (health, and the dashboard's static files);
* ``idempotent``: sending it twice does no more than once, so the SDK's REST transport resends it
  when a kept-alive connection turns out to be dead (reads and probes are).

Readers: the key checks of both protocols (``api/rest/auth.py``, ``api/grpc/auth.py``), admission
(``api/rest/admission.py`` and the gRPC servicer's ``_rpc`` wrapper), request metrics
(:func:`record_request`, from ``api/rest/middleware.py`` and ``_rpc``) and the SDK's transports
(``sdk/rest_transport.py`` takes method, path and idempotency from here, ``sdk/grpc_transport.py``
the RPC). ``tests/api/test_operations.py`` checks that every mounted REST route and every RPC of the
generated service has exactly one entry, so a new route or RPC cannot go unclassified.

Anything not in the table is refused as a write (a read-only key gets 403 / PERMISSION_DENIED)
and is admitted like one (:func:`for_route`, :func:`for_rpc`). The one refinement: a REST request
whose method has no responder on its route runs nothing (Falcon answers it with 405, or with the
allowed methods for ``OPTIONS``); with a safe method (GET, HEAD, OPTIONS) it is a probe of that
route, open when the route is, so HEAD /health stays open and a read-only key gets the 405.

Metrics: the label of an operation is where it was asked, the route template over REST (with the
method) and the RPC name over gRPC, as dashboards already know them; error mapping is
:mod:`proximadb.errors` (each error's code, HTTP status and gRPC status).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from proximadb.service.metrics import Labels, Metrics


class Kind(Enum):
    READ = "read"
    WRITE = "write"
    PROBE = "probe"


@dataclass(frozen=True)
class Operation:
    name: str
    kind: Kind
    rest: tuple[tuple[str, str], ...] = ()
    rpc: str | None = None
    open: bool = False
    idempotent: bool = False

    @property
    def write(self) -> bool:
        """Needs a read-write key."""
        return self.kind is Kind.WRITE

    @property
    def admitted(self) -> bool:
        """Holds an admission slot and a deadline while it runs (probes do not)."""
        return self.kind is not Kind.PROBE

    def route(self, method: str) -> str:
        """The route template the SDK calls with ``method`` (the first one listed)."""
        for m, template in self.rest:
            if m == method:
                return template
        raise KeyError(f"operation {self.name} has no {method} route")

    def path(self, method: str, **params: str) -> str:
        """:meth:`route` with its ``{parameters}`` filled in, each quoted as one path segment."""
        return _PARAM.sub(lambda m: quote(params[m.group(1)], safe=""), self.route(method))


_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
_C = "/collections/{collection}"
_V = _C + "/vectors"


def _probe(name: str, rest: str, rpc: str | None = None, *, open: bool = False) -> Operation:
    return Operation(name, Kind.PROBE, (("GET", rest),), rpc, open=open, idempotent=True)


def _read(name: str, rpc: str, *rest: tuple[str, str]) -> Operation:
    return Operation(name, Kind.READ, rest, rpc, idempotent=True)


def _write(name: str, rpc: str | None, *rest: tuple[str, str], idempotent: bool = False) -> Operation:
    return Operation(name, Kind.WRITE, rest, rpc, idempotent=idempotent)


HEALTH = _probe("health", "/health", "Health", open=True)
READY = _probe("ready", "/ready")
METRICS = _probe("metrics", "/metrics")
OPENAPI = _probe("openapi", "/openapi.json")
# The dashboard's static files (api/rest/dashboard.py) are open; every data call the page makes sends the key.
DASHBOARD = Operation("dashboard", Kind.PROBE, (("GET", "/dashboard"), ("GET", "/dashboard/{asset}")), open=True,
                      idempotent=True)

LIST_COLLECTIONS = _read("list_collections", "ListCollections", ("GET", "/collections"))
GET_COLLECTION = _read("get_collection", "GetCollection", ("GET", _C))
STATS = _read("stats", "Stats", ("GET", _C + "/stats"))
CREATE_COLLECTION = _write("create_collection", "CreateCollection", ("POST", "/collections"))
UPDATE_COLLECTION = _write("update_collection", "UpdateCollection", ("PATCH", _C), idempotent=True)
DELETE_COLLECTION = _write("delete_collection", "DeleteCollection", ("DELETE", _C))
COMPACT = _write("compact", "Compact", ("POST", _C + "/compact"))
FLUSH = _write("flush", "Flush", ("POST", _C + "/flush"), idempotent=True)  # a second flush finds nothing to do

# Insert: a batch, one record, or PUT of one record by id (an upsert of one).
INSERT = _write("insert", "Insert", ("POST", _V + "/batch"), ("POST", _V), ("PUT", _V + "/{id:path}"))
# Mutate: delete by ids or filter, update metadata; REST also by one id in the path.
MUTATE = _write("mutate", "Mutate", ("POST", _V + "/delete"), ("PATCH", _V + "/{id:path}"),
                ("DELETE", _V + "/{id:path}"))
GET = _read("get", "Get", ("POST", _V + "/get"), ("GET", _V + "/{id:path}"))
SCROLL = _read("scroll", "Scroll", ("POST", _V + "/scroll"))
COUNT = _read("count", "Count", ("GET", _V + "/count"), ("POST", _V + "/count"))
SEARCH = _read("search", "Search", ("POST", _C + "/search"))
SEARCH_BATCH = _read("search_batch", "SearchBatch", ("POST", _C + "/search/batch"))
SEARCH_TEXT = _read("search_text", "SearchText", ("POST", _C + "/search_text"))
HYBRID_SEARCH = _read("hybrid_search", "HybridSearch", ("POST", _C + "/hybrid_search"))
SEARCH_SPARSE = _read("search_sparse", "SearchSparse", ("POST", _C + "/search/sparse"))
SEARCH_GROUPS = _read("search_groups", "SearchGroups", ("POST", _C + "/search_groups"))
RECOMMEND = _read("recommend", "Recommend", ("POST", _C + "/recommend"))
# Between cluster nodes only (proximadb/cluster/snapshot.py): a read, so the read-only cluster key may ask.
REPLICA_SNAPSHOT = Operation("replica_snapshot", Kind.READ, (("GET", "/cluster/replicas/{replica}/snapshot"),),
                             idempotent=True)

OPERATIONS: tuple[Operation, ...] = (
    HEALTH, READY, METRICS, OPENAPI, DASHBOARD,
    LIST_COLLECTIONS, GET_COLLECTION, STATS, CREATE_COLLECTION, UPDATE_COLLECTION, DELETE_COLLECTION, COMPACT, FLUSH,
    INSERT, MUTATE, GET, SCROLL, COUNT, SEARCH, SEARCH_BATCH, SEARCH_TEXT, HYBRID_SEARCH, SEARCH_SPARSE,
    SEARCH_GROUPS, RECOMMEND, REPLICA_SNAPSHOT,
)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNLISTED_WRITE = Operation("unlisted", Kind.WRITE)


def _index() -> tuple[dict[tuple[str, str], Operation], dict[str, Operation]]:
    by_route: dict[tuple[str, str], Operation] = {}
    by_rpc: dict[str, Operation] = {}
    for op in OPERATIONS:
        for binding in op.rest:
            if binding in by_route:
                raise ValueError(f"{binding} is listed for both {by_route[binding].name} and {op.name}")
            by_route[binding] = op
        if op.rpc is not None:
            if op.rpc in by_rpc:
                raise ValueError(f"RPC {op.rpc} is listed for both {by_rpc[op.rpc].name} and {op.name}")
            by_rpc[op.rpc] = op
    return by_route, by_rpc


_BY_ROUTE, _BY_RPC = _index()
_OPEN_TEMPLATES = frozenset(t for op in OPERATIONS if op.open for _, t in op.rest)


def for_route(method: str, template: str) -> Operation:
    """The operation a REST request runs, by method and route template (see the module doc for the rest)."""
    op = _BY_ROUTE.get((method, template))
    if op is not None:
        return op
    if method in SAFE_METHODS:
        return Operation(f"{method} {template}", Kind.PROBE, open=template in _OPEN_TEMPLATES)
    return UNLISTED_WRITE


def for_rpc(rpc: str) -> Operation:
    """The operation of a ProximaDB RPC by name; an RPC missing from the table counts as a write."""
    return _BY_RPC.get(rpc, UNLISTED_WRITE)


# ---------------------------------------------------------------- request metrics, for both protocols

REQUESTS_TOTAL = "proximadb_requests_total"
REQUEST_SECONDS = "proximadb_request_seconds"
UNMATCHED_ROUTE = "unmatched"  # unknown REST paths share one label value, so they cannot grow the series


def describe_request_metrics(metrics: Metrics) -> None:
    metrics.describe(REQUESTS_TOTAL, "counter", "Requests by protocol, route and outcome code.")
    metrics.describe(REQUEST_SECONDS, "histogram", "Request latency by protocol and route.")


def record_request(
    metrics: Metrics, protocol: str, route: str, code: str, seconds: float | None, method: str | None = None
) -> None:
    """Count one request (``{protocol, route[, method], code}``) and, given its ``seconds``, time it."""
    key = (protocol, route, code, method)
    labels = _LABELS.get(key)
    if labels is None:
        where = (("protocol", protocol), ("route", route))
        labels = where, (*where, *((("method", method),) if method is not None else ()), ("code", code))
        if len(_LABELS) < _MAX_LABELS:
            _LABELS[key] = labels
    if seconds is None:
        metrics.inc(REQUESTS_TOTAL, labels[1])
    else:
        metrics.inc_and_observe(REQUESTS_TOTAL, labels[1], REQUEST_SECONDS, seconds, labels[0])


# The label tuples of each (protocol, route, code, method) seen, made once: routes are templates or RPC
# names and codes a few statuses, so this stays small (and is capped all the same).
_LABELS: dict[tuple[str, str, str, str | None], tuple[Labels, Labels]] = {}
_MAX_LABELS = 4096


__all__ = [
    "OPERATIONS", "REQUESTS_TOTAL", "REQUEST_SECONDS", "UNMATCHED_ROUTE", "Kind", "Operation",
    "describe_request_metrics", "for_route", "for_rpc", "record_request",
]
