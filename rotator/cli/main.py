"""The ``rotator`` command. Subcommands are imported only when invoked, so ``--help`` stays fast."""

from __future__ import annotations

import importlib
import sys

import click

# name -> "module:attribute" of a click command; imported on first use.
_COMMANDS: dict[str, tuple[str, str]] = {
    "emulator": ("rotator.emulator.cli:emulator_command", "Run the emulated Entra tenant."),
    "db": ("rotator.cli.db:db_group", "Database maintenance (upgrade)."),
    "scan": ("rotator.cli.scan:scan_command", "Scan all app registrations and their credentials."),
    "rotate": ("rotator.cli.rotate:rotate_command", "Rotate a managed app's credential now."),
    "status": ("rotator.cli.status:status_command",
               "What needs you: failed rotations, due credentials, those in flight."),
    "history": ("rotator.cli.status:history_command",
                "The audit trail (by app, rotation, or since a time)."),
    "alerts": ("rotator.cli.alerts:alerts_group", "Expiry alerts: test channels, run a pass."),
    "report": ("rotator.cli.report:report_command", "Expiry and posture report (HTML/CSV/JSON)."),
    "serve": ("rotator.cli.serve:serve_command",
              "Run the service: scheduled scans and rotations, health and metrics."),
    "demo": ("rotator.cli.demo:demo_command",
             "Rotate due credentials of an emulated tenant, end to end, in a minute."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target[0].split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help comes from the table, not from importing every command module.
        rows = [(name, _COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rotator")
def cli() -> None:
    """rotator keeps Entra ID app registration credentials from ever expiring.

    Settings come from ROTATOR_* and AZURE_* environment variables and the
    policy file named by ROTATOR_CONFIG.
    """


def _database_error(exc: BaseException) -> bool:
    # By module, so that `rotator --help` does not pay for importing SQLAlchemy.
    return any(k.__module__.startswith("sqlalchemy") for k in type(exc).__mro__)


def main() -> None:
    try:
        cli()
    except Exception as exc:
        if not _database_error(exc):
            raise
        # Every step commits before the next begins and owners that died are taken over
        # at once, so the honest advice is simply to run the command again.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        click.echo(
            f"error: the database stopped answering ({type(exc).__name__}: "
            f"{reason[0][:200] if reason else 'no detail'}). Every step finished so far is "
            "recorded; run the command again once the database is back and it carries on "
            "from there.",
            err=True,
        )
        sys.exit(1)
