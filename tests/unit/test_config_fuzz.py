"""Property-based fuzzing of the policy file and the environment settings.

The promise: whatever is in the file or the environment, loading either succeeds with
a policy that keeps the documented rules, or raises ConfigError whose message names
the file, the line and the key. Any other exception is a bug.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from rotator.config import (
    KEYS,
    MAX_SECRET_NAME,
    SETTINGS_ENV,
    AppPolicy,
    ChannelType,
    ConfigError,
    DigestMode,
    KeyType,
    KeyVaultFormat,
    Policy,
    Settings,
    check_vault_url,
    load_policy,
    load_settings,
)
from rotator.domain.credentials import CredentialKind

FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

APP_IDS = (
    "11111111-2222-3333-4444-555555555555",
    "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    "0f0f0f0f-0000-4000-8000-00000000abcd",
)
GOOD_VAULTS = (
    "https://myvault.vault.azure.net",
    "https://MyVault.vault.azure.net/",
    "https://127.0.0.1:8443",
    "https://kv.vault.usgovcloudapi.net",
    "https://[::1]:8443",
)
BAD_VAULTS = (
    "http://myvault.vault.azure.net",
    "ftp://myvault.vault.azure.net",
    "https://",
    "https://[",
    "https://[::1",
    "myvault.vault.azure.net",
    "https://myvault.vault.azure.net/secrets/orders",
    "https://myvault.vault.azure.net?api-version=7.4",
    "https://myvault.vault.azure.net#frag",
    "https://user:pw@myvault.vault.azure.net",
    "https://myvault.vault.azure.net:99999",
    "https://myvault.vault.azure.net:0",
    "https://myvault.vault.azure.net:port",
    "https://my vault.vault.azure.net",
    "https://mývault.vault.azure.net",
    "",
    "   ",
)
SECRET_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
GUID_LOWER = re.compile(r"^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$")
HERE = Path(__file__)


# ============================================================================ TOML writing


def toml_str(value: str) -> str:
    """A TOML basic string; raw unicode stays raw so the file itself carries it."""
    out = []
    for ch in value:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_str(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {type(value).__name__}")


def _is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def toml_doc(doc: Mapping[str, Any]) -> str:
    """A document with real [table] and [[array]] headers, like people write them."""
    lines: list[str] = []

    def table(path: list[str], body: Mapping[str, Any]) -> None:
        for key, value in body.items():
            if not isinstance(value, dict) and not _is_table_array(value):
                lines.append(f"{toml_key(key)} = {toml_value(value)}")
        for key, value in body.items():
            name = ".".join(toml_key(p) for p in [*path, key])
            if isinstance(value, dict):
                lines.append(f"[{name}]")
                table([*path, key], value)
            elif _is_table_array(value):
                for item in value:
                    lines.append(f"[[{name}]]")
                    # Nested tables inside an array element are written inline.
                    lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in item.items())

    table([], doc)
    return "\n".join(lines) + "\n"


# ============================================================================ strategies

scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [datetime(2030, 1, 1, tzinfo=UTC), date(2030, 1, 1), time(7, 32), datetime(2030, 1, 1)]
    ),
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
numbers = st.one_of(
    st.integers(min_value=-5, max_value=400),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.0, max_value=4000.0),
)


def cased(value: str) -> st.SearchStrategy[str]:
    return st.sampled_from([value, value.upper(), value.lower(), value.title(), f" {value} "])


app_ids = st.one_of(
    st.sampled_from(APP_IDS).flatmap(cased),
    st.sampled_from(
        [
            "{11111111-2222-3333-4444-555555555555}",
            "11111111-2222-3333-4444-55555555555",
            "11111111222233334444555555555555",
            "urn:uuid:11111111-2222-3333-4444-555555555555",
            "gggggggg-2222-3333-4444-555555555555",
            "",
        ]
    ),
    st.uuids().map(str),
)
secret_names = st.one_of(
    st.from_regex(r"[0-9a-zA-Z-]{1,8}", fullmatch=True),
    st.sampled_from(
        ["orders", "ORDERS", "orders-next", "Orders-Next", "a" * 122, "a" * 123, "a" * 127,
         "a" * 128, "bad_name!", "名前", "", "-", "x.y", "with space"]
    ),
    st.text(max_size=12),
)
vault_urls = st.one_of(st.sampled_from(GOOD_VAULTS + BAD_VAULTS), st.text(max_size=30))
scopes = st.one_of(
    st.sampled_from(
        ["https://graph.microsoft.com/.default", "api://myapis/mywebapi/.default",
         "api://myapis/mywebapi", "/.default", "", "https://graph.microsoft.com/.default/"]
    ),
    st.text(max_size=20),
)


def choices(*values: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(values).flatmap(cased), st.text(max_size=10))


env_names = st.one_of(
    st.sampled_from(["ROTATOR_SLACK_URL", "_X", "1ABC", "A-B", "", "ÄNV"]),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True),
)
emails = st.sampled_from(["secops@example.com", "noat", "a@b", "<a@b>", "", "x @y"])

VALUES: dict[str, st.SearchStrategy[Any]] = {
    "app_id": app_ids,
    "secret_name": secret_names,
    "vault_url": vault_urls,
    "verify_scope": scopes,
    "credential": choices(*(k.value for k in CredentialKind), "password", "cert"),
    "key_type": choices(*(k.value for k in KeyType), "EC_P384", "rsa"),
    "key_vault_format": choices(*(k.value for k in KeyVaultFormat), "pfx"),
    "certificate_subject": st.text(max_size=12),
    "expected_roles": st.one_of(st.lists(st.text(max_size=8), max_size=3), st.text(max_size=8)),
    # [alerts]
    "thresholds_days": st.one_of(st.lists(numbers, max_size=4), numbers),
    "digest": choices(*(d.value for d in DigestMode), "weekly"),
    "prefer_certificates": st.one_of(st.booleans(), scalars),
    "include_findings": st.one_of(st.booleans(), scalars),
    # [[alerts.channel]]
    "type": choices(*(t.value for t in ChannelType), "email"),
    "name": st.one_of(st.from_regex(r"[A-Za-z0-9_.:-]{1,8}", fullmatch=True), st.text(max_size=70)),
    "url": st.one_of(
        st.sampled_from(["https://hooks.example.com/x", "http://127.0.0.1:9/x", "http://example.com",
                         "https://[", "hooks.example.com"]),
        st.text(max_size=20),
    ),
    "url_env": env_names,
    "password_env": env_names,
    "host": st.text(max_size=12),
    "username": st.text(max_size=12),
    "starttls": st.one_of(st.booleans(), scalars),
    "from": emails,
    "to": st.one_of(emails, st.lists(emails, max_size=3)),
    "ca_file": st.sampled_from([str(HERE), "/nonexistent/ca.pem", "", "x" * 300, str(HERE.parent)]),
}
UNKNOWN_KEYS = ["lifetime_dayz", "daemon", "secret", "password", "ké y", "", "a.b", "App_Id"]
DEFAULTS_KEYS = [*KEYS, *UNKNOWN_KEYS]
APP_KEYS = [*KEYS, *UNKNOWN_KEYS]
ALERTS_KEYS = ["thresholds_days", "digest", "max_lifetime_days", "prefer_certificates",
               "retrying_attempts", "lookback_days", "include_findings", "max_send_attempts",
               *UNKNOWN_KEYS]
CHANNEL_KEYS = ["type", "name", "thresholds_days", "timeout_seconds", "url", "url_env", "host",
                "port", "starttls", "username", "password_env", "from", "to", "ca_file",
                *UNKNOWN_KEYS]


def value_for(key: str) -> st.SearchStrategy[Any]:
    """Mostly plausible values for ``key`` (numbers for numeric keys), sometimes junk."""
    plausible = VALUES.get(key, numbers)
    return st.one_of(plausible, plausible, junk)


def tables(keys: list[str], *, required: tuple[str, ...] = ()) -> st.SearchStrategy[dict[str, Any]]:
    def build(chosen: list[str]) -> st.SearchStrategy[dict[str, Any]]:
        names = list(dict.fromkeys([*required, *chosen]))
        return st.fixed_dictionaries({k: value_for(k) for k in names})

    return st.lists(st.sampled_from(keys), unique=True, max_size=6).flatmap(build)


alerts_tables = st.builds(
    lambda body, channels: {**body, **({"channel": channels} if channels is not None else {})},
    tables(ALERTS_KEYS),
    st.none() | st.lists(tables(CHANNEL_KEYS, required=("type",)), max_size=3) | junk,
)
policy_docs = st.fixed_dictionaries(
    {},
    optional={
        "defaults": tables(DEFAULTS_KEYS) | junk,
        "app": st.lists(tables(APP_KEYS, required=("app_id",)) | tables(APP_KEYS), max_size=4)
        | junk,
        "alerts": alerts_tables | junk,
        "daemon": tables(["scan_interval_minutes", "lease_seconds"]),
        "apps": st.lists(tables(APP_KEYS), max_size=1),
    },
)
env_vaults = st.none() | st.sampled_from(GOOD_VAULTS + BAD_VAULTS)


# ============================================================================ checking

# How every problem line names its place: the file (and line), then the table and key.
WHERE = (
    r"(?:top-level key .+"
    r"|\[defaults\] key .+"
    r"|\[\[app\]\] #\d+(?: \([0-9a-f-]{36}\))?(?: key .+)?"
    r"|\[alerts\] key .+"
    r"|\[\[alerts\.channel\]\] #\d+(?: \(\w+\))?(?: key .+)?"
    r"|ROTATOR_VAULT_URL|app|defaults|alerts)"
)


def problems_of(exc: ConfigError, path: Path, text: str) -> list[tuple[int | None, str]]:
    """(line, problem) per reported problem, after checking the message's shape."""
    message = str(exc)
    assert "Traceback" not in message
    head, *items = message.split("\n")
    assert str(path) in head, message
    if not items:
        # Whole-file problems (unreadable, not TOML) say so and how to fix it.
        assert "cannot be read" in head or "not valid TOML" in head, message
        return []
    count = re.fullmatch(rf"policy file {re.escape(str(path))}: (\d+) problems?:", head)
    assert count is not None, message
    assert int(count.group(1)) == len(items) > 0, message
    n_lines = len(text.splitlines())
    found = []
    for item in items:
        m = re.fullmatch(
            rf"  {re.escape(str(path))}(?::(\d+))?: ({WHERE}): (\S.*)", item, flags=re.DOTALL
        )
        assert m is not None, f"problem does not name its place: {item!r}"
        line = int(m.group(1)) if m.group(1) else None
        assert line is None or 1 <= line <= n_lines, item
        found.append((line, item))
    return found


def vault_identity(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 443}"


def check_policy(policy: Policy) -> None:
    """The rules a loaded policy promises to keep."""
    owners: dict[tuple[str, str], str] = {}
    for app_id, app in policy.apps.items():
        assert app_id == app.app_id and GUID_LOWER.fullmatch(app_id)
        assert policy.for_app(f" {app_id.upper()} ") is app
        # Already normalised: checking again changes nothing.
        assert check_vault_url(app.vault_url) == app.vault_url
        parts = urlsplit(app.vault_url)
        assert parts.scheme == "https" and parts.hostname
        assert not (parts.path or parts.query or parts.fragment or parts.username)
        assert SECRET_NAME.fullmatch(app.secret_name)
        assert SECRET_NAME.fullmatch(app.staging_secret_name)
        assert isinstance(app.lifetime_days, int) and app.lifetime_days >= 1
        assert 0 < app.renew_before_days < app.lifetime_days
        assert 0 <= app.grace_hours <= 24 * 365
        assert isinstance(app.verify_successes, int) and app.verify_successes >= 1
        assert app.verify_timeout_seconds > 0
        assert app.verify_scope.endswith("/.default")
        assert app.certificate_subject.strip() == app.certificate_subject != ""
        assert all(r.strip() == r != "" for r in app.expected_roles)
        # Key Vault names are case-insensitive; no secret may belong to two apps, and
        # an app's staging secret must not be another app's consumer secret.
        for name in (app.secret_name, app.staging_secret_name):
            key = (vault_identity(app.vault_url), name.lower())
            assert owners.setdefault(key, app_id) == app_id, (key, owners[key], app_id)
    daemon = policy.daemon
    assert daemon.scan_interval_minutes > 0 and daemon.reconcile_interval_seconds > 0
    assert daemon.max_concurrent_rotations >= 1 and daemon.graph_writes_per_minute > 0
    assert daemon.lease_seconds > 0
    alerts = policy.alerts
    assert list(alerts.thresholds_days) == sorted(set(alerts.thresholds_days), reverse=True)
    assert all(0 < t <= 3650 for t in alerts.thresholds_days)
    names = [c.name for c in alerts.channels]
    assert len(names) == len(set(names))
    for channel in alerts.channels:
        if channel.type in (ChannelType.WEBHOOK, ChannelType.TEAMS, ChannelType.SLACK):
            assert (channel.url is None) != (channel.url_env is None)
        if channel.type is ChannelType.SMTP:
            assert channel.host and channel.sender and channel.to


def load(path: Path, text: str, vault_env: str | None) -> Policy | None:
    """load_policy, which may only return a policy or raise ConfigError."""
    path.write_text(text, encoding="utf-8")
    env = {"ROTATOR_VAULT_URL": vault_env} if vault_env is not None else {}
    try:
        policy = load_policy(path, load_settings(env))
    except ConfigError as exc:
        event(f"refused, {len(problems_of(exc, path, text))} problem(s) listed")
        return None
    event(f"loaded, {len(policy.apps)} app(s)")
    check_policy(policy)
    return policy


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("policy-fuzz")


# ============================================================================ policy: structure


@FUZZ
@given(doc=policy_docs, vault_env=env_vaults)
@example(doc={"defaults": {"renew_before_days": 10**400}}, vault_env=None)
@example(doc={"alerts": {"thresholds_days": [10**400]}}, vault_env=None)
@example(doc={"alerts": {"channel": [{"type": "smtp", "ca_file": "x" * 300}]}}, vault_env=None)
@example(doc={"defaults": {"vault_url": "https://["}}, vault_env=None)
@example(doc={}, vault_env="https://[")
def test_plausible_policy_loads_or_names_the_problem(
    fuzz_dir: Path, doc: dict[str, Any], vault_env: str | None
) -> None:
    load(fuzz_dir / "policy.toml", toml_doc(doc), vault_env)


def test_huge_number_is_a_range_error_not_a_crash(fuzz_dir: Path) -> None:
    path = fuzz_dir / "huge.toml"
    path.write_text("[defaults]\nlifetime_days = 180\nrenew_before_days = " + "9" * 400 + "\n")
    with pytest.raises(ConfigError) as info:
        load_policy(path, load_settings({}))
    assert f"{path}:3: [defaults] key 'renew_before_days': must be between 0 and 3650" in str(
        info.value
    )


def test_number_too_long_for_python_is_a_syntax_error_with_its_line(fuzz_dir: Path) -> None:
    # tomllib raises a bare ValueError (int() refuses more than 4300 digits).
    path = fuzz_dir / "longer.toml"
    path.write_text("[defaults]\n\nlifetime_days = " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError) as info:
        load_policy(path, load_settings({}))
    assert str(info.value).startswith(
        f"policy file {path} is not valid TOML: a number has too many digits (at line 3)"
    )


@pytest.mark.parametrize("url", [u for u in BAD_VAULTS if u.strip()])
def test_vault_url_that_is_not_a_vault_is_refused_with_an_example(
    fuzz_dir: Path, url: str
) -> None:
    path = fuzz_dir / "vault.toml"
    path.write_text(f"[defaults]\nvault_url = {toml_str(url)}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_policy(path, load_settings({}))
    message = str(info.value)
    assert f"{path}:2: [defaults] key 'vault_url': must be an https:// Key Vault URL" in message
    assert "https://myvault.vault.azure.net" in message


def test_staging_secret_of_one_app_cannot_be_the_secret_of_another(fuzz_dir: Path) -> None:
    path = fuzz_dir / "clash.toml"
    path.write_text(
        '[defaults]\nvault_url = "https://v.vault.azure.net"\n'
        f'[[app]]\napp_id = "{APP_IDS[0]}"\nsecret_name = "orders-next"\n'
        f'[[app]]\napp_id = "{APP_IDS[1]}"\nsecret_name = "ORDERS"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_policy(path, load_settings({}))
    message = str(info.value)
    assert f"{path}:8: [[app]] #2 key 'secret_name'" in message
    assert "orders-next" in message and APP_IDS[0] in message


def test_same_vault_spelt_differently_is_one_vault(fuzz_dir: Path) -> None:
    path = fuzz_dir / "spelling.toml"
    path.write_text(
        f'[[app]]\napp_id = "{APP_IDS[0]}"\nsecret_name = "orders"\n'
        'vault_url = "https://V.vault.azure.net"\n'
        f'[[app]]\napp_id = "{APP_IDS[1]}"\nsecret_name = "orders"\n'
        'vault_url = "https://v.vault.azure.net:443/"\n'
    )
    with pytest.raises(ConfigError, match=r"\[\[app\]\] #2 key 'secret_name'"):
        load_policy(path, load_settings({}))


def test_bad_default_vault_is_reported_once_not_per_app(fuzz_dir: Path) -> None:
    path = fuzz_dir / "once.toml"
    path.write_text(
        '[defaults]\nvault_url = "http://v.vault.azure.net"\n'
        f'[[app]]\napp_id = "{APP_IDS[0]}"\n[[app]]\napp_id = "{APP_IDS[1]}"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_policy(path, load_settings({}))
    assert str(info.value).startswith(f"policy file {path}: 1 problem:")


def test_daemon_table_points_to_defaults(fuzz_dir: Path) -> None:
    path = fuzz_dir / "daemon.toml"
    path.write_text("[daemon]\nscan_interval_minutes = 5\n")
    with pytest.raises(ConfigError) as info:
        load_policy(path, load_settings({}))
    assert f"{path}:1: top-level key 'daemon'" in str(info.value)
    assert "scan_interval_minutes belong in [defaults]: move them there" in str(info.value)


def test_byte_order_mark_is_allowed(fuzz_dir: Path) -> None:
    # Windows editors save UTF-8 with a BOM; TOML itself would call it a syntax error.
    path = fuzz_dir / "bom.toml"
    path.write_bytes(f'\ufeff[[app]]\napp_id = "{APP_IDS[0]}"\n'.encode())
    policy = load_policy(path, load_settings({"ROTATOR_VAULT_URL": GOOD_VAULTS[0]}))
    assert set(policy.apps) == {APP_IDS[0]}


# ============================================================================ policy: one fault

BASE_SECTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    # section -> (header, keys and good values)
    "defaults": (
        "[defaults]",
        {"vault_url": "https://myvault.vault.azure.net", "lifetime_days": 180,
         "renew_before_days": 30, "verify_successes": 3, "scan_interval_minutes": 15},
    ),
    "app1": (
        "[[app]]",
        {"app_id": APP_IDS[0], "secret_name": "orders-client-secret",
         "verify_scope": "api://myapis/mywebapi/.default", "expected_roles": ["ReadOnly"]},
    ),
    "app2": ("[[app]]", {"app_id": APP_IDS[1], "credential": "certificate"}),
    "alerts": ("[alerts]", {"thresholds_days": [30, 14, 7, 1], "digest": "daily"}),
    "webhook": (
        "[[alerts.channel]]", {"type": "webhook", "name": "hook", "url_env": "ROTATOR_HOOK_URL"}
    ),
    "smtp": (
        "[[alerts.channel]]",
        {"type": "smtp", "host": "smtp.example.com", "port": 587, "from": "r@example.com",
         "to": ["secops@example.com"], "username": "rotator", "password_env": "ROTATOR_SMTP_PW"},
    ),
}
LABELS = {
    "defaults": "[defaults]", "app1": "[[app]] #1", "app2": "[[app]] #2", "alerts": "[alerts]",
    "webhook": "[[alerts.channel]] #1", "smtp": "[[alerts.channel]] #2",
}
SECTION_KEYS = {
    "defaults": [k for k, spec in KEYS.items() if spec.in_defaults],
    "app1": [k for k, spec in KEYS.items() if spec.in_app and k != "app_id"],
    "app2": [k for k, spec in KEYS.items() if spec.in_app],
    "alerts": ALERTS_KEYS[:8],
    "webhook": ["name", "thresholds_days", "timeout_seconds", "url_env", "type"],
    "smtp": ["name", "thresholds_days", "timeout_seconds", "host", "port", "starttls",
             "username", "password_env", "from", "to", "ca_file"],
}

# Keys that do not belong where they are written: wrong whatever their value.
MISPLACED = {
    "defaults": ["app_id", "secret_name", "lifetime_dayz", "ké y", "", "password"],
    "app1": ["scan_interval_minutes", "lease_seconds", "lifetime_dayz", "App_Id"],
    "app2": ["max_concurrent_rotations", "graph_writes_per_minute", "ké y"],
    "alerts": ["threshold_days", "lifetime_days", "ké y"],
    "webhook": ["host", "url", "password", "secret", "to", "ké y"],
    "smtp": ["url", "url_env", "token", "password", "ké y"],
}

not_str = st.one_of(st.integers(), st.booleans(), st.lists(st.integers(), max_size=2),
                    st.just({"a": 1}))
not_number = st.one_of(st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2))
out_of_range = st.one_of(
    st.integers(min_value=10**7), st.integers(max_value=-1), st.floats(max_value=-0.01),
    st.floats(min_value=1e7), st.just(math.nan), st.just(math.inf),
)
BAD: dict[str, st.SearchStrategy[Any]] = {
    "app_id": st.one_of(not_str, st.text(max_size=20).filter(lambda s: s.strip() not in APP_IDS)),
    "secret_name": st.one_of(
        not_str,
        st.text(min_size=1, max_size=10).filter(lambda s: not SECRET_NAME.fullmatch(s)),
        st.integers(min_value=MAX_SECRET_NAME - 4, max_value=400).map(lambda n: "a" * n),
    ),
    "vault_url": st.one_of(not_str, st.sampled_from(BAD_VAULTS)),
    "verify_scope": st.one_of(not_str, st.text(max_size=10).filter(lambda s: "/.default" not in s)),
    "credential": st.one_of(not_str, st.sampled_from(["password", "cert", ""])),
    "key_type": st.one_of(not_str, st.sampled_from(["EC_P384", "rsa", ""])),
    "key_vault_format": st.one_of(not_str, st.sampled_from(["pfx", "der"])),
    "certificate_subject": st.one_of(not_str, st.sampled_from(["", "   "])),
    "expected_roles": st.one_of(st.integers(), st.text(max_size=4), st.just([""]), st.just([1])),
    "thresholds_days": st.one_of(
        # not_number's lists of integers can be a valid list of thresholds ([1]).
        st.text(max_size=5), st.booleans(), st.just([]), st.just(["7"]),
        st.lists(out_of_range, min_size=1, max_size=3),
        st.just([7, 7]), st.just([0]),
    ),
    "digest": st.one_of(not_str, st.sampled_from(["weekly", ""])),
    "prefer_certificates": st.one_of(st.integers(), st.text(max_size=4)),
    "include_findings": st.one_of(st.integers(), st.text(max_size=4)),
    "starttls": st.one_of(st.integers(), st.text(max_size=4)),
    "type": st.one_of(not_str, st.sampled_from(["email", "", "sms"])),
    "name": st.one_of(not_str, st.sampled_from(["", "a b", "x" * 65, "é"])),
    "url_env": st.one_of(not_str, st.sampled_from(["", "1X", "A-B", "A B"])),
    "password_env": st.one_of(not_str, st.sampled_from(["", "1X", "A-B"])),
    "host": st.one_of(not_str, st.sampled_from(["", "  "])),
    "username": st.one_of(not_str, st.sampled_from(["", "  "])),
    "from": st.one_of(not_str, st.sampled_from(["", "noat", "a@b@c"])),
    "to": st.one_of(st.integers(), st.just([]), st.just(["noat"]), st.just([1])),
    "ca_file": st.one_of(not_str, st.sampled_from(["", "/nonexistent/ca.pem", "x" * 300])),
}


def bad_value(key: str) -> st.SearchStrategy[Any]:
    if key in BAD:
        return BAD[key]
    # Every other key is a number with a range; whole-number keys also refuse fractions.
    spec = KEYS.get(key)
    whole = key in ("lifetime_days", "verify_successes", "max_concurrent_rotations",
                    "max_lifetime_days", "retrying_attempts", "max_send_attempts", "port")
    wrong = st.one_of(not_number, out_of_range)
    if whole:
        wrong = st.one_of(wrong, st.floats(min_value=1.5, max_value=9.5))
    if spec is not None and key in ("renew_before_days", "verify_timeout_seconds",
                                    "scan_interval_minutes", "reconcile_interval_seconds",
                                    "graph_writes_per_minute", "lease_seconds"):
        wrong = st.one_of(wrong, st.just(0))
    if key in ("lookback_days", "timeout_seconds", "lifetime_days"):
        wrong = st.one_of(wrong, st.just(0))
    return wrong


def render_base(section: str, key: str, value: Any) -> tuple[str, int]:
    """The base policy with ``key = value`` in ``section``; (text, line of that key)."""
    lines: list[str] = []
    fault_line = 0
    for name, (header, body) in BASE_SECTIONS.items():
        lines.append(header)
        items = dict(body)
        if name == section:
            items[key] = value
        for k, v in items.items():
            lines.append(f"{toml_key(k)} = {toml_value(v)}")
            if name == section and k == key:
                fault_line = len(lines)
        lines.append("")
    return "\n".join(lines), fault_line


def test_base_policy_is_valid(fuzz_dir: Path) -> None:
    text, _ = render_base("defaults", "grace_hours", 12)
    path = fuzz_dir / "base.toml"
    path.write_text(text, encoding="utf-8")
    policy = load_policy(path, load_settings({}))
    check_policy(policy)
    assert len(policy.apps) == 2 and len(policy.alerts.channels) == 2


section_and_key = st.sampled_from(sorted(SECTION_KEYS)).flatmap(
    lambda s: st.tuples(st.just(s), st.sampled_from(SECTION_KEYS[s] + MISPLACED[s]))
)


@FUZZ
@given(where=section_and_key, data=st.data())
@example(where=("defaults", "vault_url"), data=None)
@example(where=("smtp", "ca_file"), data=None)
@example(where=("alerts", "thresholds_days"), data=None)
@example(where=("defaults", "verify_scope"), data=None)
def test_one_bad_value_is_one_problem_at_its_key_and_line(
    fuzz_dir: Path, where: tuple[str, str], data: st.DataObject | None
) -> None:
    section, key = where
    if data is None:  # the explicit examples: their worst known value
        value: Any = {"vault_url": "https://[", "ca_file": "x" * 300,
                      "thresholds_days": [10**400], "verify_scope": "0\n"}[key]
    else:
        wrong = junk if key in MISPLACED[section] else bad_value(key)
        value = data.draw(wrong, label="value")
    text, line = render_base(section, key, value)
    path = fuzz_dir / "one.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_policy(path, load_settings({}))
    problems = problems_of(info.value, path, text)
    assert len(problems) == 1, str(info.value)
    got_line, item = problems[0]
    assert got_line == line, item
    assert f"{LABELS[section]}" in item and f"key {key!r}" in item, item


# ============================================================================ policy: valid ones

good_numbers: dict[str, st.SearchStrategy[Any]] = {
    "renew_before_days": st.one_of(st.integers(1, 400), st.floats(0.001, 400)),
    "lifetime_days": st.integers(1, 3650),
    "grace_hours": st.one_of(st.integers(0, 8760), st.floats(0, 8760)),
    "verify_successes": st.integers(1, 100),
    "verify_timeout_seconds": st.one_of(st.integers(1, 86400), st.floats(0.5, 86400)),
}
good_app_values: dict[str, st.SearchStrategy[Any]] = {
    **good_numbers,
    "vault_url": st.sampled_from(GOOD_VAULTS),
    "secret_name": st.one_of(
        st.from_regex(r"[0-9a-zA-Z][0-9a-zA-Z-]{0,10}", fullmatch=True),
        st.sampled_from(["orders", "ORDERS", "orders-next", "a" * (MAX_SECRET_NAME - 5)]),
    ),
    "verify_scope": st.sampled_from(
        ["https://graph.microsoft.com/.default", "api://myapis/mywebapi/.default"]
    ),
    "credential": st.sampled_from(["secret", "certificate", " Secret "]),
    "key_type": st.sampled_from([k.value.lower() for k in KeyType]),
    "key_vault_format": st.sampled_from(["pem", "PKCS12"]),
    "certificate_subject": st.sampled_from(["CN=rotator", " CN=x, O=y ", "CN=ünïcode"]),
    "expected_roles": st.lists(st.sampled_from(["ReadOnly", " Admin "]), max_size=2),
}


def good_table(keys: dict[str, st.SearchStrategy[Any]], **required: st.SearchStrategy[Any]
               ) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(required, optional=keys)


valid_ish_docs = st.fixed_dictionaries(
    {
        "defaults": good_table({**good_app_values, "scan_interval_minutes": st.integers(1, 60)}
                               ) .map(lambda d: {k: v for k, v in d.items() if k != "secret_name"}),
        "app": st.lists(
            good_table(
                good_app_values,
                # Mostly distinct apps; now and then the same one again in another case.
                app_id=st.one_of(st.uuids().map(str), st.sampled_from(APP_IDS).flatmap(cased)),
            ),
            max_size=4,
        ),
    }
)


@FUZZ
@given(doc=valid_ish_docs, vault_env=st.sampled_from(GOOD_VAULTS) | st.none())
@example(
    doc={"defaults": {}, "app": [{"app_id": APP_IDS[0], "secret_name": "orders-next"},
                                 {"app_id": APP_IDS[1], "secret_name": "ORDERS"}]},
    vault_env=GOOD_VAULTS[0],
)
@example(
    doc={"defaults": {}, "app": [
        {"app_id": APP_IDS[0], "secret_name": "orders", "vault_url": "https://V.vault.azure.net"},
        {"app_id": APP_IDS[1], "secret_name": "orders",
         "vault_url": "https://v.vault.azure.net:443/"},
    ]},
    vault_env=None,
)
def test_what_loads_keeps_the_rules_and_round_trips(
    fuzz_dir: Path, doc: dict[str, Any], vault_env: str | None
) -> None:
    path = fuzz_dir / "valid.toml"
    policy = load(path, toml_doc(doc), vault_env)
    if policy is None:
        return
    # Writing every resolved value back out gives the same apps.
    again = toml_doc({"app": [app_table(a) for a in policy.apps.values()]})
    reloaded = load(fuzz_dir / "again.toml", again, None)
    assert reloaded is not None and dict(reloaded.apps) == dict(policy.apps)


def app_table(app: AppPolicy) -> dict[str, Any]:
    table: dict[str, Any] = {
        "app_id": app.app_id, "vault_url": app.vault_url, "secret_name": app.secret_name,
        "renew_before_days": app.renew_before_days, "lifetime_days": app.lifetime_days,
        "grace_hours": app.grace_hours, "verify_scope": app.verify_scope,
        "verify_successes": app.verify_successes,
        "verify_timeout_seconds": app.verify_timeout_seconds,
        "key_type": app.key_type.value, "certificate_subject": app.certificate_subject,
        "key_vault_format": app.key_vault_format.value,
        "expected_roles": list(app.expected_roles),
    }
    if app.credential is not None:
        table["credential"] = app.credential.value
    return table


# ============================================================================ policy: any bytes

toml_fragments = st.sampled_from(
    ["[defaults]", "[[app]]", "[alerts]", "[[alerts.channel]]", "[ app ]", "[[ 'app' ]]",
     f'app_id = "{APP_IDS[0]}"', f'app_id = "{APP_IDS[0].upper()}"', 'secret_name = "x_y"',
     "lifetime_days = 0", "renew_before_days = 1e999", 'vault_url = "http://x"', "x = ",
     "= 1", "[", "]]", "'''", '"', "# comment", "type = 'smtp'", "app = 1", "defaults = []",
     "alerts.channel = 3", "\ufeff", "\x00", "é = 1", '"ké y" = 2']
)


@FUZZ
@given(content=st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.lists(toml_fragments, max_size=10).map(lambda xs: "\n".join(xs).encode()),
))
@example(content=b"\xff\xfe[defaults]")
@example(content=b"")
@example(content=b"[defaults]\nlifetime_days = " + b"9" * 5000)
def test_any_bytes_load_or_give_a_config_error(fuzz_dir: Path, content: bytes) -> None:
    path = fuzz_dir / "bytes.toml"
    path.write_bytes(content)
    try:
        policy = load_policy(path, load_settings({"ROTATOR_VAULT_URL": GOOD_VAULTS[0]}))
    except ConfigError as exc:
        problems_of(exc, path, content.decode("utf-8", errors="replace"))
    else:
        check_policy(policy)


@pytest.mark.parametrize("path", ["\x00", "x" * 300, "/nonexistent/policy.toml", "."])
def test_unusable_policy_path_is_a_config_error(path: str) -> None:
    with pytest.raises(ConfigError, match="ROTATOR_CONFIG"):
        load_policy(path, load_settings({}))


# ============================================================================ settings

CANARY = "CANARY-client-secret-7f3a"


def env_value(var: str) -> st.SearchStrategy[str]:
    common = st.one_of(st.text(max_size=20), st.sampled_from(["", " ", "\x00", "x" * 300]))
    specific = {
        "ROTATOR_HTTP_PORT": st.sampled_from(["0", "1", "65535", "65536", "-1", "1e3", "80.0",
                                              " 8080 ", "9" * 5000, "0x50"]),
        "ROTATOR_LOG_FORMAT": st.sampled_from(["auto", "json", "console", "JSON", "text"]),
        "ROTATOR_LOG_LEVEL": st.sampled_from(["debug", " INFO ", "warn", "TRACE", "10"]),
        "ROTATOR_AUTHORITY_HOST": st.sampled_from(GOOD_VAULTS + BAD_VAULTS),
        "ROTATOR_GRAPH_URL": st.sampled_from(GOOD_VAULTS + BAD_VAULTS),
        "ROTATOR_VAULT_URL": st.sampled_from(GOOD_VAULTS + BAD_VAULTS),
        "ROTATOR_CA_BUNDLE": st.sampled_from([str(HERE), str(HERE.parent), "/nonexistent",
                                              "x" * 300]),
        "ROTATOR_CONFIG": st.sampled_from([str(HERE.parent), "/nonexistent", "x" * 300]),
        "ROTATOR_ENV_FILE": st.sampled_from([str(HERE), str(HERE.parent), "/nonexistent",
                                             "x" * 300, "\x00"]),
        "AZURE_CLIENT_SECRET": st.just(CANARY),
    }.get(var)
    return common if specific is None else st.one_of(specific, common)


environments = st.lists(
    st.sampled_from([*SETTINGS_ENV.values(), "ROTATOR_UNKNOWN", "PATH"]), unique=True, max_size=5
).flatmap(lambda names: st.fixed_dictionaries({n: env_value(n) for n in names}))


def check_settings_error(exc: ConfigError) -> None:
    message = str(exc)
    assert CANARY not in message
    assert "Traceback" not in message
    if message.startswith("invalid settings:"):
        body = message.removeprefix("invalid settings:")
        problems = body.split("\n  ")[1:] if body.startswith("\n") else [body.strip()]
        for problem in problems:
            name, _, what = problem.partition(": ")
            assert name in SETTINGS_ENV.values() and what.strip(), message
            assert "Value error" not in what, message
    else:
        assert message.startswith("ROTATOR_ENV_FILE "), message


@FUZZ
@given(env=environments)
@example(env={"ROTATOR_CA_BUNDLE": "x" * 300})
@example(env={"ROTATOR_ENV_FILE": "\x00"})
@example(env={"ROTATOR_ENV_FILE": str(HERE.parent)})
def test_environment_gives_settings_or_a_readable_error(env: dict[str, str]) -> None:
    try:
        s = load_settings(env)
    except ConfigError as exc:
        check_settings_error(exc)
        return
    assert isinstance(s, Settings)
    assert 1 <= s.http_port <= 65535
    assert s.authority_host.startswith("https://") and s.graph_url.startswith("https://")
    assert s.ca_bundle is None or s.ca_bundle.is_file()
    assert CANARY not in repr(s)


@FUZZ
@given(content=st.one_of(
    st.binary(max_size=120),
    st.lists(st.sampled_from(["A=1", "export B = '2'", "ROTATOR_HTTP_PORT=x", "=", "# c", "",
                              "ROTATOR_LOG_LEVEL=\"debug\"", "1X=2", "noequals", "\ufeffA=1",
                              f"AZURE_CLIENT_SECRET={CANARY}"]), max_size=6)
    .map(lambda xs: "\n".join(xs).encode()),
))
@example(content=b"\xff\xfeA=1")
def test_any_env_file_gives_settings_or_a_readable_error(fuzz_dir: Path, content: bytes) -> None:
    path = fuzz_dir / "rotator.env"
    path.write_bytes(content)
    try:
        load_settings({"ROTATOR_ENV_FILE": str(path)})
    except ConfigError as exc:
        check_settings_error(exc)
        assert str(path) in str(exc) or str(exc).startswith("invalid settings:")


def test_binary_env_file_names_the_file_and_the_fix(fuzz_dir: Path) -> None:
    path = fuzz_dir / "binary.env"
    path.write_bytes(b"\x7fELF\xff\xfe\x00")
    with pytest.raises(ConfigError) as info:
        load_settings({"ROTATOR_ENV_FILE": str(path)})
    assert str(info.value).startswith(f"ROTATOR_ENV_FILE names {path}, which cannot be read")

