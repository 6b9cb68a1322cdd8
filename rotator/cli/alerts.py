"""`rotator alerts test` and `rotator alerts run`: the alert channels, now."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from rotator.cli.app import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliApp, table

if TYPE_CHECKING:
    from rotator.alerts.runner import AlertPassReport


@click.group("alerts")
def alerts_group() -> None:
    """Expiry alerts: test the channels, or run one alert pass now."""


@alerts_group.command("test")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def test_command(as_json: bool) -> None:
    """Send a test message to every configured channel and say what happened."""
    from rotator.alerts.runner import send_test_messages

    cli = CliApp(as_json=as_json)
    policy = cli.loaded().policy
    if not policy.alerts.channels:
        cli.abort("no alert channels are configured: add [[alerts.channel]] tables to the "
                  "policy file", EXIT_USAGE)
    results = cli.run(send_test_messages(policy, datetime.now(UTC)))
    if as_json:
        cli.emit_json([{"name": r.name, "type": r.type, "ok": r.ok, "error": r.error}
                       for r in results])
    else:
        click.echo(table([[r.name, r.type, "sent" if r.ok else "FAILED", r.error or ""]
                          for r in results], ["CHANNEL", "TYPE", "RESULT", "ERROR"]))
    raise SystemExit(EXIT_OK if all(r.ok for r in results) else EXIT_FAILED)


@alerts_group.command("run")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def run_command(as_json: bool) -> None:
    """Run one alert pass: record new alerts and send what is due (digest or one by one).

    With the tenant configured (AZURE_TENANT_ID) it also reads the tenant's app
    management policies, and credentials that outlive what they allow are findings."""
    from rotator.alerts.runner import alert_pass
    from rotator.bootstrap import engine_deps
    from rotator.cli.progress import phases, status_line

    cli = CliApp(as_json=as_json)
    loaded = cli.loaded()
    policy = loaded.policy
    store = cli.store()

    async def go(now_doing: Callable[[str], None]) -> AlertPassReport:
        if not loaded.settings.tenant_id:
            return await alert_pass(store, policy, datetime.now(UTC), on_phase=now_doing)
        async with engine_deps(loaded, store) as deps:
            return await alert_pass(store, policy, datetime.now(UTC), on_phase=now_doing,
                                    directory=deps.directory)

    with status_line(as_json=as_json) as line, phases(line, "alerts") as now_doing:
        try:
            report = cli.run(go(now_doing))
        finally:
            store.close()
    if as_json:
        cli.emit_json(report.to_json())
    else:
        for note in report.notes:
            click.echo(f"note: {note}")
        click.echo(f"{report.alerts} alert(s) in scope, {report.findings} finding(s)")
        if report.channels:
            click.echo(table(
                [[c.name, c.type, str(c.new_alerts), str(c.alerts_sent), str(c.messages_sent),
                  "ok" if not c.failed else "FAILED", "; ".join(c.errors)[:100]]
                 for c in report.channels],
                ["CHANNEL", "TYPE", "NEW", "SENT", "MESSAGES", "RESULT", "ERROR"],
            ))
        else:
            click.echo("no alert channels are configured ([[alerts.channel]] in the policy file)")
    raise SystemExit(EXIT_OK if report.ok else EXIT_FAILED)
