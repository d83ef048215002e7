"""``proximadb compact``: offline compaction of a data directory."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from proximadb.cli.common import COLLECTION_OPT, DATA_DIR_ARG, resolve_data_dir
from proximadb.errors import DataDirLockedError, ProximaDBError


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


@click.command("compact")
@DATA_DIR_ARG
@COLLECTION_OPT
@click.option("--no-wait-index", is_flag=True, help="Do not wait for HNSW/IVF indexes of the merged segments.")
def compact(data_dir: Path | None, collection: str | None, no_wait_index: bool) -> None:
    """Merge each collection's segments into one, dropping deleted and superseded rows.

    Works offline: it opens DATA_DIR itself and refuses while a daemon holds it
    (compact a running daemon's collection with POST /collections/NAME/compact
    instead). The merge rebuilds the collection's HNSW/IVF index for the new
    segment and swaps the manifest atomically, so an interruption at any point
    leaves the old or the new state. Progress and the bytes saved are logged.

    DATA_DIR defaults to the data directory `proximadb serve` uses.
    Exit status: 0 done, 1 error (data directory in use, unknown collection).
    """
    from proximadb.server.logs import configure_logging
    from proximadb.storage.engine import Engine

    configure_logging("info")
    path = resolve_data_dir(data_dir)
    if not (path / "catalog.pxdb").exists():
        raise click.ClickException(f"{path} is not a ProximaDB data directory (no catalog.pxdb)")
    try:
        engine = Engine.open(path, auto_compact=False)
    except DataDirLockedError as exc:
        raise click.ClickException(
            f"{exc}. To compact while the daemon runs: POST /collections/NAME/compact"
        ) from None
    except ProximaDBError as exc:
        raise click.ClickException(str(exc)) from None
    with engine:
        try:
            names = [collection] if collection else [c["name"] for c in engine.list_collections()]
            targets = [engine.collection(n) for n in names]
        except ProximaDBError as exc:
            raise click.ClickException(str(exc)) from None
        total_before = total_after = 0
        for col in targets:
            report = col.compact()
            if not no_wait_index:
                col.wait_for_indexes()
            total_before += report["bytes_before"]
            total_after += report["bytes_after"]
            if report["merged"]:
                click.echo(
                    f"{col.config.name}: {report['segments_before']} segment(s) -> {report['segments_after']}, "
                    f"{report['rows_before']:,} rows -> {report['rows_after']:,}, "
                    f"{_mib(report['bytes_before'])} -> {_mib(report['bytes_after'])} in {report['seconds']:.1f}s"
                )
            else:
                click.echo(f"{col.config.name}: nothing to compact ({report['segments_before']} segment(s))")
        logging.getLogger("proximadb.compaction").info(
            "compacted %d collection(s): %s -> %s", len(targets), _mib(total_before), _mib(total_after)
        )
