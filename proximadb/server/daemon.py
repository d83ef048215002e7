"""``proximadb serve``: REST (Falcon under gunicorn) and gRPC in one process over one data directory.

gunicorn forks. Its master process only supervises; everything that owns
state (the engine with its WAL and lock, the service, the gRPC server) is
built in the single worker, in :meth:`DaemonApplication.load`, which gunicorn
calls after the fork (``preload_app`` stays off), and torn down in the
``worker_exit`` hook. The worker is gunicorn's threaded ``gthread`` worker,
so REST requests run on a thread pool while gRPC has its own; the daemon's
variant of it and of the master (:mod:`proximadb.server.http_worker`) reads
each request head before a pool thread is spent on it and handles the stop
signals without races. gunicorn's control socket (``~/.gunicorn/gunicorn.ctl``,
one per user, shared by every gunicorn on the machine) is off.

Shutdown: SIGTERM to the master -> the worker stops accepting, finishes
in-flight requests (graceful timeout), then ``worker_exit`` stops gRPC with a
grace period and closes the engine (final WAL fsync) -> exit 0. SIGINT does
the same without waiting for in-flight REST requests.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any

from gunicorn.app.base import BaseApplication

from proximadb.errors import ProximaDBError
from proximadb.server import notify
from proximadb.server.auth import KeyStore
from proximadb.server.config import ServerConfig
from proximadb.storage.engine import Engine
from proximadb.storage.lockfile import DataDirLock

log = logging.getLogger("proximadb.daemon")
WORKER_BOOT_ERROR = 3


def check_port_free(host: str, port: int, what: str) -> None:
    """Fail early, with a clear message, when a port is taken."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ProximaDBError(
                f"cannot listen for {what} on {host}:{port}: {exc.strerror}; stop whatever uses the port "
                f"or choose another with --{what.lower()}-port"
            ) from None


def check_data_dir_free(config: ServerConfig) -> None:
    lock = DataDirLock(config.data_dir)
    lock.acquire()  # creates it; one-line errors: DataDirLockedError naming the owner, unwritable, ...
    lock.release()


def stall_timeout(listener: Any, seconds: float) -> None:
    """SO_RCVTIMEO on a listening socket; Linux copies it to every accepted connection.

    Pool threads read on blocking sockets; with this, a read of a client that stops
    mid-body (or never reads its answer's end) fails after ``seconds`` instead of
    holding the thread for good. Request heads are read before a thread is involved,
    under a deadline of their own (server/http_worker.py); bodies also get the
    request's budget as a Python socket timeout (api/rest/admission.py).
    """
    whole = int(seconds)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                        struct.pack("ll", whole, int((seconds - whole) * 1_000_000)))


class StalledClientFilter(logging.Filter):
    """gunicorn logs a stalled client (EAGAIN from SO_RCVTIMEO) as an error with a traceback; make it one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BlockingIOError | TimeoutError) and "processing request" in str(record.msg):
            record.msg = "closed a connection whose client stalled mid-request (request_timeout)"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


@dataclass(slots=True)
class Runtime:
    """What the worker owns: engine, service, gRPC server, the WSGI app."""

    engine: Any  # the Engine, or in cluster mode the ClusterEngine over it (proximadb/cluster/backend.py)
    service: Any
    grpc_server: Any
    grpc_port: int
    app: Any

    @classmethod
    def start(cls, config: ServerConfig, keys: KeyStore | None = None) -> Runtime:
        from proximadb.api.grpc.server import build_server
        from proximadb.api.rest.app import create_app
        from proximadb.service.unified import UnifiedAvroService

        if keys is None:
            keys = KeyStore.from_config(config)
        tls = None
        if config.tls_cert_file is not None and config.tls_key_file is not None:
            tls = (config.tls_key_file.read_bytes(), config.tls_cert_file.read_bytes())
        started = time.monotonic()
        engine: Any = Engine.open(config.data_dir, **config.storage_options(),
                                  **({"log_of_record": "external"} if config.cluster else {}))
        grpc_server = None
        try:
            if config.cluster:
                engine = start_cluster_node(engine, config)
            service = UnifiedAvroService(
                engine,
                limits=config.limits,
                advertised={"rest_port": config.rest_port, "grpc_port": config.grpc_port},
                max_concurrent_requests=config.max_concurrent_requests,
                request_timeout=config.request_timeout or None,
            )
            if config.cluster:
                from proximadb.cluster import metrics as cluster_metrics

                cluster_metrics.register(service.metrics, engine.node)
            grpc_server, grpc_port = build_server(
                service,
                config.host,
                config.grpc_port,
                max_message_bytes=config.max_request_bytes,
                max_workers=config.grpc_threads,
                keys=keys,
                tls=tls,
            )
            service.advertised["grpc_port"] = grpc_port
            grpc_server.start()
            app = create_app(service, keys)
        except BaseException:  # SystemExit too: a stop signal during start-up
            if grpc_server is not None:
                grpc_server.stop(None)
            engine.close()
            raise
        log.info(
            "data directory %s recovered and open (%d collection(s)) in %.2fs",
            config.data_dir, len(engine.list_collections()), time.monotonic() - started,
        )
        return cls(engine, service, grpc_server, grpc_port, app)

    def stop(self) -> None:
        from proximadb.api.grpc.server import stop_serving

        log.info("stopping: gRPC health NOT_SERVING, in-flight RPCs (5 s grace), then the engine")
        stop_serving(self.grpc_server, grace=5)
        self.engine.close()
        log.info("stopped cleanly; WAL flushed and closed")


def start_cluster_node(engine: Engine, config: ServerConfig) -> Any:
    """Join the cluster named by ``config.cluster``; the backend the service then calls (closes ``engine``
    when the join fails)."""
    from proximadb.cluster.backend import ClusterEngine
    from proximadb.cluster.membership import NodeInfo
    from proximadb.cluster.node import ClusterNode

    host = config.advertised_host
    host = f"[{host}]" if ":" in host else host
    info = NodeInfo(config.node_id, f"{'https' if config.tls else 'http'}://{host}:{config.rest_port}",
                    f"{host}:{config.grpc_port}", time.time())
    # JetStream copies of each stream and bucket: one per NATS server named, at most 3 (a quorum of 2)
    node = ClusterNode(engine, config.cluster_urls, info, ttl=config.cluster_ttl,
                       replicas=min(3, len(config.cluster_urls)), log_retain=config.cluster_log_retain)
    try:
        node.start()
    except BaseException:
        node.stop()
        engine.close()
        raise
    log.info("cluster: joined as %s (REST %s, gRPC %s) over %s", info.id, info.rest, info.grpc, config.cluster)
    return ClusterEngine(engine, node, config.bounded_staleness_ms)


class DaemonApplication(BaseApplication):  # type: ignore[misc]
    def __init__(self, config: ServerConfig, keys: KeyStore | None = None) -> None:
        self.config = config
        self.keys = keys
        self.runtime: Runtime | None = None
        super().__init__()

    def load_config(self) -> None:
        c = self.config
        settings: dict[str, Any] = {
            "bind": [f"[{c.host}]:{c.rest_port}" if ":" in c.host else f"{c.host}:{c.rest_port}"],
            "workers": 1,  # one process owns the data directory
            "worker_class": "proximadb.server.http_worker.HeadFirstWorker",  # gthread, heads read first
            "http_parser": "python",  # the parser http_worker.head_ready() knows, whatever else is installed
            "control_socket_disable": True,  # gunicorn >= 25.1 would share ~/.gunicorn/gunicorn.ctl per user
            "threads": c.rest_threads,
            "timeout": 120,
            "graceful_timeout": 30,
            "keepalive": 30,
            "loglevel": c.log_level,
            "errorlog": "-",
            "accesslog": None,
            "proc_name": "proximadb",
            "preload_app": False,
            "post_worker_init": self._post_worker_init,
            "worker_exit": self._worker_exit,
        }
        if c.tls_cert_file is not None and c.tls_key_file is not None:
            settings["certfile"] = str(c.tls_cert_file)
            settings["keyfile"] = str(c.tls_key_file)
        for key, value in settings.items():
            self.cfg.set(key, value)

    def run(self) -> None:
        """gunicorn's ``BaseApplication.run`` with the daemon's arbiter (signals blocked around the fork)."""
        from proximadb.server.http_worker import Arbiter

        try:
            Arbiter(self).run()
        except RuntimeError as exc:
            print(f"\nError: {exc}\n", file=sys.stderr)
            sys.stderr.flush()
            sys.exit(1)

    def load(self) -> Any:
        """Runs in the worker, after the fork: recover the WAL, start gRPC, return the REST app."""
        notify.stopping_on_signals()  # gunicorn has installed the worker's own handlers by now
        logging.getLogger("gunicorn.error").addFilter(StalledClientFilter())
        notify.status(f"recovering data directory {self.config.data_dir}")
        try:
            self.runtime = Runtime.start(self.config, self.keys)
        except ProximaDBError as exc:
            log.error("cannot start: %s", exc)
            sys.exit(WORKER_BOOT_ERROR)
        except OSError as exc:
            log.error("cannot start: %s", exc)
            sys.exit(WORKER_BOOT_ERROR)
        return self.runtime.app

    def _post_worker_init(self, worker: Any) -> None:
        runtime = self.runtime
        if runtime is None:
            return
        rest_port = worker.sockets[0].getsockname()[1] if worker.sockets else self.config.rest_port
        if self.config.request_timeout:
            for listener in worker.sockets:
                stall_timeout(listener, self.config.request_timeout)
        runtime.service.advertised["rest_port"] = rest_port
        scheme = "https" if self.config.tls else "http"
        log.info(
            "ready: REST %s://%s:%d  gRPC%s %s:%d  data %s  (pid %d)",
            scheme, self.config.host, rest_port, " (TLS)" if self.config.tls else "",
            self.config.host, runtime.grpc_port, self.config.data_dir, worker.pid,
        )
        if worker.alive:  # not after a SIGTERM that came during recovery
            notify.ready(
                f"serving REST {scheme}://{self.config.host}:{rest_port}, gRPC {self.config.host}:{runtime.grpc_port}, "
                f"data {self.config.data_dir}",
                main_pid=os.getppid(),  # the gunicorn master, which systemd started and signals
            )

    def _worker_exit(self, server: Any, worker: Any) -> None:
        if self.runtime is not None:
            self.runtime.stop()
            self.runtime = None


def serve(config: ServerConfig) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT; returns the exit code."""
    check_data_dir_free(config)
    check_port_free(config.host, config.rest_port, "REST")
    check_port_free(config.host, config.grpc_port, "gRPC")
    keys = KeyStore.from_config(config)  # a bad key file stops here, in the master, with its message
    counts = keys.counts()
    security = (
        f"API keys ON ({counts['rw']} read-write, {counts['ro']} read-only)" if keys.enabled else "API keys OFF",
        "TLS ON" if config.tls else "TLS OFF",
    )
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        if not keys.enabled:
            log.warning(
                "!!! listening on %s, beyond this machine, WITHOUT API KEYS: anyone who can reach it can read, "
                "write and delete every collection (%s, %s). Configure --api-key/--api-key-file, and TLS "
                "(--tls-cert/--tls-key), or bind to 127.0.0.1 !!!", config.host, *security,
            )
        elif not config.tls:
            log.warning("listening on %s, beyond this machine, with %s but TLS OFF: keys and data cross the "
                        "network in clear text; configure --tls-cert/--tls-key", config.host, security[0])
        else:
            log.info("listening on %s: %s, %s", config.host, *security)
    else:
        log.info("security: %s, %s", *security)
    log.info("starting proximadb on data directory %s", config.data_dir)
    limits = config.limits
    log.info(
        "limits: %d requests at once, %s per request, body %d bytes, batch %d, k %d, dimension %d, "
        "id %d bytes, metadata %d bytes", config.max_concurrent_requests,
        f"{config.request_timeout:g}s" if config.request_timeout else "no timeout", limits.max_request_bytes,
        limits.max_batch, limits.max_k, limits.max_dimension, limits.max_id_bytes, limits.max_metadata_bytes,
    )
    notify.claim_socket()  # gunicorn's master would send READY=1 before recovery; the worker sends it after
    DaemonApplication(config, keys).run()
    return 0
