"""Where a single-query search's time goes, layer by layer, in one process (issue 13's round trip).

    python bench/roundtrip_layers.py [--calls 200]               # microseconds, min of 15 repeats (noisy)
    python bench/roundtrip_layers.py --callgrind [--calls 100]   # instructions per call (repeatable under load)

Over a 10k x 128 flat collection (euclidean, k=10, the queries of bench/bench_e2e.py's seed), each layer
is the one below it plus its own work:

* ``col.search``: the in-process search, issue 13's baseline;
* ``col.search_batch``, ``service.search``, ``service.search_payload`` (the Avro frame decoded, the
  result encoded): the daemon's service layers;
* ``servicer.Search + protobuf``: the gRPC servicer's method with its ``_rpc`` wrapper (admission,
  deadline, consistency and request-id scopes, request metrics), the request parsed from its protobuf
  bytes and the response serialized; the ServicerContext is a stand-in that has no metadata;
* ``REST app search (WSGI)``: the Falcon app of the daemon (every middleware: metrics, admission,
  session scopes) called as gunicorn calls it, with the Avro search frame as the body and
  ``Accept: application/avro``; no socket, no HTTP parsing (gunicorn's);
* ``SDK client.search``: the blocking SDK client over a stub that answers at once with a real answer's
  protobuf bytes: the client's own work per call (plan, Avro encode/decode, transport, no network).

``--callgrind`` runs the script again under ``valgrind --tool=callgrind``, collecting only inside four
loops of ``--calls`` calls (``col.search``, the servicer, the REST app, the SDK client: each loop is
driven by its own C function that nothing inside calls, which callgrind toggles collection on), and
prints instructions per call. The
wall-clock timings move with the machine's load (it is shared); instruction counts do not.
"""

from __future__ import annotations

import argparse
import functools
import io
import operator
import re
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from proximadb.api.grpc._generated import proximadb_pb2 as pb
from proximadb.api.grpc.servicer import ProximaDBServicer
from proximadb.api.rest.app import create_app
from proximadb.codec import avro_search
from proximadb.codec.framing import decode_frame
from proximadb.sdk import calls
from proximadb.sdk import grpc_transport as gt
from proximadb.sdk.client import ProximaDBClient
from proximadb.service.requests import SearchParams
from proximadb.service.unified import UnifiedAvroService
from proximadb.storage.engine import Engine

DIM = 128
# layer -> the C function (as callgrind names it) that drives its loop of calls
DRIVERS = {"col.search": "_operator_countOf", "servicer.Search + protobuf": "_operator_indexOf",
           "REST app search (WSGI)": "functools_reduce", "SDK client.search": "_operator_contains"}


class _Context:
    """A ServicerContext with no metadata and a 30 s deadline."""

    def time_remaining(self) -> float:
        return 30.0

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    def abort(self, *args: Any) -> None:
        raise RuntimeError(args)


class _Stub:
    """The generated stub's ``Search``: the request serialized, a fixed answer parsed from its bytes."""

    def __init__(self, answer: bytes) -> None:
        self.answer = pb.PayloadResponse(payload=answer).SerializeToString()
        self.Search = self

    def with_call(self, request: Any, timeout: float | None = None, metadata: Any = None) -> tuple[Any, Any]:
        request.SerializeToString()
        return pb.PayloadResponse.FromString(self.answer), self

    def trailing_metadata(self) -> tuple[()]:
        return ()


class _Transport(gt.GrpcTransport):
    def __init__(self, answer: bytes) -> None:
        gt.GrpcEndpoint.__init__(self, "127.0.0.1:1", 30.0, None, 64 << 20, False, None)
        self._stub = _Stub(answer)


def _wsgi_search(app: Any, payload: bytes) -> Callable[[], bytes]:
    """One POST of ``payload`` to the app's search route, as gunicorn's worker makes it."""
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/collections/search/search", "QUERY_STRING": "",
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "5678", "SERVER_PROTOCOL": "HTTP/1.1",
               "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
               "CONTENT_TYPE": "application/avro", "CONTENT_LENGTH": str(len(payload)),
               "HTTP_ACCEPT": "application/avro", "HTTP_X_REQUEST_TIMEOUT": "30",
               "HTTP_USER_AGENT": "proximadb-python", "REMOTE_ADDR": "127.0.0.1"}

    def start_response(status: str, headers: Any) -> None:
        assert status.startswith("200"), status

    def call() -> bytes:
        return b"".join(app(dict(environ, **{"wsgi.input": io.BytesIO(payload)}), start_response))
    return call


def layers(n: int, root: Path) -> dict[str, Callable[[int], Any]]:
    """Each layer as a function of the query's index (``n`` queries)."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((10_000, DIM)).astype(np.float32)
    queries = rng.standard_normal((n, DIM)).astype(np.float32)
    engine = Engine.open(root, fsync="never")
    engine.create_collection("search", DIM, distance_metric="euclidean")
    col = engine.collection("search")
    col.insert(ids=[str(i) for i in range(len(base))], vectors=base)
    service = UnifiedAvroService(engine)
    servicer, context = ProximaDBServicer(service), _Context()
    payloads = [next(calls.search_batch(2, "search", [q], 10, {})).args[1] for q in queries]
    requests = [pb.PayloadRequest(collection="search", payload=p).SerializeToString() for p in payloads]
    matrices = [avro_search.decode_search_request(decode_frame(p)[2])["queries"] for p in payloads]
    params = [SearchParams(queries=m, k=10) for m in matrices]
    app = create_app(service)  # one app: Falcon compiles its router on the first request
    wsgi = [_wsgi_search(app, p) for p in payloads]
    client = ProximaDBClient.__new__(ProximaDBClient)  # no negotiation: nothing answers it here
    client._transport = _Transport(service.search_payload("search", payloads[0]))
    client.batch_size, client.retries, client.backoff, client.schema_version = 1000, 3, 0.1, 2
    return {
        "col.search": lambda i: col.search(queries[i], k=10),
        "col.search_batch": lambda i: col.search_batch(matrices[i], 10),
        "service.search": lambda i: service.search("search", params[i]),
        "service.search_payload": lambda i: service.search_payload("search", payloads[i]),
        "servicer.Search + protobuf": lambda i: servicer.Search(pb.PayloadRequest.FromString(requests[i]),
                                                                context).SerializeToString(),
        "REST app search (WSGI)": lambda i: wsgi[i](),
        "SDK client.search": lambda i: client.search("search", queries[i], k=10),
    }


def _loop(call: Callable[[int], Any], n: int) -> Iterator[int]:
    for i in range(n):
        call(i)
        yield 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=None, help="calls per layer (200 timed, 100 under callgrind)")
    parser.add_argument("--callgrind", action="store_true", help="instructions per call, under valgrind")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)  # the run under valgrind
    args = parser.parse_args()
    n = args.calls or (100 if args.callgrind or args.inside else 200)
    if args.callgrind:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "callgrind.out"
            toggles = [f"--toggle-collect={fn}*" for fn in DRIVERS.values()]
            subprocess.run(["valgrind", "--tool=callgrind", "--collect-atstart=no", *toggles,
                            f"--callgrind-out-file={out}", sys.executable, __file__, "--inside", "--calls", str(n)],
                           check=True, capture_output=True)
            report = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(out)], check=True,
                                    capture_output=True, text=True).stdout
        per_call = {}
        for layer, fn in DRIVERS.items():
            found = re.search(rf"^\s*([\d,]+) .*\.c:{fn}\b", report, re.M)
            assert found, f"no count for {layer}"
            per_call[layer] = int(found.group(1).replace(",", "")) / n
        for layer, ir in per_call.items():
            print(f"{layer:<30} {ir:>12,.0f} instructions per call")
        for layer in ("servicer.Search + protobuf", "REST app search (WSGI)"):
            print(f"{layer.split()[0] + ' over col.search':<30} {per_call[layer] - per_call['col.search']:>12,.0f}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        funcs = layers(n, Path(tmp))
        for call in funcs.values():
            call(0)  # warm
        if args.inside:
            operator.countOf(_loop(funcs["col.search"], n), 0)
            try:
                operator.indexOf(_loop(funcs["servicer.Search + protobuf"], n), 0)
            except ValueError:  # never found: every call made
                pass
            functools.reduce(lambda a, b: a, _loop(funcs["REST app search (WSGI)"], n), 0)
            operator.contains(_loop(funcs["SDK client.search"], n), 0)
            return
        for layer, call in funcs.items():
            best = min(timeit.repeat(lambda call=call: [call(i) for i in range(n)], repeat=15, number=1)) / n
            print(f"{layer:<30} {best * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
