"""``proximadb keys hash``: the key-file line for an API key read from standard input."""

from __future__ import annotations

import sys

import click

from proximadb.errors import ProximaDBError


@click.group("keys")
def keys() -> None:
    """API keys for `proximadb serve --api-key-file`."""


@keys.command("hash")
@click.option("--read-only", is_flag=True, help="Make a read-only (ro) line instead of read-write (rw)")
def hash_key(read_only: bool) -> None:
    """Read a key from stdin (one line) and print its key-file line: '<rw|ro> <sha256 hex>'.

    Example: printf '%s' "$KEY" | proximadb keys hash >> /etc/proximadb/keys
    """
    from proximadb.server.auth import READ_ONLY, READ_WRITE, key_file_line

    key = sys.stdin.readline().rstrip("\r\n")
    try:
        click.echo(key_file_line(key, READ_ONLY if read_only else READ_WRITE))
    except ProximaDBError as exc:
        raise click.ClickException(str(exc)) from None
