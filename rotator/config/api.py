"""The ``[api]`` table: the HTTPS API for pipelines and security tools (``/api/v1``).

Its presence turns the API on. Callers present Entra access tokens for rotator's own
API app registration; ``audience`` names that app (its App ID URI, such as
``api://rotator``, or its client id), and the two app roles decide who may read and
who may ask for a rotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from rotator.config.checks import GUID, show
from rotator.config.problems import Problems, suggest

_KEYS: Final = ("audience", "client_id", "read_role", "admin_role")


@dataclass(frozen=True, slots=True)
class ApiPolicy:
    audience: str
    read_role: str = "ReadOnly"
    admin_role: str = "Admin"
    # The API app's application (client) id: v2 access tokens carry it as ``aud``.
    client_id: str | None = None

    @property
    def audiences(self) -> tuple[str, ...]:
        """Every ``aud`` a token for this API may carry: the App ID URI and the client id.
        ``api://{guid}`` (the portal's default App ID URI) names the client id itself."""
        found = [self.audience]
        if self.client_id:
            found.append(self.client_id)
        tail = self.audience.removeprefix("api://")
        if tail != self.audience and GUID.fullmatch(tail):
            found.append(tail.lower())
        return tuple(dict.fromkeys(found))


def _role(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise ValueError(f"must be an app role value such as \"ReadOnly\" (no spaces), "
                         f"got {show(value)}")
    return value


def _audience(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must name rotator's API app: its App ID URI such as "
                         f"\"api://rotator\" or its application (client) id, got {show(value)}")
    value = value.strip().rstrip("/")
    if value.endswith("/.default"):
        raise ValueError(f"is the API itself, not a scope: write {value[:-9]!r} "
                         "(clients ask for <audience>/.default)")
    return value.lower() if GUID.fullmatch(value) else value


def _client_id(value: object) -> str:
    if isinstance(value, str) and GUID.fullmatch(value.strip()):
        return value.strip().lower()
    raise ValueError("must be the API app's application (client) id, a GUID like "
                     f"00000000-0000-0000-0000-000000000000, got {show(value)}")


_CHECKS: Final = {"audience": _audience, "client_id": _client_id,
                  "read_role": _role, "admin_role": _role}


def parse_api(raw: object, problems: Problems) -> ApiPolicy | None:
    """The ``[api]`` table, or ``None`` when the file has none (the API stays off)."""
    lines = problems.lines
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.add(lines.key(None, "api"), "api", "must be a table: write [api]")
        return None
    values: dict[str, Any] = {}
    ok = True
    for key, value in raw.items():
        line = lines.key("api", key)
        if key not in _CHECKS:
            problems.add(line, f"[api] key {key!r}", "unknown; " + suggest(key, _KEYS))
            ok = False
            continue
        try:
            values[key] = _CHECKS[key](value)
        except ValueError as exc:
            problems.add(line, f"[api] key {key!r}", str(exc))
            ok = False
    if "audience" not in values:
        if "audience" not in raw:
            problems.add(lines.section("api")[0], "[api]",
                         'needs audience: the App ID URI of rotator\'s API app, such as '
                         'audience = "api://rotator"')
        return None
    policy = ApiPolicy(**values)
    if policy.read_role == policy.admin_role:
        problems.add(lines.key("api", "admin_role"), "[api] key 'admin_role'",
                     f"is the same as read_role ({policy.read_role!r}); a reader could then "
                     "rotate: give the admin role its own value")
        ok = False
    return policy if ok else None
