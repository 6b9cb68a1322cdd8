"""`rotator rotate`: rotate one managed app now, or finish a rotation that was cut short."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from rotator.cli.app import EXIT_FAILED, EXIT_OK, CliApp, guid

if TYPE_CHECKING:
    from rotator.domain.rotation import Rotation


def rotation_json(r: Rotation) -> dict[str, Any]:
    return {
        "rotation_id": r.id,
        "app_id": r.app_id,
        "kind": str(r.kind),
        "state": str(r.state),
        "old_key_id": r.old_key_id,
        "new_key_id": r.new_key_id,
        "secret_name": r.secret_name,
        "secret_version": r.consumer_version,
        "retire_after": r.retire_after.isoformat() if r.retire_after else None,
        "error": r.last_error,
        "held": r.held,
        "held_since": r.held_since.isoformat() if r.held_since else None,
        "held_overdue": r.held_overdue,
    }


@click.command("rotate")
@click.option("--app", "app_id", callback=guid("an application (client) id"), required=True,
              help="Application (client) id of a managed app.")
@click.option("--credential", "key_id", callback=guid("a credential key id"), default=None,
              help="Key id of the credential to replace.")
@click.option("--dry-run", is_flag=True, help="Say what would happen; change nothing.")
@click.option("--retire-now", is_flag=True,
              help="Remove the old credential without a grace period, and without waiting "
                   "for evidence that it is unused (recorded as an admin decision).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def rotate_command(
    app_id: str, key_id: str | None, dry_run: bool, retire_now: bool, as_json: bool
) -> None:
    """Rotate a managed app's credential now (resumes one already in flight)."""
    from rotator.bootstrap import engine_deps
    from rotator.cli.progress import StatusLine, elapsed_text
    from rotator.domain.rotation import RotationReason
    from rotator.domain.states import RotationState
    from rotator.engine.driver import RotationBusy, drive
    from rotator.engine.start import RotationRefused, plan_rotation, start_rotation

    cli = CliApp(as_json=as_json)
    loaded = cli.loaded_with_tenant()
    store = cli.store()
    line = StatusLine.for_stderr(as_json=as_json)
    waiting_on = [""]  # the latest transient message
    waiting_since = [0.0]  # when the engine began waiting on that kind of thing

    def progress(message: str) -> None:
        line.hide()
        waiting_on[0] = ""  # a wait after this one counts from its own start
        line.print_line(f"  {message}")

    def status(message: str) -> None:
        # On a terminal, verify attempts and retry waits share one line that keeps
        # counting while the engine waits; elsewhere they are lines like the rest.
        if waiting_on[0].split(":")[0] != message.split(":")[0]:
            waiting_since[0] = line.clock()
        waiting_on[0] = message
        line.show(lambda: f"  {waiting_on[0]} · {elapsed_text(line.clock() - waiting_since[0])}")

    async def go() -> tuple[Any, Rotation | None]:
        async with engine_deps(loaded, store, on_progress=progress,
                               on_status=status if line.enabled else None) as deps:
            plan = await plan_rotation(deps, app_id, requested_key_id=key_id)
            if dry_run:
                return plan, None
            rotation = await start_rotation(deps, plan, reason=RotationReason.MANUAL,
                                      retire_now=retire_now)
            if plan.resumed is not None:
                progress(f"resuming rotation {rotation.id} (state {rotation.state})")
            else:
                progress(f"started rotation {rotation.id}")
            return plan, await drive(deps, rotation.id, retire_now=retire_now)

    try:
        plan, result = cli.run(go())
    except RotationRefused as exc:
        line.close()
        cli.abort(str(exc), exc.exit_code)
    except RotationBusy as exc:
        line.close()
        cli.abort(str(exc), EXIT_FAILED)
    finally:
        line.close()
    if result is None:
        if as_json:
            cli.emit_json({"dry_run": True, "app_id": plan.app.app_id, "plan": plan.describe()})
        else:
            click.echo("dry run — nothing was changed. rotator would:")
            for line in plan.describe():
                click.echo(f"  - {line}")
        raise SystemExit(EXIT_OK)
    if as_json:
        cli.emit_json(rotation_json(result))
    else:
        click.echo(f"rotation {result.id}: {result.state}")
        if result.new_key_id:
            click.echo(f"  new credential:  {result.new_key_id}")
        if result.consumer_version:
            click.echo(f"  consumer secret: {result.secret_name} version {result.consumer_version}")
        if result.state is RotationState.PROMOTED and result.held:
            click.echo(f"  old credential {result.old_key_id} {result.held} "
                       "(or run with --retire-now)")
        elif result.state is RotationState.PROMOTED and result.retire_after:
            click.echo(f"  old credential {result.old_key_id} is retired after "
                       f"{result.retire_after.isoformat()} (or run with --retire-now)")
        if result.last_error:
            click.echo(f"  error: {result.last_error}")
    ok = result.state in (RotationState.COMPLETED, RotationState.PROMOTED)
    raise SystemExit(EXIT_OK if ok else EXIT_FAILED)
