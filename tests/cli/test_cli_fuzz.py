"""Property-based fuzzing of the `rotator` command line.

Random argument lists built from the real commands and options (read off the click
objects), with garbage values, missing values, unknown options and unicode, run against
a throwaway SQLite database and an emulated tenant. Whatever the input, the command
exits 0, 1 or 2, says what went wrong in words rather than a traceback, and a refused
`rotate` changes nothing: no rotation row, no new credential, no new secret version.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
import structlog
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from rotator.cli.main import cli
from rotator.emulator.runner import RunningEmulator, start_emulator

# Commands left out: serve and emulator run until stopped; demo takes a minute.
NEVER_RUN = frozenset({"serve", "emulator", "demo"})
CANARY = "CANARY-fuzz"


@dataclass(frozen=True)
class FuzzApp:
    app_id: str
    secret_name: str


@dataclass
class World:
    emu: RunningEmulator
    root: Path
    db_path: Path
    managed: FuzzApp
    not_owned: FuzzApp  # in the policy, but rotator is not its owner: Graph refuses writes
    unmanaged: FuzzApp
    envs: dict[str, dict[str, str | None]] = field(default_factory=dict)

    def __repr__(self) -> str:  # Hypothesis prints it with every failing example
        return f"World({self.root})"

    @property
    def cwd(self) -> Path:
        """Where commands run: relative --output paths land here, away from our files."""
        path = self.root / "cwd"
        path.mkdir(exist_ok=True)
        return path

    @property
    def apps(self) -> tuple[FuzzApp, ...]:
        return (self.managed, self.not_owned, self.unmanaged)


def _app(emu: RunningEmulator, name: str, *, owned: bool) -> FuzzApp:
    end = datetime.now(UTC) + timedelta(days=10)
    app = emu.tenant.create_app(
        name, owned_by_rotator=owned, secrets=[(f"{CANARY}-{uuid.uuid4().hex}", end)]
    )
    return FuzzApp(app.app_id, f"{name}-secret")


def _environments(w: World, policy: Path, bad_policy: Path, binary: Path
                  ) -> dict[str, dict[str, str | None]]:
    # Unset every ROTATOR_* and AZURE_* of the process (failpoints above all), then set ours.
    base: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("ROTATOR_", "AZURE_"))
    }
    base.update(w.emu.env)
    base["ROTATOR_DATABASE_URL"] = f"sqlite:///{w.db_path}"
    base["ROTATOR_CONFIG"] = str(policy)
    return {
        "good": base,
        "no tenant": {**base, "AZURE_TENANT_ID": None},
        "bad settings": {**base, "ROTATOR_HTTP_PORT": "http", "ROTATOR_LOG_LEVEL": "loud"},
        "bad policy": {**base, "ROTATOR_CONFIG": str(bad_policy)},
        "no policy file": {**base, "ROTATOR_CONFIG": str(w.root / "missing.toml")},
        "database dir missing": {
            **base, "ROTATOR_DATABASE_URL": f"sqlite:///{w.root / 'no' / 'such' / 'r.db'}"
        },
        "database url garbage": {**base, "ROTATOR_DATABASE_URL": "nosuchdb://x"},
        "binary env file": {**base, "ROTATOR_ENV_FILE": str(binary)},
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("cli-fuzz")
    with start_emulator(apps=3, seed=5, workdir=root / "emu") as emu:
        w = World(
            emu=emu, root=root, db_path=root / "rotator.db",
            managed=_app(emu, "fuzz-managed", owned=True),
            not_owned=_app(emu, "fuzz-not-owned", owned=False),
            unmanaged=_app(emu, "fuzz-unmanaged", owned=True),
        )
        policy = root / "policy.toml"
        policy.write_text(
            "[defaults]\nverify_successes = 1\nverify_timeout_seconds = 30\n"
            "grace_hours = 24\n"
            + "".join(
                f'[[app]]\napp_id = "{a.app_id}"\nsecret_name = "{a.secret_name}"\n'
                for a in (w.managed, w.not_owned)
            )
            + '[alerts]\n[[alerts.channel]]\ntype = "log"\n',
            encoding="utf-8",
        )
        bad_policy = root / "bad.toml"
        bad_policy.write_text("[defaults]\nlifetime_dayz = 90\n", encoding="utf-8")
        binary = root / "binary.env"
        binary.write_bytes(b"\x7fELF\xff\xfe\x00\x01")
        w.envs = _environments(w, policy, bad_policy, binary)
        yield w
    # The commands configured structlog to write to CliRunner's streams; leave no trace.
    structlog.reset_defaults()


# ============================================================================ the commands


def _leaves(group: click.Group, ctx: click.Context, path: tuple[str, ...]
            ) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = []
    for name in group.list_commands(ctx):
        if name in NEVER_RUN:
            continue
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            found.append(((*path, name), command))  # the group alone prints its usage
            found.extend(_leaves(command, ctx, (*path, name)))
        else:
            found.append(((*path, name), command))
    return found


with click.Context(cli) as _ctx:
    assert isinstance(cli, click.Group)
    COMMANDS = _leaves(cli, _ctx, ())
# Every option of every command, so one command also gets the others' options.
ALL_OPTIONS = sorted({
    opt for _, command in COMMANDS for p in command.params if isinstance(p, click.Option)
    for opt in (*p.opts, *p.secondary_opts)
})
TAKES_VALUE = frozenset(
    opt for _, command in COMMANDS for p in command.params
    if isinstance(p, click.Option) and not p.is_flag for opt in p.opts
)


def test_the_commands_were_found() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"scan", "rotate", "status", "history", "alerts test", "alerts run", "report",
            "db upgrade"} <= names
    assert {"--app", "--credential", "--dry-run", "--json", "--limit", "--within-days",
            "--format", "--output", "--revision"} <= set(ALL_OPTIONS)


# ============================================================================ strategies


def safe_text(max_size: int = 12) -> st.SearchStrategy[str]:
    # Never an absolute path or a way up: a value may end up as `report --output`.
    return st.text(max_size=max_size).filter(
        lambda t: not t.startswith(("/", "~")) and ".." not in t and "\x00" not in t
    )


KEY_OF = "<key id of {}>"


def resolve(w: World, argv: list[str]) -> list[str]:
    """Placeholders for credential key ids, filled in just before the run: rotations
    replace credentials as the run goes on, and what Hypothesis draws must not depend
    on that."""
    keys = {KEY_OF.format(a.app_id): [p.key_id for p in w.emu.tenant.passwords(a.app_id)]
            for a in w.apps}
    return [keys[a][0] if keys.get(a) else a for a in argv]


def values(w: World) -> st.SearchStrategy[str]:
    ids = [a.app_id for a in w.apps]
    return st.one_of(
        safe_text(),
        st.sampled_from(ids).flatmap(lambda i: st.sampled_from([i, i.upper(), f" {i} "])),
        st.sampled_from([KEY_OF.format(i) for i in ids]),
        st.uuids().map(str),
        st.sampled_from(
            ["", " ", "0", "-1", "1", "2.5", "nan", "inf", "-inf", "1e309", str(2**64),
             str(10**30), "9" * 50, "head", "base", "-", "--", "html", "csv", "json", "x" * 300,
             "out.html", "sub/out.csv", "d\u00e9j\u00e0-vu", "\u202e", "\U0001f510"]
        ),
    )


@st.composite
def argvs(draw: st.DrawFn, w: World, path: tuple[str, ...], command: click.Command
          ) -> list[str]:
    own = [p for p in command.params if isinstance(p, click.Option)]
    argv = list(path)
    for param in own:
        # Required options are usually there, or every run would stop at "missing option".
        if param.required and draw(st.integers(0, 9)) > 0:
            argv += [param.opts[0], draw(values(w))]
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["own", "own", "own", "own", "other", "garbage", "missing"]))
        if kind in ("own", "missing") and own:
            param = draw(st.sampled_from(own))
            argv.append(draw(st.sampled_from([*param.opts, *param.secondary_opts])))
            if kind == "own" and not param.is_flag:
                argv.append(draw(values(w)))
        elif kind == "other":
            argv.append(draw(st.sampled_from(ALL_OPTIONS)))
            if draw(st.booleans()):
                argv.append(draw(values(w)))
        else:
            argv.append(draw(st.one_of(
                safe_text(), st.sampled_from(["-h", "--help", "--version", "-x", "--nope", "--"])
            )))
    return argv


def _rows(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM rotations").fetchone()[0])
        except sqlite3.OperationalError:  # not migrated yet
            return 0


@dataclass(frozen=True)
class Snapshot:
    rows: int
    credentials: Mapping[str, frozenset[str]]
    secrets: Mapping[str, int]


def snapshot(w: World) -> Snapshot:
    return Snapshot(
        rows=_rows(w.db_path),
        credentials={a.app_id: frozenset(p.key_id for p in w.emu.tenant.passwords(a.app_id))
                     for a in w.apps},
        secrets={name: len(w.emu.tenant.vault.versions(name))
                 for a in w.apps for name in (a.secret_name, f"{a.secret_name}-next")},
    )


def invoke(argv: list[str], env: Mapping[str, str | None], cwd: Path) -> Result:
    runner = CliRunner()
    before = Path.cwd()
    os.chdir(cwd)  # relative --output paths land in the throwaway directory
    try:
        return runner.invoke(cli, argv, env=dict(env), catch_exceptions=True,
                             prog_name="rotator")
    finally:
        os.chdir(before)


def check(w: World, argv: list[str], result: Result) -> None:
    shown = f"argv={argv!r}\nexit={result.exit_code}\n{result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{shown}\n{type(result.exception).__name__}: {result.exception}"
    )
    assert result.exit_code in (0, 1, 2), shown
    assert "Traceback" not in result.output, shown
    # Settings errors in rotator's words, not pydantic's report.
    assert "errors.pydantic.dev" not in result.output and "Value error," not in result.output
    if result.exit_code == 0 and flag_given(argv, "--json"):
        json.loads(result.stdout)  # --json means the whole of stdout is JSON
    # Secrets stay out of what the admin sees (invariant 2), new ones included.
    secrets = [w.emu.tenant.rotator_secret, CANARY]
    secrets += [p.secret_text for a in w.apps for p in w.emu.tenant.passwords(a.app_id)]
    assert not [s for s in secrets if s and s in result.output], shown
    if result.exit_code != 0:
        assert result.output.strip(), f"a failure must say why\n{shown}"


def flag_given(argv: list[str], flag: str) -> bool:
    """``flag`` given as a flag (not as some option's value), with no help or version."""
    if {"-h", "--help", "--version", "--"} & set(argv):
        return False
    return any(a == flag and (i == 0 or argv[i - 1] not in TAKES_VALUE)
               for i, a in enumerate(argv))


FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ============================================================================ the properties


@pytest.mark.parametrize(("path", "command"), COMMANDS,
                         ids=[" ".join(path) for path, _ in COMMANDS])
@FUZZ
@given(data=st.data())
def test_any_arguments_exit_cleanly(world: World, path: tuple[str, ...],
                                    command: click.Command, data: st.DataObject) -> None:
    argv = resolve(world, data.draw(argvs(world, path, command), label="argv"))
    env_name = data.draw(st.just("good") | st.sampled_from(sorted(world.envs)),
                         label="environment")
    before = snapshot(world)
    result = invoke(argv, world.envs[env_name], world.cwd)
    event(f"exit {result.exit_code}")
    check(world, argv, result)
    after = snapshot(world)
    rotating = bool(argv) and argv[0] == "rotate"
    dry_run = flag_given(argv, "--dry-run")
    if not rotating or result.exit_code != 0 or dry_run:
        # Only a rotate that succeeded may change the tenant or the vault.
        assert after.credentials == before.credentials, argv
        assert after.secrets == before.secrets, argv
    if not rotating or result.exit_code == 2 or dry_run:
        # A failed rotation is recorded (exit 1); a refused or pretend one is not.
        assert after.rows == before.rows, argv


def rotate_args(w: World) -> st.SearchStrategy[list[str]]:
    return st.lists(
        st.one_of(
            st.sampled_from(["--app", "--credential", "--dry-run", "--retire-now", "--json"]),
            st.sampled_from([KEY_OF.format(a.app_id) for a in w.apps]),
            safe_text(8),
        ),
        max_size=5,
    )


@settings(FUZZ, max_examples=100)
@given(data=st.data())
@example(data=None)
def test_refused_rotate_changes_nothing(world: World, data: st.DataObject | None) -> None:
    if data is None:  # no tenant id: refused before anything is written
        argv = ["rotate", "--app", world.managed.app_id]
        env = world.envs["no tenant"]
    else:
        target = data.draw(st.sampled_from(
            [world.managed.app_id, world.unmanaged.app_id, world.not_owned.app_id,
             str(uuid.uuid4()), "not-a-guid", ""]
        ), label="app")
        argv = resolve(world, ["rotate", "--app", target,
                               *data.draw(rotate_args(world), label="more")])
        env = world.envs[data.draw(st.just("good") | st.sampled_from(sorted(world.envs)),
                                   label="environment")]
    before = snapshot(world)
    result = invoke(argv, env, world.cwd)
    event(f"exit {result.exit_code}")
    check(world, argv, result)
    after = snapshot(world)
    if result.exit_code != 0:
        assert after.credentials == before.credentials, argv
        assert after.secrets == before.secrets, argv
    if result.exit_code == 2:
        assert after.rows == before.rows, argv


# ============================================================================ named cases

CASES = [
    # (argv, environment, exit code, words the message must hold)
    (["scan"], "no tenant", 2, "AZURE_TENANT_ID"),
    (["rotate", "--app", "{managed}"], "no tenant", 2, "AZURE_TENANT_ID"),
    (["scan", "--within-days", "nan"], "good", 2, "--within-days"),
    (["scan", "--within-days", "1e309"], "good", 2, "--within-days"),
    (["history", "--limit", str(2**64)], "good", 2, "--limit"),
    (["history", "--limit", "-5"], "good", 2, "--limit"),
    (["history", "--app", "not-a-guid"], "good", 2, "--app"),
    (["rotate", "--app", "not-a-guid"], "good", 2, "--app"),
    (["rotate", "--app", ""], "good", 2, "--app"),
    (["serve", "--port", "70000"], "good", 2, "--port"),
    (["status"], "bad settings", 2, "ROTATOR_HTTP_PORT"),
    (["status"], "binary env file", 2, "ROTATOR_ENV_FILE"),
    (["status"], "bad policy", 2, "lifetime_dayz"),
    (["status"], "database dir missing", 1, "ROTATOR_DATABASE_URL"),
]


@pytest.mark.parametrize(("argv", "env_name", "code", "words"), CASES,
                         ids=[" ".join(c[0]) + f" [{c[1]}]" for c in CASES])
def test_named_refusals(world: World, argv: list[str], env_name: str, code: int,
                        words: str) -> None:
    argv = [a.replace("{managed}", world.managed.app_id) for a in argv]
    before = snapshot(world)
    result = invoke(argv, world.envs[env_name], world.cwd)
    check(world, argv, result)
    assert result.exit_code == code, result.output
    assert words in result.output
    assert snapshot(world) == before


def test_refusal_before_the_tenant_writes_no_database(world: World) -> None:
    fresh = world.root / "fresh.db"
    env = {**world.envs["no tenant"], "ROTATOR_DATABASE_URL": f"sqlite:///{fresh}"}
    result = invoke(["rotate", "--app", world.managed.app_id], env, world.cwd)
    assert result.exit_code == 2, result.output
    assert not fresh.exists()



@pytest.mark.parametrize("argv", [
    ["status", "--json"], ["history", "--json", "--limit", "5"], ["scan", "--json"],
    ["alerts", "run", "--json"], ["alerts", "test", "--json"],
    ["rotate", "--app", "{managed}", "--dry-run", "--json"],
])
def test_json_means_json(world: World, argv: list[str]) -> None:
    argv = [a.replace("{managed}", world.managed.app_id) for a in argv]
    result = invoke(argv, world.envs["good"], world.cwd)
    check(world, argv, result)
    assert result.exit_code == 0, result.output
    assert flag_given(argv, "--json")
    json.loads(result.stdout)
