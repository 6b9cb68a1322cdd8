"""Delivering consumer hooks: a signed CloudEvents POST, or a command without a shell.

:class:`rotator.ports.HookSender` for real. A webhook's HMAC key is read from its
environment variable at each send (never held in the policy, never logged). A
command gets the event in ``ROTATOR_EVENT_*`` variables on top of rotator's own
environment, less rotator's credentials and every secret the policy names; its
output is not kept (it could hold anything), only its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable, Mapping
from typing import Final

import httpx

from rotator.config.hooks import HookPolicy
from rotator.domain.hooks import CONTENT_TYPE, SIGNATURE_HEADER, HookEvent, HookKind, signature
from rotator.ports import HookError

# rotator's own credentials, which a hook command has no business holding: what
# azure-identity signs in with, and the database URL (it can carry a password).
OWN_SECRETS: Final = frozenset({
    "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE", "ROTATOR_DATABASE_URL",
})


class HookClient:
    """``withheld``: further variables a command must not see (the policy's secret
    environment variables: other hooks' keys, alert channels' URLs and passwords)."""

    def __init__(self, environ: Mapping[str, str] | None = None,
                 *, verify: str | bool = True, withheld: Iterable[str] = ()) -> None:
        self._environ = environ
        self._verify = verify
        self._withheld = OWN_SECRETS | frozenset(withheld)

    def _env(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    async def send(self, hook: HookPolicy, event: HookEvent) -> None:
        if hook.type is HookKind.WEBHOOK:
            await self._post(hook, event)
        else:
            await self._run(hook, event)

    async def _post(self, hook: HookPolicy, event: HookEvent) -> None:
        assert hook.url is not None and hook.secret_env is not None
        key = self._env().get(hook.secret_env)
        if not key:
            raise HookError(
                f"the environment variable {hook.secret_env} (the key that signs hook "
                f"{hook.name}'s events) is not set"
            )
        body = event.body()
        headers = {
            "Content-Type": CONTENT_TYPE,
            SIGNATURE_HEADER: signature(key.encode(), body),
            "User-Agent": "rotator",
        }
        try:
            async with httpx.AsyncClient(timeout=hook.timeout_seconds, verify=self._verify,
                                         follow_redirects=False) as client:
                response = await client.post(hook.url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise HookError(f"no answer within {hook.timeout_seconds:g} s") from None
        except httpx.HTTPError as exc:
            raise HookError(f"{type(exc).__name__}: {exc}") from None
        if not 200 <= response.status_code < 300:
            raise HookError(f"the receiver answered HTTP {response.status_code}")

    async def _run(self, hook: HookPolicy, event: HookEvent) -> None:
        env = {k: v for k, v in self._env().items() if k not in self._withheld}
        env.update(event.environment())
        try:
            process = await asyncio.create_subprocess_exec(
                *hook.argv, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise HookError(f"cannot run {hook.argv[0]}: {exc.strerror or exc}") from None
        try:
            status = await asyncio.wait_for(process.wait(), hook.timeout_seconds)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            await process.wait()
            raise HookError(
                f"{hook.argv[0]} did not finish within {hook.timeout_seconds:g} s; killed"
            ) from None
        if status != 0:
            raise HookError(f"{hook.argv[0]} exited with status {status}")
