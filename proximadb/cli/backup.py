"""``proximadb backup`` and ``proximadb restore``."""

from __future__ import annotations

from pathlib import Path

import click

from proximadb.errors import ProximaDBError


@click.command("backup")
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
def backup(data_dir: Path, dest: Path) -> None:
    """Copy DATA_DIR to DEST consistently, even while a daemon is writing to it.

    Each collection is copied as it was at one moment (everything the daemon
    had acknowledged by then); DEST gets a BACKUP.pxdb listing every file with
    its CRC32C, which `proximadb restore` verifies. DEST must not exist or be
    empty. Exit status: 0 done, 1 error.
    """
    from proximadb.tools.backup import backup as run

    try:
        summary = run(data_dir, dest, progress=click.echo)
    except ProximaDBError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"backup of {data_dir} in {dest}: {summary['files']} files, {summary['bytes']:,} bytes, "
               f"{len(summary['collections'])} collection(s), {summary['seconds']:.1f}s")


@click.command("restore")
@click.argument("backup_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--verify-only", is_flag=True, help="Check every checksum of BACKUP_DIR and write nothing.")
def restore(backup_dir: Path, data_dir: Path, verify_only: bool) -> None:
    """Verify BACKUP_DIR's checksums, then restore it into DATA_DIR (absent or empty).

    Nothing is written unless every file of the backup checks out. Start the
    daemon on DATA_DIR afterwards; it recovers the copied WAL as after a crash.
    Exit status: 0 done, 1 error (damaged backup, target not empty).
    """
    from proximadb.tools.backup import restore as run
    from proximadb.tools.backup import verify

    try:
        if verify_only:
            doc = verify(backup_dir)
            click.echo(f"{backup_dir}: {len(doc['files'])} files verified, collections: "
                       f"{', '.join(sorted(doc['collections'])) or 'none'}")
            return
        summary = run(backup_dir, data_dir)
    except ProximaDBError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"restored {summary['files']} files ({summary['bytes']:,} bytes) into {data_dir}: "
               f"{', '.join(summary['collections']) or 'no collections'}")
