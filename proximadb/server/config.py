"""Daemon settings: command-line flags > environment (``PROXIMADB_*``) > TOML file > defaults.

The TOML file (``--config FILE`` or ``PROXIMADB_CONFIG``) holds the same keys
as the flags, with underscores, at the top level::

    data_dir = "/var/lib/proximadb"
    host = "127.0.0.1"
    rest_port = 5678
    grpc_port = 5679
    wal_strategy = "avro"         # avro | binary
    wal_compression = "none"      # none | lz4
    fsync = "always"              # always | interval:MS | never
    memtable_type = "hash"        # hash | btree
    flush_bytes = 268435456
    rewrite_chunk_rows = 8192     # rows per chunk of a compaction's merged segment: bounds its memory
    memtable_index_rows = 20000   # a memtable of more rows keeps an HNSW graph of them; 0 = never
    log_level = "info"
    max_request_bytes = 67108864  # request limits (see proximadb.limits) ...
    max_batch = 100000            # records per write
    max_k = 10000                 # results per query
    max_dimension = 65536         # dimension of a new collection
    max_id_bytes = 1024
    max_metadata_bytes = 65536    # one record's metadata
    max_concurrent_requests = 64  # both protocols together; more get 429 / RESOURCE_EXHAUSTED at once
    request_timeout = 30.0        # seconds a request may take (a shorter client deadline wins); 0 = none
    threads = 0                   # REST worker threads; 0 = max_concurrent_requests + 8
    grpc_workers = 0              # gRPC worker threads; 0 = max_concurrent_requests + 8
    api_keys = ["..."]            # read-write API keys (kept in memory as SHA-256 digests only)
    read_only_api_keys = ["..."]  # read-only API keys
    api_key_file = "/etc/proximadb/keys"  # lines '<rw|ro> <sha256 hex>' (see proximadb.server.auth)
    tls_cert_file = "/etc/proximadb/server.crt"  # PEM chain; with tls_key_file, REST and gRPC speak TLS
    tls_key_file = "/etc/proximadb/server.key"
    cluster = "nats://h1:4222,nats://h2:4222"  # cluster mode: the NATS JetStream servers (see README)
    node_id = "n1"                # cluster mode: this node's id, unique in the cluster
    advertise = "10.0.0.5"        # cluster mode: the host peers and clients reach this node at [default: host]
    cluster_ttl = 10.0            # cluster mode: seconds without a heartbeat before a node counts as gone
    cluster_log_retain = 10000    # cluster mode: entries a shard log keeps below what every replica checkpointed
    bounded_staleness_ms = 5000   # cluster mode: how stale a read of consistency "bounded" (default) may be

List settings in the environment are comma-separated (``PROXIMADB_API_KEYS=k1,k2``).

An unknown key, or a value of the wrong type, stops the daemon with a message
that names the key and where it came from.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from proximadb.errors import ValidationError
from proximadb.limits import CEILINGS, Limits
from proximadb.service.admission import DEFAULT_MAX_CONCURRENT, DEFAULT_REQUEST_TIMEOUT
from proximadb.storage.collection import StorageOptions

LOG_LEVELS = ("debug", "info", "warning", "error")
SECRET_SETTINGS = ("api_keys", "read_only_api_keys")  # never echoed in messages
DEFAULT_LIMITS = Limits()
DEFAULT_STORAGE = StorageOptions()
LIMIT_SETTINGS = tuple(CEILINGS)  # max_request_bytes, max_batch, max_k, ... (proximadb.limits)
SPARE_THREADS = 8  # worker threads beyond max_concurrent_requests, to refuse the excess quickly


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "proximadb"


@dataclass(slots=True)
class ServerConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    rest_port: int = 5678
    grpc_port: int = 5679
    wal_strategy: str = DEFAULT_STORAGE.wal_strategy  # the storage settings: StorageOptions
    wal_compression: str = DEFAULT_STORAGE.wal_compression
    fsync: str = DEFAULT_STORAGE.fsync
    memtable_type: str = DEFAULT_STORAGE.memtable_type
    flush_bytes: int = DEFAULT_STORAGE.flush_bytes
    wal_segment_bytes: int = DEFAULT_STORAGE.wal_segment_bytes
    rewrite_chunk_rows: int = DEFAULT_STORAGE.rewrite_chunk_rows
    memtable_index_rows: int = DEFAULT_STORAGE.memtable_index_rows
    log_level: str = "info"
    log_format: str = "text"
    max_request_bytes: int = DEFAULT_LIMITS.max_request_bytes  # the request limits: proximadb.limits
    max_batch: int = DEFAULT_LIMITS.max_batch
    max_k: int = DEFAULT_LIMITS.max_k
    max_dimension: int = DEFAULT_LIMITS.max_dimension
    max_id_bytes: int = DEFAULT_LIMITS.max_id_bytes
    max_metadata_bytes: int = DEFAULT_LIMITS.max_metadata_bytes
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    threads: int = 0
    grpc_workers: int = 0
    api_keys: list[str] = field(default_factory=list, repr=False)
    read_only_api_keys: list[str] = field(default_factory=list, repr=False)
    api_key_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    cluster: str = ""
    node_id: str = ""
    advertise: str = ""
    cluster_ttl: float = 10.0
    cluster_log_retain: int = 10_000
    bounded_staleness_ms: int = 5000

    @property
    def cluster_urls(self) -> list[str]:
        return [u.strip() for u in self.cluster.split(",") if u.strip()]

    @property
    def advertised_host(self) -> str:
        return self.advertise or self.host

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def auth_configured(self) -> bool:
        return bool(self.api_keys or self.read_only_api_keys or self.api_key_file is not None)

    @property
    def limits(self) -> Limits:
        return Limits.from_settings({name: getattr(self, name) for name in LIMIT_SETTINGS})

    @property
    def rest_threads(self) -> int:
        """REST worker threads: enough that requests over the limit are answered 429, not queued."""
        return self.threads or self.max_concurrent_requests + SPARE_THREADS

    @property
    def grpc_threads(self) -> int:
        return self.grpc_workers or self.max_concurrent_requests + SPARE_THREADS

    def storage_options(self) -> dict[str, Any]:
        return {
            "limits": self.limits,
            "wal_strategy": self.wal_strategy,
            "wal_compression": self.wal_compression,
            "fsync": self.fsync,
            "memtable_type": self.memtable_type,
            "flush_bytes": self.flush_bytes,
            "wal_segment_bytes": self.wal_segment_bytes,
            "rewrite_chunk_rows": self.rewrite_chunk_rows,
            "memtable_index_rows": self.memtable_index_rows,
        }

    def validate(self) -> ServerConfig:
        choices = {
            "wal_strategy": ("avro", "binary"),
            "wal_compression": ("none", "lz4"),
            "memtable_type": ("hash", "btree"),
            "log_level": LOG_LEVELS,
            "log_format": ("text", "json"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValidationError(f"{key} must be one of {', '.join(allowed)}, not {getattr(self, key)!r}")
        if not re.fullmatch(r"always|never|interval:[1-9][0-9]*", self.fsync):
            raise ValidationError(f"fsync must be always, never or interval:MS, not {self.fsync!r}")
        for port_key in ("rest_port", "grpc_port"):
            port = getattr(self, port_key)
            if not 0 <= port <= 65535:
                raise ValidationError(f"{port_key} must be between 0 and 65535, not {port}")
        if self.rest_port == self.grpc_port and self.rest_port != 0:
            raise ValidationError(f"rest_port and grpc_port are both {self.rest_port}; they must differ")
        for positive in ("flush_bytes", "wal_segment_bytes", "rewrite_chunk_rows", "max_concurrent_requests"):
            if getattr(self, positive) < 1:
                raise ValidationError(f"{positive} must be positive")
        if self.memtable_index_rows < 0:
            raise ValidationError("memtable_index_rows must be 0 (off) or positive")
        for counted in ("threads", "grpc_workers"):
            if getattr(self, counted) < 0:
                raise ValidationError(f"{counted} must be 0 (automatic) or positive")
        if not 0 <= self.request_timeout <= 86400:
            raise ValidationError(f"request_timeout must be from 0 (none) to 86400 seconds, not {self.request_timeout}")
        if not 0 <= self.bounded_staleness_ms <= 3_600_000:
            raise ValidationError(f"bounded_staleness_ms must be from 0 to 3600000, not {self.bounded_staleness_ms}")
        _ = self.limits  # each limit within its range (proximadb.limits.CEILINGS), or a message naming it
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValidationError("tls_cert_file and tls_key_file go together: give both or neither")
        for path_key in ("api_key_file", "tls_cert_file", "tls_key_file"):
            path = getattr(self, path_key)
            if path is not None and not path.is_file():
                raise ValidationError(f"{path_key} {path} does not exist or is not a file")
        if self.cluster:
            self._validate_cluster()
        from proximadb.server.auth import sealed  # plaintext keys do not outlive loading: digests only

        self.api_keys = [sealed(k) for k in self.api_keys]
        self.read_only_api_keys = [sealed(k) for k in self.read_only_api_keys]
        return self

    def _validate_cluster(self) -> None:
        for url in self.cluster_urls:
            if not re.fullmatch(r"(nats|tls)://[^\s,/]+", url):
                raise ValidationError(f"cluster: {url!r} is not a NATS server URL (nats://HOST:PORT)")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.node_id):
            raise ValidationError("cluster mode needs --node-id: 1 to 64 letters, digits, '-' or '_'")
        if self.advertised_host in ("0.0.0.0", "::", ""):
            raise ValidationError(f"listening on {self.host}: give --advertise HOST, the address peers reach")
        if self.rest_port == 0 or self.grpc_port == 0:
            raise ValidationError("cluster mode needs fixed ports (peers are told them): rest_port and grpc_port "
                                  "must not be 0")
        if not 1 <= self.cluster_ttl <= 600:
            raise ValidationError(f"cluster_ttl must be from 1 to 600 seconds, not {self.cluster_ttl}")
        if self.cluster_log_retain < 0:
            raise ValidationError(f"cluster_log_retain must be 0 or more entries, not {self.cluster_log_retain}")


_TYPES = {f.name: f.type for f in fields(ServerConfig)}


def _coerce(key: str, value: Any, source: str) -> Any:
    kind = _TYPES[key]
    try:
        if kind in ("list[str]", list):
            if isinstance(value, str) and source.startswith("environment"):  # comma-separated there
                value = [part.strip() for part in value.split(",") if part.strip()]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError
            return list(value)
        if kind == "Path | None":
            return Path(str(value)).expanduser()
        if kind in ("int", int):
            if isinstance(value, bool) or isinstance(value, float):
                raise ValueError
            return int(value)
        if kind in ("float", float):
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if number != number:  # NaN
                raise ValueError
            return number
        if kind in ("Path", Path):
            return Path(str(value)).expanduser()
        if not isinstance(value, str):
            raise ValueError
        return value
    except (TypeError, ValueError):
        shown = "(not shown: it holds keys)" if key in SECRET_SETTINGS else repr(value)
        raise ValidationError(f"{source}: {key} has an invalid value {shown}") from None


def load_config(flags: dict[str, Any], environ: dict[str, str] | None = None) -> ServerConfig:
    """Merge the sources; ``flags`` holds only the options given on the command line (None = not given)."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    config_file = flags.get("config") or environ.get("PROXIMADB_CONFIG")
    if config_file:
        path = Path(config_file).expanduser()
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValidationError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValidationError(f"config file {path} is not valid TOML: {exc}") from None
        for key, value in raw.items():
            if key not in _TYPES:
                raise ValidationError(f"config file {path}: unknown setting {key!r}")
            values[key] = _coerce(key, value, f"config file {path}")
    for key in _TYPES:
        env_value = environ.get(f"PROXIMADB_{key.upper()}")
        if env_value is not None and env_value != "":
            values[key] = _coerce(key, env_value, f"environment PROXIMADB_{key.upper()}")
    for key, value in flags.items():
        if key != "config" and value is not None:
            values[key] = _coerce(key, value, f"--{key.replace('_', '-')}")
    return ServerConfig(**values).validate()
