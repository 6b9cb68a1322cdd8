"""`rotator db upgrade`: apply the database migrations."""

from __future__ import annotations

import click

from rotator.cli.app import EXIT_FAILED, CliApp


@click.group("db")
def db_group() -> None:
    """Database maintenance."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def upgrade_command(revision: str) -> None:
    """Apply migrations up to REVISION (idempotent)."""
    from rotator.adapters.db.migrate import upgrade_engine
    from rotator.bootstrap import database_engine

    cli = CliApp()
    settings = cli.loaded().settings
    try:
        engine = database_engine(settings)
        try:
            upgrade_engine(engine, revision)
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - reported to the admin, not traced
        cli.abort(f"migration failed: {type(exc).__name__}: {exc}", EXIT_FAILED)
    click.echo(f"database is at revision {revision}")
