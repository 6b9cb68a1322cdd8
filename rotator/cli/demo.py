"""`rotator demo`: the whole job, end to end, against an emulated tenant in under a minute.

It starts the emulated tenant in this process (with a few seconds of credential
propagation, as in Azure), writes a policy that manages a handful of apps whose
secrets are due, runs the service's own scheduler and engine until those are
rotated and their old secrets retired, shows each step as it happens, prints a
summary, and checks the invariants against the tenant and the vault. Any broken
invariant makes it exit 1.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rotator.adapters.db.repo import Store
    from rotator.domain.credentials import CredentialKind
    from rotator.domain.rotation import Rotation
    from rotator.emulator.runner import RunningEmulator
    from rotator.emulator.tenant import Tenant

DEMO_TIMEOUT_SECONDS = 50.0
GRACE_SECONDS = 8.0
PROPAGATION_SECONDS = 3.0
# A seeded tenant in which several rotator-owned apps have secrets that are due.
TENANT_APPS = 30
TENANT_SEED = 3


# ---------------------------------------------------------------- the scenario


@dataclass(frozen=True, slots=True)
class Walkthrough:
    """A seeded walkthrough client (docs/emulator.md), given a secret that ends soon."""

    display_name: str
    verify_scope: str
    expected_roles: tuple[str, ...]
    days_left: float = 6.0


@dataclass(frozen=True, slots=True)
class SeededDue:
    """Up to ``count`` seeded apps owned by the rotator whose credential of ``kind`` is due."""

    kind: str  # "secret" | "certificate"
    count: int


SCENARIO: tuple[Walkthrough | SeededDue, ...] = (
    Walkthrough("myclient", "api://myapis/mywebapi/.default", ("ReadOnly",)),
    SeededDue("secret", 3),
    # SeededDue("certificate", 2),  # once certificates rotate, this one line adds them
)


@dataclass
class ManagedApp:
    app_id: str
    name: str
    kind: str
    secret_name: str
    due_reason: str
    extra_policy: dict[str, Any] = field(default_factory=dict)


def _domain_app(tenant: Tenant, app_id: str) -> Any:
    from rotator.domain.credentials import AppRegistration, Credential, CredentialKind

    app = tenant.find_app(app_id=app_id)
    creds = [
        Credential(c.key_id, CredentialKind.SECRET, c.display_name, c.start, c.end)
        for c in app.password_credentials
    ] + [
        Credential(k.key_id, CredentialKind.CERTIFICATE, k.display_name, k.start, k.end)
        for k in app.key_credentials
    ]
    return AppRegistration(app.id, app.app_id, app.display_name, tuple(creds))


def _due_reason(tenant: Tenant, app_id: str, kind: CredentialKind, now: datetime) -> str | None:
    from rotator.domain.policies import RenewalRule, Snapshot, rotation_due

    app = _domain_app(tenant, app_id)
    snap = Snapshot(app, kind, RenewalRule(30))
    # Something valid to retire afterwards, so retirement shows.
    if snap.newest(now) is None:
        return None
    verdict = rotation_due(snap, now)
    return verdict.message if verdict else None


def prepare(emu: RunningEmulator, scenario: Sequence[Walkthrough | SeededDue]) -> list[ManagedApp]:
    """Pick (and for the walkthrough client, set up) the apps the demo manages."""
    from rotator.domain.credentials import CredentialKind
    from rotator.emulator.tenant import make_secret_text

    tenant = emu.tenant
    now = datetime.now(UTC)
    rotator_sp = tenant.sp_by_app_id(tenant.rotator_app_id)
    assert rotator_sp is not None
    managed: list[ManagedApp] = []
    for item in scenario:
        if isinstance(item, Walkthrough):
            app = tenant.app_by_display_name(item.display_name)
            old = list(app.password_credentials)
            # Its consumers have read the current secret from the vault all along...
            fresh = make_secret_text()
            cred = tenant.add_secret(app.id, fresh, now + timedelta(days=item.days_left),
                                     "client secret", start=now - timedelta(days=174))
            for previous in old:
                tenant.remove_password(app.id, previous.key_id)
            secret_name = f"{item.display_name}-secret"
            tenant.vault.set(secret_name, fresh, content_type="text/plain",
                             tags={"app_id": app.app_id, "key_id": cred.key_id}, exp=cred.end)
            managed.append(ManagedApp(
                app.app_id, item.display_name, "secret", secret_name,
                f"client secret expires in {item.days_left:g} days",
                {"verify_scope": item.verify_scope, "expected_roles": list(item.expected_roles)},
            ))
            continue
        kind = CredentialKind(item.kind)
        found = 0
        batch, position = tenant.page(0, 10_000)
        while True:
            for app in batch:
                if found >= item.count:
                    break
                if not tenant.owns(rotator_sp.id, app) or app.display_name == "rotator" or any(
                    m.app_id == app.app_id for m in managed
                ):
                    continue
                reason = _due_reason(tenant, app.app_id, kind, now)
                if reason is None:
                    continue
                found += 1
                managed.append(ManagedApp(app.app_id, app.display_name, str(kind),
                                          f"{app.display_name}-{kind}", reason,
                                          {"credential": str(kind)}))
            if position is None or found >= item.count:
                break
            batch, position = tenant.page(position, 10_000)
    return managed


def write_policy(path: Path, vault_url: str, apps: Iterable[ManagedApp]) -> None:
    def toml(value: Any) -> str:
        if isinstance(value, list):
            return "[" + ", ".join(toml(v) for v in value) + "]"
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(value)

    lines = [
        "# written by `rotator demo`",
        "[defaults]",
        f"vault_url = {toml(vault_url)}",
        "renew_before_days = 30",
        "lifetime_days = 180",
        f"grace_hours = {GRACE_SECONDS / 3600!r}    # {GRACE_SECONDS:g} s, so retirement shows",
        "verify_successes = 3",
        "verify_timeout_seconds = 40",
        "scan_interval_minutes = 60",
        "reconcile_interval_seconds = 1",
        "lease_seconds = 30",
    ]
    for app in apps:
        lines += ["", "[[app]]", f"app_id = {toml(app.app_id)}",
                  f"secret_name = {toml(app.secret_name)}"]
        lines += [f"{k} = {toml(v)}" for k, v in app.extra_policy.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- running


def _fmt_delta(seconds: float) -> str:
    return f"{seconds:5.1f}s"


class Progress:
    """Prints each audit event once, as it is written."""

    def __init__(self, store: Store, names: dict[str, str], started: float) -> None:
        self.store = store
        self.names = names
        self.started = started
        self.seen: set[int] = set()
        self.width = max((len(n) for n in names.values()), default=10)

    def poll(self) -> None:
        for event in self.store.history(limit=200):
            if event.id in self.seen:
                continue
            self.seen.add(event.id)
            if event.step == "scan":
                who = "(tenant)"
            elif event.app_id in self.names:
                who = self.names[event.app_id]
            else:
                continue
            mark = {"ok": " ", "info": " ", "error": "!"}.get(str(event.outcome), " ")
            click.echo(f"  {_fmt_delta(time.monotonic() - self.started)} {mark} "
                       f"{who:<{self.width}}  {event.step:<8} {event.message}")


async def _run(store: Store, loaded: Any, apps: list[ManagedApp], started: float) -> tuple[
        bool, int | None]:
    from rotator.bootstrap import engine_deps
    from rotator.daemon import Daemon, instrument
    from rotator.metrics import Metrics

    names = {a.app_id: a.name for a in apps}
    progress = Progress(store, names, started)
    metrics = Metrics()
    async with engine_deps(loaded, store) as deps:
        instrument(deps, metrics,
                   graph_writes_per_minute=loaded.policy.daemon.graph_writes_per_minute)
        daemon = Daemon(deps, metrics=metrics, http_host="127.0.0.1", http_port=0,
                        stop_grace_seconds=3)
        runner = asyncio.create_task(daemon.run())
        await daemon.started.wait()
        click.echo(f"  metrics: http://127.0.0.1:{daemon.bound_port}/metrics "
                   "(while the demo runs)\n")
        done = False
        deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not runner.done():
            await asyncio.sleep(0.5)
            progress.poll()
            finished = 0
            for app in apps:
                latest = store.list_rotations(app_id=app.app_id, limit=1)
                if latest and not latest[0].active:
                    finished += 1
            if finished == len(apps):
                done = True
                break
        daemon.request_stop()
        await runner
        progress.poll()
        return done, daemon.bound_port


def _summary(store: Store, apps: list[ManagedApp], db_url: str, now: datetime) -> list[str]:
    from rotator.domain.states import RotationState

    out: list[str] = ["", "Summary", "-------", "Due when the demo started:"]
    for app in apps:
        out.append(f"  {app.name:<24} {app.kind:<11} {app.due_reason}")
    out += ["", "Rotated:"]
    rotations: list[Rotation] = []
    for app in apps:
        for r in store.list_rotations(app_id=app.app_id, limit=1):
            rotations.append(r)
            waited = r.extra.get("verify_seconds", "?")
            attempts = r.extra.get("verify_attempts", "?")
            out.append(
                f"  {app.name:<24} {r.state:<10} new {r.kind} {r.new_key_id or '-'}; verify "
                f"waited {waited} s for propagation ({attempts} token requests)"
                + (f"; error: {r.last_error}" if r.last_error and not r.new_key_id else "")
            )
    out += ["", "Retired (removed after the grace period):"]
    for app, r in zip(apps, rotations, strict=False):
        if r.state is RotationState.COMPLETED and r.old_key_id:
            out.append(f"  {app.name:<24} {r.kind} {r.old_key_id}")
    expiring = [
        row for row in store.inventory(within_days=30, now=now) if not row.managed
    ]
    out += ["", f"Unmanaged and expiring within 30 days (or expired): {len(expiring)} credentials"]
    for row in expiring[:8]:
        days = (row.end_at - now).total_seconds() / 86400 if row.end_at else 0.0
        state = "expired" if days < 0 else f"{days:5.1f} days left"
        out.append(f"  {row.app_display_name:<24} {row.kind:<11} {row.key_id}  {state}")
    if len(expiring) > 8:
        out.append(f"  ... and {len(expiring) - 8} more (`rotator scan --within-days 30`)")
    out += [
        "",
        "Look further (the demo's database is kept):",
        f"  export ROTATOR_DATABASE_URL={db_url}",
        "  rotator status              # rotations in flight and failed ones, the last scan",
        "  rotator history             # the audit trail, step by step",
        "  rotator serve               # the same scheduler as a service; metrics on "
        "http://localhost:9464/metrics",
    ]
    return out


@click.command("demo")
@click.option("--propagation-seconds", type=float, default=PROPAGATION_SECONDS, show_default=True,
              help="How long new credentials take to reach every replica of the tenant.")
def demo_command(propagation_seconds: float) -> None:
    """Rotate due credentials of an emulated tenant, end to end, and check the result."""
    from rotator.bootstrap import load, open_store
    from rotator.emulator.invariants import check_tenant, database_files, managed_apps
    from rotator.emulator.runner import start_emulator
    from rotator.logs import configure

    started = time.monotonic()
    configure("console", "ERROR")
    workdir = Path(tempfile.mkdtemp(prefix="rotator-demo-"))
    db_path = workdir / "rotator.db"
    db_url = f"sqlite:///{db_path}"
    click.echo("rotator demo: an emulated Entra tenant and Key Vault, a throwaway SQLite database")
    import logging

    for name in ("uvicorn", "uvicorn.error", "rotator.emulator"):
        # A filter, not a level: uvicorn resets levels when a server is configured.
        logging.getLogger(name).addFilter(lambda _record: False)
    with start_emulator(apps=TENANT_APPS, seed=TENANT_SEED, propagation_seconds=propagation_seconds,
                        workdir=workdir / "emulator") as emu:
        apps = prepare(emu, SCENARIO)
        policy_path = workdir / "policy.toml"
        write_policy(policy_path, emu.base_url, apps)
        click.echo(f"  tenant at {emu.base_url}, new credentials propagate within "
                   f"{propagation_seconds:g} s; policy {policy_path}")
        click.echo(f"  managing {len(apps)} apps whose secrets are due; grace period "
                   f"{GRACE_SECONDS:g} s\n")
        environ = {**emu.env, "ROTATOR_DATABASE_URL": db_url, "ROTATOR_CONFIG": str(policy_path)}
        loaded = load(environ)
        store = open_store(loaded.settings)
        original = {v for a in apps for v in
                    (c.secret_text for c in emu.tenant.passwords(a.app_id))}
        try:
            done, _port = asyncio.run(_run(store, loaded, apps, started))
            now = datetime.now(UTC)
            for line in _summary(store, apps, db_url, now):
                click.echo(line)
            problems = check_tenant(
                emu.tenant, store, managed_apps(loaded.policy),
                places=database_files(db_path), known_secrets=original,
            )
            rotations = [store.list_rotations(app_id=a.app_id, limit=1) for a in apps]
        finally:
            store.close()
    if not done:
        problems.append(f"not every due credential was rotated and retired within "
                        f"{DEMO_TIMEOUT_SECONDS:g} s")
    from rotator.domain.states import RotationState

    for app, latest in zip(apps, rotations, strict=True):
        if not latest or latest[0].state is not RotationState.COMPLETED:
            problems.append(f"{app.name}: rotation did not complete")
    elapsed = time.monotonic() - started
    click.echo("")
    if problems:
        click.echo(f"Invariants BROKEN ({len(problems)}):", err=True)
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
        raise SystemExit(1)
    click.echo("Invariants hold: every managed app has a working credential, each consumer "
               "secret holds a current one, no orphaned credentials, no secret value in the "
               "database.")
    click.echo(f"Done in {elapsed:.1f} s.")
    raise SystemExit(0)
