"""``proximadb migrate``: rewrite a data directory to a newer payload schema version."""

from __future__ import annotations

from pathlib import Path

import click

from proximadb.cli.common import DATA_DIR_ARG, resolve_data_dir
from proximadb.codec.schemas import CURRENT_SCHEMA_VERSION
from proximadb.errors import DataDirLockedError, ProximaDBError


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.2f} MiB"


@click.command("migrate")
@DATA_DIR_ARG
@click.option("--to-schema-version", "target", type=int, default=CURRENT_SCHEMA_VERSION, show_default=True,
              help="The schema version to rewrite the data in (the current one).")
@click.option("--dry-run", is_flag=True, help="Only report what would change; write nothing.")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=None,
              help="Rows per chunk of the rewritten segment's write; bounds memory "
                   "[default 8192: about 50 MiB at 128 dimensions].")
def migrate(data_dir: Path | None, target: int, dry_run: bool, chunk_rows: int | None) -> None:
    """Rewrite every collection's data to schema version N (schema evolution, offline).

    For each collection still on an older version: flushes the WAL frames after
    the checkpoint into a new segment, rewrites each older segment into a new
    segment directory and swaps the manifest atomically, then records the new
    version in the catalog. Each rewrite streams (compaction's merge): the
    old segment is read in place and the new one written --chunk-rows rows at
    a time, so memory does not grow with the segment. A kill -9 at any point leaves a directory that
    opens with all its data; run the command again to finish. Running it on a
    directory already at version N changes nothing.

    The daemon reads older data without a migration (Avro schema resolution);
    migrating makes the directory independent of the old schemas.

    Works offline: refuses while a daemon holds DATA_DIR. --dry-run only reads
    (no lock) and reports the collections, segments, rows and bytes to rewrite.

    DATA_DIR defaults to the data directory `proximadb serve` uses.
    Exit status: 0 done or nothing to do, 1 error (directory in use, bad version).
    """
    from proximadb.server.logs import configure_logging
    from proximadb.tools import migrate as tool

    path = resolve_data_dir(data_dir)
    try:
        plan = tool.plan(path, target)
    except (tool.MigrationError, ProximaDBError) as exc:
        raise click.ClickException(str(exc)) from None
    pending = plan.pending
    if not pending:
        click.echo(f"{path}: already at schema version {target} ({len(plan.collections)} collection(s)); "
                   "nothing to do")
        return
    for cp in plan.collections:
        if cp not in pending:
            click.echo(f"{cp.name}: already at schema version {target}")
            continue
        click.echo(
            f"{cp.name}: catalog v{cp.catalog_version} -> v{target}; {len(cp.segments)} of {cp.segments_total} "
            f"segment(s) to rewrite ({cp.rows:,} rows, {_mib(cp.bytes)}); {cp.wal_frames} WAL frame(s) after the "
            f"checkpoint to flush ({cp.wal_old_frames} older than v{target}, {cp.wal_bytes:,} bytes)"
        )
    total_rows = sum(c.rows for c in pending)
    total_bytes = sum(c.bytes for c in pending)
    if dry_run:
        click.echo(f"dry run: {len(pending)} collection(s), {sum(len(c.segments) for c in pending)} segment(s), "
                   f"{total_rows:,} rows, {_mib(total_bytes)} would be rewritten; nothing was written")
        return
    configure_logging("info")
    try:
        result = tool.migrate(path, target, echo=click.echo,
                              engine_options={"rewrite_chunk_rows": chunk_rows} if chunk_rows is not None else None)
    except DataDirLockedError as exc:
        raise click.ClickException(f"{exc}. Stop the daemon, then run proximadb migrate again") from None
    except (tool.MigrationError, ProximaDBError) as exc:
        raise click.ClickException(str(exc)) from None
    for res in result.collections:
        click.echo(f"{res.name}: {res.segments_rewritten} segment(s), {res.rows:,} rows rewritten, "
                   f"{_mib(res.bytes_before)} -> {_mib(res.bytes_after)} in {res.seconds:.1f}s")
    click.echo(f"migrated {len(result.collections)} collection(s) to schema version {target} "
               f"in {result.seconds:.1f}s")
