"""``proximadb compact``: offline compaction of a data directory."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from proximadb.cli.common import COLLECTION_OPT, DATA_DIR_ARG, resolve_data_dir
from proximadb.errors import DataDirLockedError, ProximaDBError


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@click.command("compact")
@DATA_DIR_ARG
@COLLECTION_OPT
@click.option("--no-wait-index", is_flag=True, help="Do not wait for HNSW/IVF indexes of the merged segments.")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=None,
              help="Rows per chunk of the merged segment's write; bounds memory "
                   "[default 8192: about 50 MiB at 128 dimensions].")
def compact(data_dir: Path | None, collection: str | None, no_wait_index: bool, chunk_rows: int | None) -> None:
    """Flush each collection's WAL, then merge its segments into one, dropping deleted and superseded rows.

    Works offline: it opens DATA_DIR itself and refuses while a daemon holds it
    (compact a running daemon's collection with POST /collections/NAME/compact
    instead). First the operations a stopped daemon left in the WAL (writes
    and deletes after the checkpoint) are flushed into a segment, so that
    their deletions can be dropped, and the WAL files they fill are removed;
    then the merge indexes the new segment (an HNSW graph grows from the
    largest input's when that one kept every row; otherwise the HNSW/IVF
    index is built anew) and swaps the manifest atomically, so an interruption at any point
    leaves the old or the new state. It prints, per collection and for the
    data directory, the bytes before and after and the bytes freed.

    The merge streams: the input segments are read in place and the merged
    segment is written --chunk-rows rows at a time, so memory is bounded by
    that (plus the payload index being built and 12 bytes a row), not by
    the size of the segments.

    DATA_DIR defaults to the data directory `proximadb serve` uses.
    Exit status: 0 done, 1 error (data directory in use or refused at open,
    unknown collection, disk full).
    """
    from proximadb.server.logs import configure_logging
    from proximadb.storage.engine import Engine

    configure_logging("info")
    path = resolve_data_dir(data_dir)
    if not (path / "catalog.pxdb").exists() and not (path / "collections").exists():
        raise click.ClickException(f"{path} is not a ProximaDB data directory (no catalog.pxdb)")
    try:
        engine = Engine.open(path, auto_compact=False,
                             **({"rewrite_chunk_rows": chunk_rows} if chunk_rows is not None else {}))
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
        total_before = _tree_bytes(path / "collections")
        for col in targets:
            before = _tree_bytes(col.directory)
            try:
                stats = col.stats()
                ops, rows = stats["wal_last_seq"] - stats["checkpoint_seq"], stats["memtable_rows"]
                col.flush()  # deletes still in the WAL become bitmaps the merge can drop
                report = col.compact()
                if not no_wait_index:
                    col.wait_for_indexes()
            except ProximaDBError as exc:
                raise click.ClickException(f"{col.config.name}: {exc}") from None
            after = _tree_bytes(col.directory)
            flushed = f"flushed {ops:,} WAL operation(s) ({rows:,} live rows) into a segment, " if ops else ""
            if report["merged"]:
                merged = (f"{report['segments_before']} segment(s) -> {report['segments_after']}, "
                          f"{report['rows_before']:,} rows -> {report['rows_after']:,}")
            else:
                merged = f"nothing to compact ({report['segments_before']} segment(s))"
            click.echo(f"{col.config.name}: {flushed}{merged}; {_mib(before)} -> {_mib(after)} "
                       f"({_mib(before - after)} freed) in {report['seconds']:.1f}s")
        total_after = _tree_bytes(path / "collections")
        click.echo(f"data directory: {total_before:,} bytes -> {total_after:,} bytes, "
                   f"{total_before - total_after:,} bytes freed")
        logging.getLogger("proximadb.compaction").info(
            "compacted %d collection(s): %s -> %s, %s freed", len(targets), _mib(total_before), _mib(total_after),
            _mib(total_before - total_after),
        )
