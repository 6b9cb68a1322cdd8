"""Named failpoints for crash and fault tests. Off unless explicitly switched on.

``ROTATOR_FAILPOINTS="after:graph.add_password=kill,after:vault.set_secret=raise"``
takes effect only when ``ROTATOR_ENABLE_FAILPOINTS=1`` is also set, so a stray
variable in production cannot crash the service. ``kill`` sends SIGKILL to the
process itself (nothing gets to clean up, like a node dying); ``raise`` raises
:class:`FailpointError`. Each failpoint fires once per process.

They sit in wrappers around the ports (see :func:`wrap_ports`), so every external
write of every step has a point right before and right after it without touching
the engine.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime

from rotator.domain.credentials import AppRegistration
from rotator.domain.secret_value import SecretValue
from rotator.ports import (
    Directory,
    NewPassword,
    ScanItem,
    SecretStore,
    StoredSecret,
    TokenOutcome,
    TokenProbe,
)


class FailpointError(RuntimeError):
    pass


def parse(spec: str) -> dict[str, str]:
    actions: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        if action not in ("kill", "raise"):
            raise ValueError(f"failpoint {name!r}: action must be kill or raise, not {action!r}")
        actions[name.strip()] = action
    return actions


class Failpoints:
    def __init__(self, actions: Mapping[str, str]) -> None:
        self._actions = dict(actions)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Failpoints:
        env = os.environ if environ is None else environ
        if env.get("ROTATOR_ENABLE_FAILPOINTS") != "1":
            return cls({})
        return cls(parse(env.get("ROTATOR_FAILPOINTS", "")))

    @property
    def active(self) -> bool:
        return bool(self._actions)

    def hit(self, name: str) -> None:
        action = self._actions.pop(name, None)
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "raise":
            raise FailpointError(f"failpoint {name}")


class FailpointDirectory:
    def __init__(self, inner: Directory, fp: Failpoints) -> None:
        self._inner, self._fp = inner, fp

    def list_applications(self) -> AsyncIterator[ScanItem]:
        return self._inner.list_applications()

    async def get_application(self, app_id: str) -> AppRegistration | None:
        return await self._inner.get_application(app_id)

    async def add_password(self, object_id: str, display_name: str, end: datetime
                           ) -> NewPassword:
        self._fp.hit("before:graph.add_password")
        result = await self._inner.add_password(object_id, display_name, end)
        self._fp.hit("after:graph.add_password")
        return result

    async def remove_password(self, object_id: str, key_id: str) -> None:
        self._fp.hit("before:graph.remove_password")
        await self._inner.remove_password(object_id, key_id)
        self._fp.hit("after:graph.remove_password")

    def __getattr__(self, name: str) -> object:
        # Port methods added later (certificates) pass straight through.
        return getattr(self._inner, name)


def _secret_role(name: str) -> str:
    return "staging" if name.endswith("-next") else "consumer"


class FailpointSecretStore:
    def __init__(self, inner: SecretStore, fp: Failpoints) -> None:
        self._inner, self._fp = inner, fp

    async def set_secret(self, name: str, value: SecretValue, *, content_type: str,
                         tags: Mapping[str, str], expires_on: datetime | None = None,
                         enabled: bool = True) -> StoredSecret:
        role = _secret_role(name)
        self._fp.hit(f"before:vault.set_secret.{role}")
        result = await self._inner.set_secret(name, value, content_type=content_type,
                                              tags=tags, expires_on=expires_on,
                                              enabled=enabled)
        self._fp.hit(f"after:vault.set_secret.{role}")
        return result

    async def get_secret(self, name: str, version: str | None = None) -> StoredSecret | None:
        return await self._inner.get_secret(name, version)

    async def list_versions(self, name: str) -> Sequence[StoredSecret]:
        return await self._inner.list_versions(name)

    async def disable_version(self, name: str, version: str) -> None:
        self._fp.hit("before:vault.disable_version")
        await self._inner.disable_version(name, version)
        self._fp.hit("after:vault.disable_version")


class FailpointTokenProbe:
    def __init__(self, inner: TokenProbe, fp: Failpoints) -> None:
        self._inner, self._fp = inner, fp

    async def try_secret(self, tenant_id: str, client_id: str, secret: SecretValue,
                         scope: str) -> TokenOutcome:
        outcome = await self._inner.try_secret(tenant_id, client_id, secret, scope)
        if outcome.ok:
            self._fp.hit("after:token.success")
        return outcome

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)
