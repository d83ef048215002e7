"""Entry point of the ``proximadb`` program: a Click group.

Subcommands register themselves here; each lives in its own module under
``proximadb/cli/`` and the man pages under ``man/`` are generated from these
definitions.
"""

from __future__ import annotations

import click

from proximadb._version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="proximadb")
def cli() -> None:
    """ProximaDB: a vector database daemon and its operator tools.

    Run `proximadb COMMAND --help` for the options of one command.
    """


@cli.command("info")
def info() -> None:
    """Show the version and which compiled kernels this machine uses."""
    from proximadb import native

    click.echo(f"proximadb {__version__}")
    for name, value in native.report().items():
        click.echo(f"{name}: {value}")


def _register() -> None:
    from proximadb.cli.backup import backup, restore
    from proximadb.cli.cluster import cluster
    from proximadb.cli.compact import compact
    from proximadb.cli.dev_cluster import dev_cluster
    from proximadb.cli.keys import keys
    from proximadb.cli.migrate import migrate
    from proximadb.cli.remote import collections, stats
    from proximadb.cli.serve import serve
    from proximadb.cli.wal import wal

    cli.add_command(backup)
    cli.add_command(cluster)
    cli.add_command(collections)
    cli.add_command(compact)
    cli.add_command(dev_cluster)
    cli.add_command(keys)
    cli.add_command(migrate)
    cli.add_command(stats)
    cli.add_command(restore)
    cli.add_command(serve)
    cli.add_command(wal)


_register()


def main() -> None:
    cli(prog_name="proximadb")


if __name__ == "__main__":
    main()
