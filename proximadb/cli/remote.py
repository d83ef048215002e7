"""``proximadb collections ...`` and ``proximadb stats``: quick looks at a running daemon from the shell.

They use the Python SDK (gRPC when the daemon answers on it, REST otherwise).
The daemon is --url, else PROXIMADB_URL, else http://127.0.0.1:5678; an API
key comes from PROXIMADB_API_KEY.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from proximadb.errors import ProximaDBError

URL_OPT = click.option("--url", default=lambda: os.environ.get("PROXIMADB_URL", "http://127.0.0.1:5678"),
                       show_default="PROXIMADB_URL or http://127.0.0.1:5678", help="The daemon to ask.")
JSON_OPT = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@contextmanager
def _client(url: str) -> Iterator[Any]:
    import proximadb

    try:
        with proximadb.connect(url, timeout=10) as client:
            yield client
    except ProximaDBError as exc:
        raise click.ClickException(str(exc)) from None


def _emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str) if as_json else text)


@click.group("collections")
def collections() -> None:
    """List, show, create and delete collections of a running daemon."""


@collections.command("list")
@URL_OPT
@JSON_OPT
def list_(url: str, as_json: bool) -> None:
    """One line per collection: name, dimension, metric, index, vectors."""
    with _client(url) as client:
        infos = client.list_collections()
    lines = [f"{'NAME':<32} {'DIM':>6} {'METRIC':<12} {'INDEX':<6} {'VECTORS':>12}"]
    lines += [f"{c['name']:<32} {c['dimension']:>6} {c['distance_metric']:<12} {c['indexing_algorithm']:<6} "
              f"{c.get('vector_count', 0):>12,}" for c in infos]
    _emit(infos, as_json, "\n".join(lines))


@collections.command("show")
@click.argument("name")
@URL_OPT
@JSON_OPT
def show(name: str, url: str, as_json: bool) -> None:
    """Settings and storage statistics of one collection."""
    with _client(url) as client:
        info = {**client.get_collection(name), "stats": client.stats(name)}
    text = "\n".join(f"{k}: {v}" for k, v in info.items() if k != "stats")
    text += "\n" + "\n".join(f"  {k}: {v}" for k, v in info["stats"].items())
    _emit(info, as_json, text)


@collections.command("create")
@click.argument("name")
@click.option("--dimension", "-d", type=int, required=True, help="Vector dimension (1..65536).")
@click.option("--metric", type=click.Choice(["cosine", "euclidean", "dot_product"]), default="cosine",
              show_default=True)
@click.option("--index", "index", type=click.Choice(["flat", "hnsw", "ivf"]), default="flat", show_default=True)
@click.option("--param", "params", multiple=True, metavar="KEY=INT", help="Index parameter, e.g. M=16 (repeatable).")
@click.option("--default-ttl", "default_ttl", type=int, default=None, metavar="SECONDS",
              help="Rows written without expires_at expire this many seconds after the write (default: never).")
@URL_OPT
@JSON_OPT
def create(name: str, dimension: int, metric: str, index: str, params: tuple[str, ...], default_ttl: int | None,
           url: str, as_json: bool) -> None:
    """Create a collection."""
    index_params = {}
    for item in params:
        key, _, value = item.partition("=")
        if not value.lstrip("-").isdigit():
            raise click.BadParameter(f"{item!r} is not KEY=INTEGER", param_hint="--param")
        index_params[key] = int(value)
    with _client(url) as client:
        info = client.create_collection(name, dimension, distance_metric=metric, indexing_algorithm=index,
                                        index_params=index_params, default_ttl_seconds=default_ttl)
    _emit(info, as_json, f"created {info['name']} ({info['uuid']})")


@collections.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@URL_OPT
def delete(name: str, yes: bool, url: str) -> None:
    """Delete a collection and all its data."""
    if not yes:
        click.confirm(f"Delete collection {name!r} and all its vectors?", abort=True)
    with _client(url) as client:
        client.delete_collection(name)
    click.echo(f"deleted {name}")


@click.command("stats")
@click.argument("collection", required=False)
@URL_OPT
@JSON_OPT
def stats(collection: str | None, url: str, as_json: bool) -> None:
    """The daemon's health and each collection's storage statistics (or one collection's)."""
    with _client(url) as client:
        health = client.health()
        names = [collection] if collection else [c["name"] for c in client.list_collections()]
        per = {n: client.stats(n) for n in names}
        protocol = client.protocol
    lines = [f"proximadb {health['version']} via {protocol}, up {health.get('uptime_seconds', 0):.0f}s, "
             f"schema versions {health.get('schema_versions')}"]
    for name, s in per.items():
        lines.append(f"{name}: {s['vectors']:,} vectors, {s['segments']} segment(s), memtable {s['memtable_rows']:,} "
                     f"rows, WAL seq {s['wal_last_seq']} (checkpoint {s['checkpoint_seq']}), "
                     f"index {s.get('indexing_algorithm')} {s.get('indexed_segments', 0)}/{s['segments']}, "
                     f"status {s.get('status')} ({s.get('unindexed_rows')} row(s) unindexed)")
    _emit({"health": health, "collections": per}, as_json, "\n".join(lines))
