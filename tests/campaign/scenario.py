"""One randomised fault scenario: a rotation driven through a schedule of faults.

The engine, state table and database are real (SQLite or PostgreSQL); Graph, Key
Vault and the token endpoint are the in-memory fakes, so hundreds of scenarios run in
seconds. The ports are instrumented as the service does it (request counting, write
budget). Faults: process crashes after any external write; writes whose answer is
lost (a timeout after the write was applied); Graph 5xx / 429 / 409 and Key Vault
500 / 429 answers before any call; a database outage over a run of store calls;
token refusals (propagation) and token endpoint 503s up to past the verify deadline;
clock jumps; a consumer hook that fails (receiver down, HTTP 500, no answer, another
status, a command exiting non-zero) or dies right after a send; a credential usage
report (``retire_when = "unused"``) that answers 403, 404, 5xx or a changed shape.
After every crash or aborted run and at the end the invariants are checked, and
every log line, metric and alert the scenario produced is grepped for secret values
and private keys.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from sqlalchemy.exc import OperationalError

from rotator.adapters.db import SqlStore, make_engine, migrate
from rotator.alerts.compose import hook_alerts, message_text, rotation_alerts, single_message
from rotator.alerts.formats import slack_payload, teams_payload, webhook_payload
from rotator.config import HookPolicy
from rotator.daemon import instrument
from rotator.domain.credentials import CredentialKind
from rotator.domain.hooks import EventType, HookEvent, event_id
from rotator.domain.rotation import Rotation, RotationReason
from rotator.domain.states import RotationState
from rotator.engine.driver import drive
from rotator.engine.start import RotationRefused, plan_rotation, start_rotation
from rotator.metrics import Metrics
from rotator.ports import DirectoryError, HookError, SecretStoreError, UsageReportUnavailable
from tests.support.databases import database_text
from tests.support.fakes import (
    CANARY,
    Crash,
    FakeApp,
    FakeClock,
    FakeDirectory,
    FakeProbe,
    FakeSecretStore,
    Faults,
)
from tests.support.invariants import assert_invariants, key_canaries
from tests.support.world import TENANT, World, make_app

SECRET_CRASH_POINTS = ["add_password", "set_secret:orders-secret-next",
                       "set_secret:orders-secret", "disable_version", "remove_password"]
CERT_CRASH_POINTS = ["set_secret:orders-secret-next", "patch", "add_key",
                     "set_secret:orders-secret", "disable_version", "remove_key"]
ERROR_OPS = ["get", "add_password", "remove_password", "add_key", "remove_key", "patch",
             "set_secret", "get_secret", "disable_version"]
ERRORS = {
    "graph_503": lambda: DirectoryError("Service unavailable", status=503),
    "graph_429": lambda: DirectoryError("TooManyRequests", status=429, retry_after=7),
    "graph_409": lambda: DirectoryError("Directory_ConcurrencyViolation", status=409,
                                        code="Directory_ConcurrencyViolation"),
    "vault_500": lambda: SecretStoreError("InternalServerError", status=500),
    "vault_429": lambda: SecretStoreError("Throttled", status=429, code="Throttled"),
}
GRAPH_OPS = {"get", "add_password", "remove_password", "add_key", "remove_key", "patch"}
# What a consumer hook's failed send says (the words of rotator.adapters.hooks).
HOOK_FAULTS = {
    "hook_down": "ConnectError: [Errno 111] Connection refused",
    "hook_500": "the receiver answered HTTP 500",
    "hook_timeout": "no answer within 30 s",
    "hook_bad_status": "the receiver answered HTTP 302",
    "hook_exit_1": "kubectl exited with status 1",
}
# The usage report: "ok" shows the consumers moved; the others are outages. 5xx is
# transient (the step retries); the rest make rotator fall back to the grace rule.
REPORTS = ("ok", "report_403", "report_404", "report_5xx", "report_shape")
REPORT_FALLBACKS = {
    "report_403": ("the credential usage report answered HTTP 403 Authorization_RequestDenied"
                   " (the permission AuditLog.Read.All is missing?)", 403),
    "report_404": ("the credential usage report answered HTTP 404 ResourceNotFound", 404),
    "report_shape": ("the credential usage report has no 'value' list", 200),
}
HOOK_NAME = "restart"


@dataclass(frozen=True)
class Scenario:
    kind: CredentialKind
    crashes: tuple[str, ...]
    errors: tuple[tuple[str, str], ...]  # (op, error kind)
    refusals: int  # token refusals before the new credential is accepted
    clock_jump_hours: float
    lost: tuple[str, ...] = ()  # writes applied whose answer is lost
    # (first failing store call, number of failing calls); 0 calls = no outage
    db_outage: tuple[int, int] = (0, 0)
    token_outage: int = 0  # token requests answered 503 before any other answer
    hook: bool = False  # the app has a consumer hook that must take the promoted event
    hook_faults: tuple[str, ...] = ()  # the outcome of its first sends (HOOK_FAULTS)
    report: str | None = None  # retire_when = "unused" with this report (REPORTS)
    # The emulator's defaults are on: Graph reads lag writes by up to read_lag seconds
    # (per read replica), and a removed credential still gets tokens for up to
    # removal_lag seconds; lag_seed picks the replicas.
    read_lag: float = 2.0
    removal_lag: float = 2.0
    lag_seed: int = 0
    # A certificate kept as a Key Vault certificate object, its key made by "rotator" or
    # by "keyvault"; None: a PEM secret.
    objects: str | None = None


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    kind = draw(st.sampled_from([CredentialKind.SECRET, CredentialKind.CERTIFICATE]))
    points = SECRET_CRASH_POINTS if kind is CredentialKind.SECRET else CERT_CRASH_POINTS
    crashes = tuple(draw(st.lists(st.sampled_from(points), max_size=3, unique=True)))
    lost = tuple(draw(st.lists(st.sampled_from([p for p in points if p not in crashes]),
                               max_size=2, unique=True)))
    errors = []
    for op in draw(st.lists(st.sampled_from(ERROR_OPS), max_size=6)):
        pool = [k for k in ERRORS if k.startswith("graph") == (op in GRAPH_OPS)]
        errors.append((op, draw(st.sampled_from(pool))))
    # up to ~80: with the verify timing below that reaches past the 120 s deadline
    refusals = draw(st.integers(min_value=0, max_value=80))
    jump = draw(st.sampled_from([0.0, 0.0, 1.0, 30.0]))
    outage = draw(st.one_of(st.just((0, 0)), st.tuples(st.integers(1, 40), st.integers(1, 6))))
    token_outage = draw(st.sampled_from([0, 0, 0, 3, 20]))
    hook = draw(st.booleans())
    hook_faults: tuple[str, ...] = ()
    if hook:
        # up to 6: past the first minute of backoff the command stops waiting for it
        hook_faults = tuple(draw(st.lists(st.sampled_from(sorted(HOOK_FAULTS)), max_size=6)))
        if draw(st.booleans()):
            crashes += ("hook_send",)
    report = draw(st.sampled_from([None, None, *REPORTS]))
    read_lag = draw(st.sampled_from([2.0, 2.0, 5.0]))
    removal_lag = draw(st.sampled_from([2.0, 60.0]))
    lag_seed = draw(st.integers(0, 2**16))
    # Drawn last, so the scenarios drawn before it stay what they were for a seed.
    objects = (draw(st.sampled_from([None, "rotator", "keyvault"]))
               if kind is CredentialKind.CERTIFICATE else None)
    return Scenario(kind, crashes, tuple(errors), refusals, jump, lost, outage, token_outage,
                    hook=hook, hook_faults=hook_faults, report=report, read_lag=read_lag,
                    removal_lag=removal_lag, lag_seed=lag_seed, objects=objects)


class ScenarioHooks:
    """The consumer hook: fails its first sends as scheduled, may die right after one
    that got through (the event taken, its delivery not recorded)."""

    def __init__(self, faults: Faults, schedule: tuple[str, ...]) -> None:
        self._faults = faults
        self.schedule = list(schedule)
        self.taken: list[HookEvent] = []

    async def send(self, hook: HookPolicy, event: HookEvent) -> None:
        if self.schedule:
            fault = self.schedule.pop(0)
            self._faults.fired[fault] += 1
            raise HookError(HOOK_FAULTS[fault])
        self.taken.append(event)
        self._faults.check_after("hook_send")


class ScenarioUsage:
    """The credential usage report as the port returns it: rotator's new credential in
    use since promote and the old one silent; or the scheduled outage."""

    def __init__(self, world: World, app: FakeApp, report: str) -> None:
        self._world, self._app, self._report = world, app, report
        self.transient_left = 2 if report == "report_5xx" else 0
        self.reads = 0

    async def last_sign_ins(self, app_id: str) -> Mapping[str, datetime | None]:
        self.reads += 1
        if self._report in REPORT_FALLBACKS:
            message, status = REPORT_FALLBACKS[self._report]
            raise UsageReportUnavailable(message, status=status)
        if self.transient_left:
            self.transient_left -= 1
            raise DirectoryError("usage report: HTTP 503", status=503)
        self._world.clock.advance(1)  # the report is read after the consumers moved
        now = self._world.clock.now()
        return {c.key_id: (now if (c.display_name or "").startswith("rotator:") else None)
                for c in self._app.credentials}


class FlakyStore:
    """The real store behind a database outage: store calls ``start`` to
    ``start + length - 1`` (counted from 1) fail as a dropped connection would."""

    def __init__(self, inner: SqlStore, start: int, length: int) -> None:
        self._inner, self._start, self._length = inner, start, length
        self.calls = 0
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self._start <= self.calls < self._start + self._length:
                self.failed += 1
                raise OperationalError("UPDATE rotations ...", {},
                                       ConnectionRefusedError("the database is down"))
            return attr(*args, **kwargs)

        return call


@dataclass
class CampaignStats:
    scenarios: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    completed: int = 0
    rolled_back_then_completed: int = 0
    invariants_broken: int = 0
    secrets_leaked: int = 0
    failures: list[str] = field(default_factory=list)

    def merge(self, other: CampaignStats) -> None:
        self.scenarios += other.scenarios
        self.faults.update(other.faults)
        self.completed += other.completed
        self.rolled_back_then_completed += other.rolled_back_then_completed
        self.invariants_broken += other.invariants_broken
        self.secrets_leaked += other.secrets_leaked
        self.failures += other.failures


@contextmanager
def fresh_world(template: Path, database_url: str | None = None) -> Iterator[World]:
    """A new tenant, vault and clock, and a fresh SQLite copy of ``template`` or, with
    ``database_url``, a shared migrated PostgreSQL database (apps never repeat)."""
    tmp = Path(tempfile.mkdtemp(prefix="campaign-"))
    try:
        db = tmp / "rotator.db"
        if database_url is None:
            shutil.copy(template, db)
        store = SqlStore(make_engine(database_url or f"sqlite:///{db}"))
        clock = FakeClock()
        faults = Faults()
        directory = FakeDirectory(clock, faults)
        world = World(clock, directory, FakeSecretStore(clock, faults),
                      FakeProbe(directory, TENANT), store, faults, tmp)
        try:
            yield world
        finally:
            store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def migrated_template(directory: Path) -> Path:
    path = directory / "template.db"
    if not path.exists():
        migrate.upgrade(f"sqlite:///{path}")
    return path


def leaked_in(text: str, world: World | None = None) -> bool:
    """A canary secret, a PEM private-key header or a slice of a stored private key."""
    if CANARY in text or "PRIVATE KEY" in text:
        return True
    return world is not None and any(c in text for c in key_canaries(world))


def observed_texts(world: World, metrics: Metrics) -> list[str]:
    """Everything the scenario made that people or other systems see, besides the log:
    the metrics page, and every alert it raises in every channel's format."""
    texts = [metrics.render().decode()]
    rotations = world.store.list_rotations()
    now = world.clock.now()
    for alert in rotation_alerts(rotations, now, retrying_attempts=1,
                                 lookback=timedelta(days=365)):
        message = single_message(alert, now)
        texts.append(message_text(message))
        for payload in (webhook_payload(message), slack_payload(message),
                        teams_payload(message)):
            texts.append(json.dumps(payload))
    later = now + timedelta(days=1)
    for alert in hook_alerts(world.store.hooks.pending(1000), later, retrying_attempts=1):
        texts.append(message_text(single_message(alert, later)))
    texts += [r.last_error or "" for r in rotations]
    return texts


async def _rotate(world: World, app: FakeApp, store: SqlStore | FlakyStore,
                  metrics: Metrics, *, retire_now: bool = True, **ports: object) -> Rotation:
    """One process lifetime, instrumented as the service instruments its ports."""
    deps = world.deps(store=store, **ports)
    instrument(deps, metrics, graph_writes_per_minute=600_000)
    # A lifetime can die after the rotation completed (the database failing on a call
    # that follows the last record): the admin who reruns sees it done in `rotator
    # status` and does not ask for another rotation, which this scenario never planned.
    ended = await deps.db(store.list_rotations, app_id=app.app_id, limit=1)
    if ended and ended[0].state is RotationState.COMPLETED:
        return ended[0]
    plan = await plan_rotation(deps, app.app_id)
    rotation = await start_rotation(deps, plan, reason=RotationReason.MANUAL, retire_now=retire_now)
    result = await drive(deps, rotation.id, retire_now=retire_now)
    metrics.record_finished(result)
    return result


def _manage(world: World, app: FakeApp, scenario: Scenario) -> None:
    """The app's policy: its kind, and the hook and retirement rule the scenario names."""
    policy: dict[str, object] = {}
    if scenario.kind is CredentialKind.CERTIFICATE:
        policy["credential"] = "certificate"
    if scenario.objects is not None:
        policy.update(key_vault_format="certificate", key_source=scenario.objects)
    if scenario.report is not None:
        # no grace to wait out: the report is read as soon as the rotation promotes
        policy.update(retire_when="unused", grace_hours=0, quiet_hours=1,
                      retire_max_wait_hours=24)
    hook = (f'[[app.hook]]\ntype = "command"\nname = "{HOOK_NAME}"\n'
            'argv = ["kubectl", "rollout", "restart", "deployment/orders"]\n'
            'events = ["promoted"]\n') if scenario.hook else ""
    world.manage(app, app_toml=hook, **policy)


def _check_evidence(world: World, scenario: Scenario, result: Rotation,
                    hooks: ScenarioHooks) -> None:
    """What the hook and the report scenarios must show once the rotation completed."""
    if scenario.hook:
        promoted = [e.id for e in hooks.taken if e.type is EventType.PROMOTED]
        # at least once, and every (re-)send is the same event
        assert promoted and set(promoted) == {event_id(result.id, EventType.PROMOTED)}, promoted
        [delivery] = [d for d in world.store.hooks.for_rotation(result.id)
                      if d.event.type is EventType.PROMOTED]
        assert delivery.delivered and delivery.delivered_at is not None
        assert result.finished_at is not None and delivery.delivered_at <= result.finished_at
    if scenario.report is None:
        return
    rules = [e.details["retired_by"] for e in world.store.history(rotation_id=result.id)
             if isinstance(e.details.get("retired_by"), str)]
    assert rules, "no rule recorded for the removal"
    if scenario.report in REPORT_FALLBACKS:
        # the report could not be read: the grace rule, said and recorded
        assert result.rule_fallback, "the fallback to the grace rule was not recorded"
        assert all(r.startswith("grace (fallback: ") for r in rules), rules
        assert any("falling back to the grace rule" in e.message
                   for e in world.store.history(rotation_id=result.id))
    else:
        assert result.rule_fallback is None and all(r.startswith("unused: ") for r in rules)


async def run_scenario(world: World, scenario: Scenario, stats: CampaignStats,
                       log: io.StringIO | None = None) -> None:
    """Drive one rotation to the end through the scenario's faults; raise on a broken
    invariant or a leak (AssertionError)."""
    log_start = log.tell() if log is not None else 0
    app = make_app(world, scenario.kind)
    _manage(world, app, scenario)
    hooks = ScenarioHooks(world.faults, scenario.hook_faults)
    ports: dict[str, object] = {"hooks": hooks}
    if scenario.report is not None:
        usage = ScenarioUsage(world, app, scenario.report)
        ports["usage"] = usage
        if scenario.report != "ok":
            stats.faults[scenario.report] += 1
        stats.faults["report_5xx_answers"] += usage.transient_left
    for op, kind in scenario.errors:
        world.faults.before[op].append(ERRORS[kind]())
        stats.faults[kind] += 1
    world.faults.crash_after.update(scenario.crashes)
    world.faults.lost_after.update(scenario.lost)
    world.probe.refuse_first = scenario.refusals
    stats.faults["token_refusal"] += scenario.refusals
    world.probe.unavailable_first = scenario.token_outage
    world.directory.read_lag_seconds = scenario.read_lag
    world.directory.removal_lag_seconds = scenario.removal_lag
    world.directory.lag_rng.seed(scenario.lag_seed)
    stats.faults["token_503"] += scenario.token_outage
    if scenario.clock_jump_hours:
        stats.faults["clock_jump"] += 1
    store = FlakyStore(world.store, *scenario.db_outage)
    metrics = Metrics()
    stats.scenarios += 1
    failed_once = False
    try:
        for _ in range(16):  # process lifetimes (or runs aborted by the database)
            try:
                result = await _rotate(world, app, store, metrics,
                                       retire_now=scenario.report is None, **ports)
            except (Crash, OperationalError):
                # Dead, or alive but unable to record: either way the lease stays behind.
                assert_invariants(world, app)
                world.clock.advance(600 + scenario.clock_jump_hours * 3600)  # lease expired
                continue
            except RotationRefused:
                # a read failed while planning: nothing was started; the admin (or the next
                # daemon tick) simply tries again
                assert_invariants(world, app)
                world.clock.advance(60)
                continue
            assert_invariants(world, app)
            if result.state is RotationState.PROMOTED and result.next_attempt_at is not None:
                # waiting (a hook that is still down): the daemon's next pass drives it on
                world.clock.advance(
                    max((result.next_attempt_at - world.clock.now()).total_seconds(), 0) + 1)
                continue
            if result.state is RotationState.COMPLETED:
                _check_evidence(world, scenario, result, hooks)
                stats.completed += 1
                stats.rolled_back_then_completed += failed_once
                return
            assert result.state is RotationState.FAILED, result.state
            failed_once = True
            # the next try waits out the failure backoff, as the daemon would
            assert result.next_attempt_at is not None
            world.clock.advance(
                (result.next_attempt_at - world.clock.now()).total_seconds() + 1)
        raise AssertionError(f"rotation did not converge for {scenario}")
    finally:
        stats.faults.update(world.faults.fired)  # the ones the run actually reached
        stats.faults["stale_read"] += world.directory.stale_reads
        stats.faults["token_for_removed_credential"] += world.directory.lingering_tokens
        stats.faults["db_call_failed"] += store.failed
        texts = observed_texts(world, metrics)
        if world.store.engine.dialect.name != "sqlite":  # SQLite files are grepped per check
            texts.append(database_text(world.store.engine.url.render_as_string(False)))
        if log is not None:
            log.seek(log_start)
            texts.append(log.read())
        if any(leaked_in(text, world) for text in texts):
            stats.secrets_leaked += 1
            raise AssertionError("a secret value or private key reached a log, metric or alert")
