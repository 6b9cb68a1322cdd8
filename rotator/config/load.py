"""Loading the TOML policy file: every problem is reported at once, with its line."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from rotator.config import checks
from rotator.config.alerts import parse_alerts
from rotator.config.api import parse_api
from rotator.config.checks import check_vault_url
from rotator.config.errors import ConfigError
from rotator.config.files import read_error, read_text
from rotator.config.hooks import HookPolicy, parse_hooks
from rotator.config.policy import (
    APP_KEYS,
    DEFAULTS_KEYS,
    KEYS,
    KEYVAULT_KEY_TYPES,
    AppDefaults,
    AppPolicy,
    DaemonPolicy,
    KeySource,
    KeyVaultFormat,
    Policy,
    default_secret_name,
)
from rotator.config.problems import Problems, suggest
from rotator.config.settings import Settings
from rotator.domain.retirement import RetireRule

_TOP_KEYS: Final = ("defaults", "app", "alerts", "api")


def empty_policy(settings: Settings | None = None) -> Policy:
    vault = settings.vault_url if settings is not None else None
    return Policy(
        defaults=AppDefaults(vault_url=vault), daemon=DaemonPolicy(), apps=MappingProxyType({})
    )


def load_policy(path: str | os.PathLike[str] | None, settings: Settings) -> Policy:
    """The policy in the TOML file at ``path``; no path means nothing is managed."""
    if path is None or str(path) == "":
        policy = empty_policy(settings)
        if settings.vault_url is not None:
            try:
                check_vault_url(settings.vault_url)
            except ValueError as exc:
                raise ConfigError(f"ROTATOR_VAULT_URL {exc}") from None
        return policy
    file = Path(path)
    try:
        text = read_text(file)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"policy file {file} cannot be read ({read_error(exc)}); set ROTATOR_CONFIG to the "
            "path of a readable TOML policy file, or unset it to manage no apps"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"policy file {file} is not valid TOML: {exc}; fix the syntax there"
        ) from None
    except ValueError:
        # tomllib lets int() refuse a number with more digits than Python converts.
        long_number = re.search(r"\d{4301}", text)
        where = (
            f" (at line {text.count(chr(10), 0, long_number.start()) + 1})" if long_number else ""
        )
        raise ConfigError(
            f"policy file {file} is not valid TOML: a number has too many digits{where}; "
            "no setting needs more than a few, fix the number there"
        ) from None
    return _parse(file, text, data, settings)


def _parse(file: Path, text: str, data: Mapping[str, Any], settings: Settings) -> Policy:
    problems = Problems(file, text)
    lines = problems.lines

    for key, value in data.items():
        if key not in _TOP_KEYS:
            hint = (
                "unknown; the file has a [defaults] table, [[app]] tables, an [alerts] "
                "table and an [api] table; " + suggest(key, _TOP_KEYS)
            )
            if isinstance(value, dict) and value and all(k in DEFAULTS_KEYS for k in value):
                # e.g. a [daemon] table: its settings are real, they just live in [defaults].
                hint = f"unknown; {', '.join(value)} belong in [defaults]: move them there"
            problems.add(
                lines.key(None, key) or lines.section(key)[0], f"top-level key {key!r}", hint
            )

    # ---- [defaults]
    raw_defaults = data.get("defaults", {})
    resolved: dict[str, Any] = {k: KEYS[k].default for k in DEFAULTS_KEYS}
    # Defaults that were set but are wrong: reported once, where they are set, and not
    # again for every app that inherits them.
    broken: set[str] = set()
    env_vault = settings.vault_url
    if env_vault is not None:
        try:
            resolved["vault_url"] = check_vault_url(env_vault)
        except ValueError as exc:
            problems.add(None, "ROTATOR_VAULT_URL", str(exc))
            broken.add("vault_url")
    if not isinstance(raw_defaults, dict):
        problems.add(lines.key(None, "defaults"), "defaults", "must be a table: write [defaults]")
        raw_defaults = {}
    for key, value in raw_defaults.items():
        line = lines.key("defaults", key)
        if key not in KEYS:
            problems.add(
                line, f"[defaults] key {key!r}", "unknown; " + suggest(key, DEFAULTS_KEYS)
            )
            continue
        if not KEYS[key].in_defaults:
            problems.add(
                line, f"[defaults] key {key!r}", "is per app; move it into an [[app]] table"
            )
            continue
        try:
            resolved[key] = KEYS[key].check(value)
            broken.discard(key)
        except ValueError as exc:
            problems.add(line, f"[defaults] key {key!r}", str(exc))
            broken.add(key)
    lifetimes_known = not {"renew_before_days", "lifetime_days"} & broken
    if lifetimes_known and resolved["renew_before_days"] >= resolved["lifetime_days"]:
        problems.add(
            lines.key("defaults", "renew_before_days"),
            "[defaults] key 'renew_before_days'",
            f"must be less than lifetime_days ({resolved['lifetime_days']}), or every new "
            "credential would be due at once; lower it or raise lifetime_days",
        )
    wait_keys_known = not set(_WAIT_KEYS) & broken
    if wait_keys_known and (why := _max_wait_problem(resolved)) is not None:
        where = next((k for k in _WAIT_KEYS if k in raw_defaults), "retire_max_wait_hours")
        problems.add(lines.key("defaults", where), f"[defaults] key {where!r}", why)
    backoff_known = not {"step_backoff_seconds", "step_backoff_max_seconds"} & broken
    if backoff_known and resolved["step_backoff_max_seconds"] < resolved["step_backoff_seconds"]:
        where = ("step_backoff_max_seconds" if "step_backoff_max_seconds" in raw_defaults
                 else "step_backoff_seconds")
        problems.add(
            lines.key("defaults", where), f"[defaults] key {where!r}",
            f"step_backoff_max_seconds ({resolved['step_backoff_max_seconds']:g}) must be at "
            f"least step_backoff_seconds ({resolved['step_backoff_seconds']:g}); raise the "
            "first or lower the second",
        )
    if not set(_KEY_SOURCE_KEYS) & broken and (why := _key_source_problem(resolved)):
        where = next((k for k in _KEY_SOURCE_KEYS if k in raw_defaults), "key_source")
        problems.add(lines.key("defaults", where), f"[defaults] key {where!r}", why)
    defaults = AppDefaults(**{KEYS[k].attr: resolved[k] for k in DEFAULTS_KEYS if KEYS[k].in_app})
    daemon = DaemonPolicy(
        **{KEYS[k].attr: resolved[k] for k in DEFAULTS_KEYS if not KEYS[k].in_app}
    )

    # ---- [[app]]
    raw_apps = data.get("app", [])
    if not isinstance(raw_apps, list):
        problems.add(
            lines.section("app")[0], "app", "must be an array of tables: write [[app]] per app"
        )
        raw_apps = []
    apps: dict[str, AppPolicy] = {}
    app_lines: dict[str, int | None] = {}
    # (vault, lower-case secret name) -> (app id, "secret" or "staging secret", name)
    secret_owner: dict[tuple[str, str], tuple[str, str, str]] = {}
    hooks_before = 0  # [[app.hook]] tables of earlier apps, for their line numbers
    for index, raw in enumerate(raw_apps):
        header = lines.section("app", index)[0]
        label = f"[[app]] #{index + 1}"
        if not isinstance(raw, dict):
            problems.add(header, label, "must be a table")
            continue
        raw_id = raw.get("app_id")
        if isinstance(raw_id, str) and checks.GUID.fullmatch(raw_id.strip()):
            # Checked before the rest so a duplicate shows even when both copies have errors.
            norm_id = raw_id.strip().lower()
            if norm_id in app_lines:
                problems.add(
                    lines.key("app", "app_id", index),
                    f"{label} key 'app_id'",
                    f"{norm_id} is already configured at line {app_lines[norm_id]}; "
                    "merge the two [[app]] tables into one",
                )
                continue
            app_lines[norm_id] = header
        app = _parse_app(raw, index, label, defaults, broken, problems, hooks_before)
        raw_hooks = raw.get("hook", [])
        hooks_before += len(raw_hooks) if isinstance(raw_hooks, list) else 0
        if app is None:
            continue
        # Key Vault names ignore case, and each app also writes "<name>-next": an app whose
        # staging secret is another app's secret would hand that app's consumers an
        # unproven credential of the wrong app.
        mine = ((app.secret_name, "secret"), (app.staging_secret_name, "staging secret"))
        clash = next(
            ((n, role, secret_owner[(app.vault_url, n.lower())]) for n, role in mine
             if (app.vault_url, n.lower()) in secret_owner),
            None,
        )
        if clash is not None:
            name, role, (owner, their_role, theirs) = clash
            spelt = f" (spelt {theirs!r}; Key Vault names ignore case)" if theirs != name else ""
            problems.add(
                lines.key("app", "secret_name", index),
                f"{label} key 'secret_name'",
                f"its {role} {name!r} in {app.vault_url} is already the {their_role} of app "
                f"{owner}{spelt}; give each app its own secret_name",
            )
            continue
        for name, role in mine:
            secret_owner[(app.vault_url, name.lower())] = (app.app_id, role, name)
        apps[app.app_id] = app
    alerts = parse_alerts(data.get("alerts", {}), problems)
    api = parse_api(data.get("api"), problems)
    problems.raise_if_any()
    return Policy(
        defaults=defaults, daemon=daemon, apps=MappingProxyType(apps), source=file, alerts=alerts,
        api=api,
    )


def _parse_app(
    raw: Mapping[str, Any],
    index: int,
    label: str,
    defaults: AppDefaults,
    broken_defaults: set[str],
    problems: Problems,
    hooks_before: int = 0,
) -> AppPolicy | None:
    lines = problems.lines
    header = lines.section("app", index)[0]
    # What the app inherits; its own keys (app_id, secret_name) have no default there.
    values: dict[str, Any] = {
        k: getattr(defaults, KEYS[k].attr) for k in APP_KEYS if KEYS[k].in_defaults
    }
    ok = True
    hooks: tuple[HookPolicy, ...] = ()
    for key, value in raw.items():
        line = lines.key("app", key, index)
        if key == "hook":
            hooks, hooks_ok = parse_hooks(value, index, hooks_before, label, problems)
            ok = ok and hooks_ok
            continue
        if key not in KEYS:
            problems.add(line, f"{label} key {key!r}", "unknown; " + suggest(key, APP_KEYS))
            ok = False
            continue
        if not KEYS[key].in_app:
            problems.add(
                line, f"{label} key {key!r}", "applies to the daemon; move it into [defaults]"
            )
            ok = False
            continue
        try:
            values[key] = KEYS[key].check(value)
        except ValueError as exc:
            problems.add(line, f"{label} key {key!r}", str(exc))
            ok = False
    if "app_id" not in raw:
        problems.add(header, label, 'app_id is missing; add app_id = "<application (client) id>"')
        return None
    if not ok:
        return None
    app_id: str = values["app_id"]
    label = f"{label} ({app_id})"
    if {k for k in broken_defaults if k not in raw}:
        return None  # it inherits a default that is wrong, which is already reported
    if values["vault_url"] is None:
        problems.add(
            header,
            f"{label} key 'vault_url'",
            "no Key Vault is configured; set vault_url here or in [defaults], "
            "or set ROTATOR_VAULT_URL",
        )
        return None
    if values["renew_before_days"] >= values["lifetime_days"]:
        where = "renew_before_days" if "renew_before_days" in raw else "lifetime_days"
        problems.add(
            lines.key("app", where, index),
            f"{label} key {where!r}",
            f"renew_before_days ({values['renew_before_days']:g}) must be less than "
            f"lifetime_days ({values['lifetime_days']}); lower one or raise the other",
        )
        return None
    own = [k for k in _WAIT_KEYS if k in raw]
    # A policy that takes all three from [defaults] was reported there, once.
    if own and (why := _max_wait_problem(values)) is not None:
        problems.add(lines.key("app", own[0], index), f"{label} key {own[0]!r}", why)
        return None
    own = [k for k in _KEY_SOURCE_KEYS if k in raw]
    # A policy that takes all three from [defaults] was reported there, once.
    if own and (why := _key_source_problem(values)) is not None:
        problems.add(lines.key("app", own[0], index), f"{label} key {own[0]!r}", why)
        return None
    values.setdefault("secret_name", default_secret_name(app_id))
    return AppPolicy(**{KEYS[k].attr: v for k, v in values.items()}, hooks=hooks)


# The keys whose values must agree in "unused" mode; the first one a table sets is
# where a disagreement is reported.
_WAIT_KEYS: Final = ("retire_max_wait_hours", "grace_hours", "retire_when")


# The keys that must agree when Key Vault makes the key pair; the first one a table sets
# is where a disagreement is reported.
_KEY_SOURCE_KEYS: Final = ("key_source", "key_vault_format", "key_type")


def _key_source_problem(values: Mapping[str, Any]) -> str | None:
    """Why key_source = "keyvault" cannot work with the other keys, or ``None``."""
    if values["key_source"] is not KeySource.KEYVAULT:
        return None
    if values["key_vault_format"] is not KeyVaultFormat.CERTIFICATE:
        return (
            'key_source = "keyvault" needs key_vault_format = "certificate": the key pair '
            "Key Vault makes lives in a certificate object and cannot be written to a "
            f"secret in the {values['key_vault_format']} format; set key_vault_format = "
            '"certificate", or key_source = "rotator"'
        )
    if values["key_type"] not in KEYVAULT_KEY_TYPES:
        return (
            f'key_source = "keyvault" makes RSA keys of 2048 or 3072 bits, not '
            f"{values['key_type']}; set key_type = \"RSA2048\" or \"RSA3072\""
        )
    return None


def _max_wait_problem(values: Mapping[str, Any]) -> str | None:
    """Why retire_max_wait_hours cannot work with grace_hours, or ``None``.

    In "unused" mode the usage report is first read once grace_hours have passed, so a
    maximum wait at or under the grace period would call every retirement overdue
    before its evidence was ever looked at. The grace rule does not use the key.
    """
    if values["retire_when"] is not RetireRule.UNUSED:
        return None
    wait, grace = values["retire_max_wait_hours"], values["grace_hours"]
    if wait > grace:
        return None
    return (
        f"retire_max_wait_hours ({wait:g}) must be more than grace_hours ({grace:g}) with "
        'retire_when = "unused": the usage report is first read after grace_hours, so a '
        "held retirement would be overdue before its evidence was ever looked at; raise "
        "retire_max_wait_hours or lower grace_hours"
    )
