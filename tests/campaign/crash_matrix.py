"""The crash matrix: real `rotator rotate` processes killed by SIGKILL at every failpoint.

A *path* is one way a rotation runs: a secret or a certificate, the certificate's
first rotation (registered by PATCH) or a later one (addKey signed by the key rotator
holds), the rollback after a verification that cannot succeed, and a secret whose
consumer hook (a real command) is told of the promotion before anything is retired, and
a certificate kept as a Key Vault certificate object (imported, or made by Key Vault
itself with key_source = "keyvault"). Each path lists,
in order, the failpoints a clean run of it passes; ``test_crash_matrix.py`` proves the
lists against a traced real run and proves that together they cover every point of
``rotator.failpoints.POINTS``.

A case kills the first run at one point, checks the invariants against the emulator's
and Key Vault's actual state at that moment, runs `rotator rotate` again (a new
process, which takes the dead owner's lease over at once), and checks that it
converged: the new credential promoted, working and the only one left (or, on a
rollback path, the rotation failed with the app exactly as before), and no secret
value or private key in any output or in the database.
"""

from __future__ import annotations

import json
import signal
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rotator import certificate_material as certs
from rotator.adapters.db import SqlStore, make_engine
from rotator.domain.credentials import CredentialKind
from rotator.domain.hooks import EventType, event_id
from rotator.domain.rotation import Rotation
from rotator.domain.secret_value import SecretValue
from rotator.domain.states import ACTIVE_STATES
from rotator.emulator.invariants import Managed
from rotator.emulator.runner import RunningEmulator
from tests.support.emulated import (
    CANARY,
    Run,
    make_app,
    rotator_env,
    run_rotator,
    token_with,
    token_works,
)
from tests.support.invariants import assert_tenant_invariants

BAD_SCOPE = '"api://nothing-here/.default"'  # AADSTS500011: verification fails at once


def _both(*names: str) -> list[str]:
    return [f"{when}:{name}" for name in names for when in ("before", "after")]


def _happy(register: str, unregister: str, *, stage: str = "vault.set_secret.staging",
           promote: str = "vault.set_secret.consumer") -> tuple[str, ...]:
    first = (["graph.add_password", stage] if register == "graph.add_password"
             else [stage, register])  # a certificate's key is stored first
    return (*_both("db.pending", "db.creating", *first, "db.staged"),
            "before:token.request", "after:token.success",
            *_both("db.verified", promote, "vault.disable_version",
                   "db.promoted", "db.retiring", unregister, "db.completed"))


# Key Vault certificate objects: imported (or made by Key Vault), then imported again.
_OBJECTS = {"promote": "vault.import_certificate.consumer"}
_OBJECT_POLICY = ('key_vault_format = "certificate"', 'certificate_content_type = "pkcs12"')


def _with_hook(points: tuple[str, ...]) -> tuple[str, ...]:
    """The promoted event goes to the hook between promote and retire."""
    at = points.index("after:db.promoted") + 1
    return (*points[:at], *_both("hook.send"), *points[at:])


def _rollback(unregister: str) -> tuple[str, ...]:
    return ("before:token.request",
            *_both("db.rolling_back", unregister, "vault.disable_version", "db.failed"))


@dataclass(frozen=True)
class CrashPath:
    name: str
    kind: str  # "secret" | "certificate"
    points: tuple[str, ...]
    held: bool = False  # a certificate rotator already rotated once (addKey, not PATCH)
    rollback: bool = False
    hook: bool = False  # a command hook takes the promoted event
    policy: tuple[str, ...] = ()  # more keys of the app's policy table


PATHS: tuple[CrashPath, ...] = (
    CrashPath("secret", "secret", _happy("graph.add_password", "graph.remove_password")),
    CrashPath("secret-rollback", "secret", _rollback("graph.remove_password"), rollback=True),
    CrashPath("certificate-first", "certificate",
              _happy("graph.set_key_credentials", "graph.remove_key")),
    CrashPath("certificate-held", "certificate", _happy("graph.add_key", "graph.remove_key"),
              held=True),
    CrashPath("certificate-rollback", "certificate", _rollback("graph.remove_key"),
              rollback=True),
    CrashPath("secret-hook", "secret",
              _with_hook(_happy("graph.add_password", "graph.remove_password")), hook=True),
    CrashPath("certificate-object", "certificate",
              _happy("graph.set_key_credentials", "graph.remove_key",
                     stage="vault.import_certificate.staging", **_OBJECTS),
              policy=_OBJECT_POLICY),
    CrashPath("certificate-keyvault", "certificate",
              _happy("graph.set_key_credentials", "graph.remove_key",
                     stage="vault.create_certificate", **_OBJECTS),
              policy=(*_OBJECT_POLICY, 'key_source = "keyvault"')),
)
PATH_BY_NAME = {p.name: p for p in PATHS}


@dataclass(frozen=True)
class Case:
    path: CrashPath
    point: str

    def __str__(self) -> str:
        return f"{self.path.name}@{self.point}"


def all_cases() -> list[Case]:
    return [Case(path, point) for path in PATHS for point in path.points]


# The regular test suite's subset: right after every external write, and the state
# commits around the two moments that matter most (creation and promotion).
FAST_POINTS = frozenset(
    {p for p in (pt for path in PATHS for pt in path.points)
     if p.startswith(("after:graph.", "after:vault."))}
    | {"after:db.creating", "before:db.promoted"}
    # the hook has the event, its delivery is not recorded: the same id goes again
    | {"after:hook.send"}
)


# The certificate-object paths repeat the certificate paths' Graph writes; of their own
# points the subset takes Key Vault's create (a long-running operation a crash may cut
# short). tests/integration/test_certificate_objects.py crashes the imports in process.
_OWN_FAST = {"certificate-object": frozenset(),
             "certificate-keyvault": frozenset({"after:vault.create_certificate"}),
             "certificate-first": frozenset({"after:graph.set_key_credentials",
                                             "after:graph.remove_key"})}


def fast_cases() -> list[Case]:
    # The hook path repeats the secret path's writes: only its own point is in the subset.
    # A certificate's first rotation differs from a later one only in how it registers and
    # unregisters the key (PATCH, not addKey): the steps both share are killed once, on
    # the later rotation (_OWN_FAST).
    return [c for c in all_cases() if c.point in FAST_POINTS
            and (not c.path.hook or c.point.endswith(":hook.send"))
            and (c.path.name not in _OWN_FAST or c.point in _OWN_FAST[c.path.name])]


# ------------------------------------------------------------------ the managed app


@dataclass
class Subject:
    """The app under test and what a leak grep must look for."""

    app_id: str
    object_id: str
    secret_name: str
    policy: Path
    kind: str
    original_key_ids: set[str]
    canaries: list[str] = field(default_factory=list)
    # Where the consumer hook command writes "<event id> <event type>" per event it gets.
    hook_log: Path | None = None


# A consumer hook: appends the event it was given to the file named by its argument.
_RECORD_EVENT = ("import os, sys; open(sys.argv[1], 'a').write("
                 "os.environ['ROTATOR_EVENT_ID'] + ' ' + os.environ['ROTATOR_EVENT_TYPE'] + "
                 "chr(10))")


def _hook_lines(log: Path) -> list[str]:
    argv = [sys.executable, "-c", _RECORD_EVENT, str(log)]
    return ["[[app.hook]]", 'type = "command"', 'name = "record"',
            f"argv = {json.dumps(argv)}", 'events = ["promoted"]', "timeout_seconds = 30"]


def _policy_lines(app_id: str, secret_name: str, kind: str, *, rollback: bool,
                  extra: Sequence[str] = ()) -> list[str]:
    lines = ["[defaults]", "verify_successes = 2", "verify_timeout_seconds = 60",
             "grace_hours = 24", "lifetime_days = 90"]
    if rollback:
        lines.append(f"verify_scope = {BAD_SCOPE}")
    lines += ["[[app]]", f'app_id = "{app_id}"', f'secret_name = "{secret_name}"']
    if kind == "certificate":
        lines += ['credential = "certificate"', 'certificate_subject = "CN=rotator-crash"',
                  *(extra or ['key_vault_format = "pem"'])]
    return lines


def make_subject(emu: RunningEmulator, workdir: Path, path: CrashPath) -> Subject:
    if path.kind == "secret":
        app = make_app(emu, name=f"cm-{uuid.uuid4().hex[:8]}")
        app_id, object_id, secret_name = app.app_id, app.object_id, app.secret_name
        canaries = [app.old_secret]
        original = {app.old_key_id}
    else:
        now = datetime.now(UTC)
        der = certs.generate("RSA2048", "CN=unknown", now - timedelta(days=100),
                             now + timedelta(days=5)).der
        name = f"cmc-{uuid.uuid4().hex[:8]}"
        created = emu.tenant.create_app(name, certificates=[der])
        app_id, object_id, secret_name = created.app_id, created.id, f"{name}-cert"
        canaries = []
        original = {k.key_id for k in emu.tenant.keys(app_id)}
    policy = workdir / f"policy-{app_id}.toml"
    lines = _policy_lines(app_id, secret_name, path.kind, rollback=path.rollback,
                          extra=path.policy)
    hook_log = workdir / f"hook-{app_id}.log" if path.hook else None
    if hook_log is not None:
        lines += _hook_lines(hook_log)
    policy.write_text("\n".join(lines) + "\n")
    return Subject(app_id, object_id, secret_name, policy, path.kind, original, canaries,
                   hook_log)


def _hook_events(subject: Subject) -> list[tuple[str, str]]:
    """(event id, event type) of each event the hook command was given, in order."""
    if subject.hook_log is None or not subject.hook_log.exists():
        return []
    lines = subject.hook_log.read_text(encoding="utf-8").splitlines()
    return [(i, t) for i, _, t in (line.partition(" ") for line in lines if line)]


def _key_ids(emu: RunningEmulator, subject: Subject) -> set[str]:
    if subject.kind == "secret":
        return {p.key_id for p in emu.tenant.passwords(subject.app_id)}
    return {k.key_id for k in emu.tenant.keys(subject.app_id)}


def _consumer(emu: RunningEmulator, subject: Subject):  # type: ignore[no-untyped-def]
    versions = emu.tenant.vault.versions(subject.secret_name)
    return versions[-1] if versions else None


def _active(database_url: str, app_id: str) -> list[Rotation]:
    store = SqlStore(make_engine(database_url))
    try:
        return [r for r in store.list_rotations(app_id=app_id) if r.state in ACTIVE_STATES]
    finally:
        store.close()


def _active_ids(database_url: str, app_id: str) -> set[str]:
    return {r.id for r in _active(database_url, app_id)}


def _consumer_works(emu: RunningEmulator, subject: Subject) -> bool:
    latest = _consumer(emu, subject)
    if latest is None:
        return False
    if subject.kind == "secret":
        return token_works(emu, subject.app_id, latest.value)
    from rotator.ports import StoredSecret

    stored = StoredSecret(subject.secret_name, latest.version, True, latest.content_type,
                          dict(latest.tags), value=SecretValue(latest.value))
    return token_with(emu, subject.app_id, stored).get("appid") == subject.app_id


def assert_invariants(emu: RunningEmulator, subject: Subject, database_url: str,
                      outputs: Sequence[str]) -> None:
    """The invariants, read from the emulator, the vault and the database, with a rotation
    possibly in flight; and no secret value, private key or canary in any output."""
    assert_tenant_invariants(
        emu, database_url,
        [Managed(subject.app_id, subject.secret_name, CredentialKind(subject.kind),
                 promoted_hooks=("record",) if subject.hook_log is not None else ())],
        outputs=outputs, known_secrets=[*subject.canaries, CANARY],
        allow_in_flight=True, allow_no_consumer=True)


def _rotate(subject: Subject, emu: RunningEmulator, database_url: str, **extra: str) -> Run:
    env = rotator_env(emu, database_url, subject.policy, **extra)
    return run_rotator(["rotate", "--app", subject.app_id, "--retire-now", "--json"], env)


def prepare(emu: RunningEmulator, database_url: str, workdir: Path, path: CrashPath) -> Subject:
    subject = make_subject(emu, workdir, path)
    if path.held:
        first = _rotate(subject, emu, database_url)
        assert first.returncode == 0, first.stderr[-2000:]
        subject.original_key_ids = _key_ids(emu, subject)
    return subject


def run_case(emu: RunningEmulator, database_url: str, workdir: Path, case: Case) -> None:
    """One cell of the matrix; raises AssertionError when an invariant breaks."""
    subject = prepare(emu, database_url, workdir, case.path)
    before_consumer = _consumer(emu, subject)
    killed = _rotate(subject, emu, database_url, ROTATOR_ENABLE_FAILPOINTS="1",
                     ROTATOR_FAILPOINTS=f"{case.point}=kill")
    assert killed.returncode == -signal.SIGKILL, (
        f"{case}: not killed (exit {killed.returncode}): {killed.stderr[-1500:]}")
    outputs = [killed.stdout, killed.stderr]
    assert_invariants(emu, subject, database_url, outputs)
    if case.path.hook and not _hook_events(subject):
        # Nobody was told of the promotion: the old credential must still be there.
        assert subject.original_key_ids <= _key_ids(emu, subject), (
            f"{case}: the old credential was retired before the hook took the event")

    again = _rotate(subject, emu, database_url)
    outputs += [again.stdout, again.stderr]
    assert again.stdout.strip(), f"{case}: no JSON result: {again.stderr[-2000:]}"
    out = json.loads(again.stdout)
    if case.path.rollback:
        assert again.returncode == 1 and out["state"] == "failed", (again.returncode, out)
        assert _key_ids(emu, subject) == subject.original_key_ids, "rollback left credentials"
        after = _consumer(emu, subject)
        assert (after.version if after else None) == (
            before_consumer.version if before_consumer else None), "consumer secret changed"
    else:
        assert again.returncode == 0, again.stderr[-3000:]
        assert out["state"] == "completed", out
        assert _key_ids(emu, subject) == {out["new_key_id"]}
        latest = _consumer(emu, subject)
        assert latest is not None and latest.tags["key_id"] == out["new_key_id"]
        assert _consumer_works(emu, subject), "the promoted credential gets no token"
    assert not _active_ids(database_url, subject.app_id)
    assert_invariants(emu, subject, database_url, outputs)
    if case.path.hook:
        expected = event_id(out["rotation_id"], EventType.PROMOTED)
        got = _hook_events(subject)
        # At least once, and every (re-)send after the crash is the very same event.
        assert got and set(got) == {(expected, EventType.PROMOTED.value)}, got
        if case.point == "after:hook.send":
            assert len(got) == 2, f"{case}: the event taken before the crash was not re-sent"


def trace(emu: RunningEmulator, database_url: str, workdir: Path, path: CrashPath) -> list[str]:
    """The failpoints a clean run of ``path`` passes, in order, each once."""
    subject = prepare(emu, database_url, workdir, path)
    log = workdir / f"trace-{subject.app_id}"
    run = _rotate(subject, emu, database_url, ROTATOR_ENABLE_FAILPOINTS="1",
                  ROTATOR_FAILPOINTS_TRACE=str(log))
    assert run.returncode == (1 if path.rollback else 0), run.stderr[-2000:]
    seen: list[str] = []
    for name in log.read_text().split():
        if name not in seen:
            seen.append(name)
    if path.rollback:  # a rollback path starts where verification does
        seen = seen[seen.index("before:token.request"):]
    return seen
