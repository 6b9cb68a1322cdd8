"""``[[app.hook]]``: who is told about an app's rotations, and how.

    [[app]]
    app_id = "..."

    [[app.hook]]
    type = "webhook"
    url = "https://consumer.example.com/rotated"
    secret_env = "ORDERS_HOOK_KEY"      # the HMAC-SHA256 key; never in the file

    [[app.hook]]
    type = "command"
    argv = ["systemctl", "restart", "orders"]
    timeout_seconds = 60
    events = ["promoted"]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from rotator.config import checks
from rotator.config.alerts import _channel_name, _env_name, _webhook_url
from rotator.config.checks import show
from rotator.config.keys import Key, declared, key_field, key_spec
from rotator.config.problems import Problems, check_table_keys
from rotator.domain.hooks import EVENT_NAMES, EventType, HookKind

_WEB: Final = frozenset({HookKind.WEBHOOK})
_COMMAND: Final = frozenset({HookKind.COMMAND})
ALL_EVENTS: Final = tuple(EventType)


def _argv(value: object) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) for v in value)
        or not value[0].strip()
    ):
        raise ValueError(
            'must be a non-empty list of strings, the program first, such as '
            f'["systemctl", "restart", "orders"] (no shell runs it), got {show(value)}'
        )
    return tuple(value)


def _events(value: object) -> tuple[EventType, ...]:
    names = ", ".join(EVENT_NAMES)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"must be a non-empty list of event names ({names}), got {show(value)}")
    unknown = [v for v in value if v not in EVENT_NAMES]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not an event; the events are {names}")
    return tuple(dict.fromkeys(EVENT_NAMES[v] for v in value))


@dataclass(frozen=True, slots=True)
class HookPolicy:
    """One ``[[app.hook]]``. Each field declares its key (see :mod:`rotator.config.keys`);
    ``only`` names the hook types that take it. The HMAC key is named, never held."""

    type: HookKind = field(
        metadata=key_spec(checks.choice(HookKind), help="webhook or command")
    )
    name: str = field(
        metadata=key_spec(
            _channel_name,
            help="what the hook's delivery records are keyed on; default <type>-<n> per app",
        )
    )
    events: tuple[EventType, ...] = key_field(
        ALL_EVENTS, _events,
        help="the events the hook gets: promoted, retired, failed, held; default all",
    )
    timeout_seconds: float = key_field(
        30.0, checks.positive(unit="seconds", hi=3600), help="how long one delivery may take"
    )
    url: str | None = key_field(
        None, _webhook_url, only=_WEB,
        help="where the CloudEvent is posted; https, or http to a loopback address",
    )
    secret_env: str | None = key_field(
        None, _env_name, only=_WEB,
        help="the environment variable holding the HMAC-SHA256 key that signs the body",
    )
    argv: tuple[str, ...] = key_field(
        (), _argv, only=_COMMAND,
        help="the program and its arguments, run without a shell, with ROTATOR_EVENT_* set",
    )

    def wants(self, event_type: EventType) -> bool:
        return event_type in self.events


_HOOK_TABLE: Final[Mapping[str, Key]] = MappingProxyType(
    {k.name: k for k in declared(HookPolicy)}
)
_HOOK_KEYS: Final[Mapping[HookKind, tuple[str, ...]]] = MappingProxyType(
    {
        kind: tuple(k.name for k in _HOOK_TABLE.values() if k.only is None or kind in k.only)
        for kind in HookKind
    }
)


def parse_hooks(
    raw: object, app_index: int, first_hook: int, label: str, problems: Problems
) -> tuple[tuple[HookPolicy, ...], bool]:
    """The hooks of the ``app_index``-th ``[[app]]``; ``first_hook`` is how many
    ``[[app.hook]]`` tables came before it in the file (for line numbers).

    Returns the hooks and whether they were all valid.
    """
    lines = problems.lines
    if not isinstance(raw, list):
        problems.add(
            lines.key("app", "hook", app_index), f"{label} key 'hook'",
            "must be an array of tables: write [[app.hook]] per hook",
        )
        return (), False
    hooks: list[HookPolicy] = []
    names: dict[str, int | None] = {}
    per_type: dict[HookKind, int] = {}
    ok = True
    for n, raw_hook in enumerate(raw):
        index = first_hook + n
        hook = _parse_hook(raw_hook, index, f"{label} [[app.hook]] #{n + 1}", per_type, problems)
        if hook is None:
            ok = False
            continue
        header = lines.section("app.hook", index)[0]
        if hook.name in names:
            problems.add(
                lines.key("app.hook", "name", index), f"{label} [[app.hook]] #{n + 1} key 'name'",
                f"{hook.name!r} is already the name of the hook at line {names[hook.name]}; "
                "give each hook of an app its own name",
            )
            ok = False
            continue
        names[hook.name] = header
        hooks.append(hook)
    return tuple(hooks), ok


def _parse_hook(
    raw: object, index: int, label: str, per_type: dict[HookKind, int], problems: Problems
) -> HookPolicy | None:
    lines = problems.lines
    section = "app.hook"
    header = lines.section(section, index)[0]
    if not isinstance(raw, dict):
        problems.add(header, label, "must be a table")
        return None
    if "type" not in raw:
        problems.add(header, label, 'type is missing; add type = "webhook" or type = "command"')
        return None
    try:
        kind: HookKind = _HOOK_TABLE["type"].check(raw["type"])
    except ValueError as exc:
        problems.add(lines.key(section, "type", index), f"{label} key 'type'", str(exc))
        return None
    label = f"{label} ({kind})"
    allowed = _HOOK_KEYS[kind]
    found = check_table_keys(
        raw, table=_HOOK_TABLE, allowed=allowed, problems=problems, section=section,
        index=index, label=label, what=f"{kind} hook",
        secret_keys=("secret", "key", "hmac_key", "password", "token"),
        secret_hint="put the key in an environment variable and name that variable with "
        "secret_env",
    )
    if found is None:
        return None
    values: dict[str, Any] = found
    per_type[kind] = per_type.get(kind, 0) + 1
    values.setdefault("name", f"{kind.value}-{per_type[kind]}")
    if kind is HookKind.WEBHOOK:
        missing = [k for k in ("url", "secret_env") if k not in values]
        if missing:
            problems.add(
                header, label,
                f"{' and '.join(missing)} missing; a webhook hook needs url and secret_env "
                "(the environment variable holding the key that signs each event)",
            )
            return None
    if kind is HookKind.COMMAND and "argv" not in values:
        problems.add(header, label, 'argv is missing; add argv = ["program", "arg", ...]')
        return None
    return HookPolicy(type=kind, **values)
