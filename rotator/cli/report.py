"""`rotator report`: expiries, findings and recent rotations as HTML, CSV or JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from rotator.cli.app import EXIT_FAILED, CliApp


@click.command("report")
@click.option("--format", "fmt", type=click.Choice(["html", "csv", "json"]), default="html",
              show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of standard output.")
def report_command(fmt: str, output: Path | None) -> None:
    """The credential report from the last scans (run `rotator scan` first)."""
    from rotator.cli.progress import phases, status_line
    from rotator.report.render import render_csv, render_html, render_json
    from rotator.report.source import load_report

    cli = CliApp()
    policy = cli.loaded().policy
    store = cli.store()
    with status_line() as line, phases(line, "report") as now_doing:
        try:
            data = load_report(store, policy, datetime.now(UTC), on_phase=now_doing)
        finally:
            store.close()
        now_doing(f"rendering {fmt} ({data.total:,} credentials)")
        text = {"html": render_html, "csv": render_csv, "json": render_json}[fmt](data)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        cli.abort(f"cannot write {output} ({exc.strerror or exc})", EXIT_FAILED)
    click.echo(f"wrote {output} ({fmt}, {data.total} credentials, "
               f"{len(data.findings)} findings)", err=True)
