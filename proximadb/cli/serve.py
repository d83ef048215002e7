"""``proximadb serve``: run the daemon in the foreground."""

from __future__ import annotations

from pathlib import Path

import click

from proximadb.errors import ProximaDBError


@click.command("serve")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Data directory [env PROXIMADB_DATA_DIR; default ~/.local/share/proximadb]")
@click.option("--host", help="Address to listen on [env PROXIMADB_HOST; default 127.0.0.1]")
@click.option("--rest-port", type=int, help="REST (HTTP/JSON) port [env PROXIMADB_REST_PORT; default 5678]")
@click.option("--grpc-port", type=int, help="gRPC port [env PROXIMADB_GRPC_PORT; default 5679]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML config file [env PROXIMADB_CONFIG]")
@click.option("--wal-strategy", type=click.Choice(["avro", "binary"]), help="WAL frame content [default avro]")
@click.option("--wal-compression", type=click.Choice(["none", "lz4"]), help="Per-frame WAL compression")
@click.option("--fsync", help="always | interval:MS | never [default always]")
@click.option("--memtable-type", type=click.Choice(["hash", "btree"]), help="Memtable id map [default hash]")
@click.option("--flush-bytes", type=int, help="Memtable size that triggers a flush [default 268435456]")
@click.option("--rewrite-chunk-rows", type=int,
              help="Rows per chunk when a compaction writes its merged segment; bounds its memory [default 8192]")
@click.option("--memtable-index-rows", type=int,
              help="A memtable of more rows keeps an HNSW graph of them, grown in the background, so fresh "
                   "rows are searched through an index; 0 = never [default 20000]")
@click.option("--max-request-bytes", type=int, help="Largest request body / gRPC message [default 67108864]")
@click.option("--max-batch", type=int, help="Most records in one write [default 100000]")
@click.option("--max-k", type=int, help="Most results per query [default 10000]")
@click.option("--max-dimension", type=int, help="Largest dimension of a new collection [default 65536]")
@click.option("--max-id-bytes", type=int, help="Longest record id, in UTF-8 bytes [default 1024]")
@click.option("--max-metadata-bytes", type=int, help="Largest metadata of one record [default 65536]")
@click.option("--max-concurrent-requests", type=int,
              help="Requests worked on at once, both protocols; more get 429 / RESOURCE_EXHAUSTED [default 64]")
@click.option("--request-timeout", type=float,
              help="Seconds a request may take (its head: from the connection's start); a shorter client "
                   "deadline wins; 0 = none (a head still gets 60) [default 30]")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="[default info]")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="One line per event [default text]")
@click.option("--threads", type=int, help="REST worker threads [default 0: max-concurrent-requests + 8]")
@click.option("--api-key", "api_keys", multiple=True, metavar="KEY",
              help="Require API keys; this one may read and write (repeatable) [env PROXIMADB_API_KEYS, "
                   "comma-separated]. Visible in ps: prefer --api-key-file")
@click.option("--read-only-api-key", "read_only_api_keys", multiple=True, metavar="KEY",
              help="An API key that may only read (repeatable) [env PROXIMADB_READ_ONLY_API_KEYS]")
@click.option("--api-key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File of '<rw|ro> <sha256 hex>' lines, made with `proximadb keys hash` [env PROXIMADB_API_KEY_FILE]")
@click.option("--tls-cert", "tls_cert_file", type=click.Path(dir_okay=False, path_type=Path),
              help="PEM certificate chain: REST and gRPC speak TLS (needs --tls-key) [env PROXIMADB_TLS_CERT_FILE]")
@click.option("--tls-key", "tls_key_file", type=click.Path(dir_okay=False, path_type=Path),
              help="PEM private key of --tls-cert [env PROXIMADB_TLS_KEY_FILE]")
@click.option("--cluster", metavar="URLS",
              help="Join a cluster: comma-separated NATS JetStream servers (nats://h1:4222,...) "
                   "[env PROXIMADB_CLUSTER]")
@click.option("--node-id", help="Cluster mode: this node's id, unique in the cluster [env PROXIMADB_NODE_ID]")
@click.option("--advertise", metavar="HOST",
              help="Cluster mode: the host peers and clients reach this node at [default: --host]")
@click.option("--cluster-ttl", type=float,
              help="Cluster mode: seconds without a heartbeat before a node counts as gone [default 10]")
@click.option("--cluster-log-retain", type=int, metavar="ENTRIES",
              help="Cluster mode: entries each shard log keeps below what every replica has checkpointed, so a "
                   "replica that was away briefly catches up from the log rather than a peer's snapshot "
                   "[default 10000]")
@click.option("--bounded-staleness-ms", type=int,
              help="Cluster mode: how stale a read of consistency 'bounded' (the default) may be, in "
                   "milliseconds [default 5000] [env PROXIMADB_BOUNDED_STALENESS_MS]")
def serve(config_file: Path | None, **flags: object) -> None:
    """Run the ProximaDB daemon: REST on 127.0.0.1:5678 and gRPC on 127.0.0.1:5679.

    Settings come from the flags, then PROXIMADB_* environment variables, then
    the TOML file given with --config, then the defaults. The daemon recovers
    the WAL before it accepts requests and stops cleanly on SIGTERM (after
    in-flight requests) or SIGINT (at once), at any moment, start-up included.
    The REST port also serves a web dashboard at /dashboard (collections,
    records, search, live metrics; static files, works offline).

    With any API key configured (--api-key, --read-only-api-key, --api-key-file),
    every request but GET /health and the dashboard's static files needs
    'Authorization: Bearer KEY' (gRPC: 'authorization' metadata; the dashboard
    sends the key typed into it). With --tls-cert and --tls-key both protocols
    speak TLS. Listening beyond loopback without keys logs a loud warning.

    Limits: a request over --max-request-bytes, --max-batch, --max-k,
    --max-dimension, --max-id-bytes or --max-metadata-bytes is refused whole
    with a message naming the limit. Beyond --max-concurrent-requests in flight,
    requests are refused at once (HTTP 429 with Retry-After, gRPC
    RESOURCE_EXHAUSTED) rather than queued; the SDK retries them. A request that
    cannot finish within --request-timeout (or the client's shorter deadline)
    gets HTTP 504 / DEADLINE_EXCEEDED before it changes anything. A request
    head (request line and headers) must arrive whole within --request-timeout:
    slow senders cost no worker thread and get 408; bytes that cannot begin an
    HTTP request (a TLS handshake on the plain port) get 400 at once.

    Cluster mode (--cluster URLS --node-id ID [--advertise HOST]): collections
    are sharded and replicated over every daemon of the cluster, with NATS
    JetStream as the log of record; any node answers any request (see the
    README, "Cluster mode"). Without --cluster nothing changes.
    """
    from proximadb.server.config import load_config
    from proximadb.server.daemon import serve as run
    from proximadb.server.logs import configure_logging

    flags = {k: (None if v == () else v) for k, v in flags.items()}  # repeatable options not given
    try:
        config = load_config({"config": config_file, **flags})
    except ProximaDBError as exc:
        raise click.ClickException(str(exc)) from None
    configure_logging(config.log_level, config.log_format)
    try:
        code = run(config)
    except ProximaDBError as exc:
        raise click.ClickException(str(exc)) from None
    raise SystemExit(code)
