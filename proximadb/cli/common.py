"""Pieces shared by the offline tools: the DATA_DIR argument and the --collection option."""

from __future__ import annotations

from pathlib import Path

import click

DATA_DIR_ARG = click.argument("data_dir", required=False, type=click.Path(path_type=Path))
COLLECTION_OPT = click.option("--collection", "-c", metavar="NAME|UUID",
                              help="Only this collection (a name or a uuid from the catalog).")


def resolve_data_dir(given: Path | None) -> Path:
    """DATA_DIR, else what `proximadb serve` would use (PROXIMADB_DATA_DIR, the config file, the default)."""
    if given is not None:
        return given
    from proximadb.errors import ProximaDBError
    from proximadb.server.config import load_config

    try:
        return load_config({}).data_dir
    except ProximaDBError as exc:
        raise click.ClickException(f"cannot work out the default data directory: {exc}") from None
