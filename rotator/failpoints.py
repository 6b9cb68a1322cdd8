"""Named failpoints for crash and fault tests. Off unless explicitly switched on.

``ROTATOR_FAILPOINTS="after:graph.add_password=kill,after:vault.set_secret.staging=raise"``
takes effect only when ``ROTATOR_ENABLE_FAILPOINTS=1`` is also set, so a stray
variable in production cannot crash the service. ``kill`` sends SIGKILL to the
process itself (nothing gets to clean up, like a node dying); ``raise`` raises
:class:`FailpointError`. Each failpoint fires once per process. With
``ROTATOR_FAILPOINTS_TRACE=<file>`` every point passed is appended to the file,
which is how the crash matrix proves its lists of points are the ones a run meets.

Points sit before and after every external write (wrappers around the ports, see
the classes below), before the first token request and after each success of a
verify, before and after each send of a consumer hook event (``hook.send``: a
crash after it is the event taken but its delivery not yet recorded), and before
and after every committed state change of a rotation (``db.<state>``, through the
engine's ``checkpoint`` hook). :data:`POINTS` is the
whole catalogue; an unknown name is refused, so a typo cannot silently test nothing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

from rotator.config import HookPolicy
from rotator.domain.app_management import CredentialRestrictions, TenantPolicies
from rotator.domain.certificates import KeyEntry
from rotator.domain.credentials import AppRegistration, Credential
from rotator.domain.hooks import HookEvent
from rotator.domain.secret_value import SecretValue
from rotator.domain.states import RotationState
from rotator.ports import (
    CertificateStore,
    DeltaRound,
    Directory,
    HookSender,
    NewPassword,
    ScanItem,
    SecretStore,
    SelfSignedRequest,
    StoredCertificate,
    StoredSecret,
    TokenOutcome,
    TokenProbe,
)

WRITES: Final = (
    "graph.add_password", "graph.remove_password", "graph.add_key", "graph.remove_key",
    "graph.set_key_credentials", "vault.set_secret.staging", "vault.set_secret.consumer",
    "vault.disable_version", "vault.import_certificate.staging",
    "vault.import_certificate.consumer", "vault.create_certificate", "hook.send",
)
POINTS: Final = frozenset(
    [f"{when}:{name}" for when in ("before", "after")
     for name in (*WRITES, *(f"db.{state}" for state in RotationState))]
    + ["before:token.request", "after:token.success"]
)


class FailpointError(RuntimeError):
    pass


def parse(spec: str) -> dict[str, str]:
    actions: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = (p.strip() for p in item.partition("="))
        if name not in POINTS:
            raise ValueError(f"unknown failpoint {name!r}; the names are in "
                             "rotator.failpoints.POINTS")
        if action not in ("kill", "raise"):
            raise ValueError(f"failpoint {name!r}: action must be kill or raise, not {action!r}")
        actions[name] = action
    return actions


class Failpoints:
    def __init__(self, actions: Mapping[str, str], trace: Path | None = None) -> None:
        self._actions = dict(actions)
        self._trace = trace

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Failpoints:
        env = os.environ if environ is None else environ
        if env.get("ROTATOR_ENABLE_FAILPOINTS") != "1":
            return cls({})
        trace = env.get("ROTATOR_FAILPOINTS_TRACE")
        return cls(parse(env.get("ROTATOR_FAILPOINTS", "")), Path(trace) if trace else None)

    @property
    def active(self) -> bool:
        return bool(self._actions) or self._trace is not None

    def hit(self, name: str) -> None:
        if self._trace is not None:
            # Written before acting, so the trace of a killed run ends at its point.
            with self._trace.open("a", encoding="utf-8") as f:
                f.write(name + "\n")
        action = self._actions.pop(name, None)
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "raise":
            raise FailpointError(f"failpoint {name}")


class FailpointHookSender:
    def __init__(self, inner: HookSender, fp: Failpoints) -> None:
        self._inner, self._fp = inner, fp

    async def send(self, hook: HookPolicy, event: HookEvent) -> None:
        self._fp.hit("before:hook.send")
        await self._inner.send(hook, event)
        # The receiver has the event; its delivery is not recorded yet.
        self._fp.hit("after:hook.send")


class FailpointDirectory:
    def __init__(self, inner: Directory, fp: Failpoints) -> None:
        self._inner, self._fp = inner, fp

    def list_applications(self) -> AsyncIterator[ScanItem]:
        return self._inner.list_applications()

    def list_service_principals(self) -> AsyncIterator[ScanItem]:
        return self._inner.list_service_principals()

    async def track_changes(self, resource: str) -> str:
        return await self._inner.track_changes(resource)

    def list_changes(self, resource: str, link: str, into: DeltaRound
                     ) -> AsyncIterator[ScanItem]:
        return self._inner.list_changes(resource, link, into)

    def list_requests(self) -> int:
        return self._inner.list_requests()

    async def get_application(self, app_id: str) -> AppRegistration | None:
        return await self._inner.get_application(app_id)

    async def federated_app_ids(self) -> set[str]:
        return await self._inner.federated_app_ids()

    async def get_credential_policy(self, object_id: str) -> CredentialRestrictions | None:
        return await self._inner.get_credential_policy(object_id)

    async def list_credential_policies(self) -> TenantPolicies:
        return await self._inner.list_credential_policies()

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

    async def add_key(self, object_id: str, certificate_der: bytes, display_name: str,
                      proof: str) -> Credential:
        self._fp.hit("before:graph.add_key")
        result = await self._inner.add_key(object_id, certificate_der, display_name, proof)
        self._fp.hit("after:graph.add_key")
        return result

    async def remove_key(self, object_id: str, key_id: str, proof: str) -> None:
        self._fp.hit("before:graph.remove_key")
        await self._inner.remove_key(object_id, key_id, proof)
        self._fp.hit("after:graph.remove_key")

    async def list_key_credentials(self, object_id: str) -> Sequence[KeyEntry]:
        return await self._inner.list_key_credentials(object_id)

    async def set_key_credentials(self, object_id: str, entries: Sequence[KeyEntry]) -> None:
        self._fp.hit("before:graph.set_key_credentials")
        await self._inner.set_key_credentials(object_id, entries)
        self._fp.hit("after:graph.set_key_credentials")


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


class FailpointCertificateStore:
    """Key Vault certificate objects; disabling a version shares ``vault.disable_version``."""

    def __init__(self, inner: CertificateStore, fp: Failpoints) -> None:
        self._inner, self._fp = inner, fp

    async def import_certificate(self, name: str, bundle: SecretValue, *, content_type: str,
                                 tags: Mapping[str, str], enabled: bool = True
                                 ) -> StoredCertificate:
        role = _secret_role(name)
        self._fp.hit(f"before:vault.import_certificate.{role}")
        result = await self._inner.import_certificate(name, bundle, content_type=content_type,
                                                      tags=tags, enabled=enabled)
        self._fp.hit(f"after:vault.import_certificate.{role}")
        return result

    async def create_self_signed(self, name: str, request: SelfSignedRequest, *,
                                 tags: Mapping[str, str]) -> StoredCertificate:
        self._fp.hit("before:vault.create_certificate")
        result = await self._inner.create_self_signed(name, request, tags=tags)
        self._fp.hit("after:vault.create_certificate")
        return result

    async def get_certificate(self, name: str, version: str | None = None
                              ) -> StoredCertificate | None:
        return await self._inner.get_certificate(name, version)

    async def list_versions(self, name: str) -> Sequence[StoredCertificate]:
        return await self._inner.list_versions(name)

    async def disable_version(self, name: str, version: str) -> None:
        self._fp.hit("before:vault.disable_version")
        await self._inner.disable_version(name, version)
        self._fp.hit("after:vault.disable_version")

    async def get_private(self, name: str, version: str) -> StoredSecret | None:
        return await self._inner.get_private(name, version)


class FailpointTokenProbe:
    def __init__(self, inner: TokenProbe, fp: Failpoints) -> None:
        self._inner, self._fp = inner, fp

    async def try_secret(self, tenant_id: str, client_id: str, secret: SecretValue,
                         scope: str) -> TokenOutcome:
        self._fp.hit("before:token.request")
        outcome = await self._inner.try_secret(tenant_id, client_id, secret, scope)
        if outcome.ok:
            self._fp.hit("after:token.success")
        return outcome

    async def try_certificate(self, tenant_id: str, client_id: str, pem_bundle: SecretValue,
                              scope: str) -> TokenOutcome:
        self._fp.hit("before:token.request")
        outcome = await self._inner.try_certificate(tenant_id, client_id, pem_bundle, scope)
        if outcome.ok:
            self._fp.hit("after:token.success")
        return outcome
