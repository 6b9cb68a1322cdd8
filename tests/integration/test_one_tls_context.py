"""One TLS configuration per process: rotations against the emulated tenant over HTTPS
build the SSL context once, reuse it for Graph, Key Vault, the service credential and
every verify attempt's credential, and still refuse a server they do not trust."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rotator.adapters import tls
from rotator.adapters.token_probe import AzureIdentityTokenProbe
from rotator.bootstrap import engine_deps, load, open_store
from rotator.domain.rotation import RotationReason
from rotator.domain.secret_value import SecretValue
from rotator.domain.states import RotationState
from rotator.emulator.runner import RunningEmulator
from rotator.engine.context import VerifyTiming
from rotator.engine.driver import drive
from rotator.engine.start import plan_rotation, start_rotation
from tests.support.serve import make_due_apps, write_policy

ROTATIONS = 3
BURST = 40


class Calls:
    def __init__(self) -> None:
        self.count = 0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return fn(*args, **kwargs)

        return counted


async def test_rotations_build_one_ssl_context(
    emu: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert aiohttp.TCPConnector  # aiohttp builds its own default context on import
    apps = make_due_apps(emu, ROTATIONS, "tls-once")
    policy = write_policy(tmp_path / "policy.toml", emu.env["ROTATOR_VAULT_URL"],
                          [a.app_id for a, _ in apps], verify_successes=2)
    loaded = load({**emu.env, "ROTATOR_CONFIG": str(policy),
                   "ROTATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'rotator.db'}"})
    store = open_store(loaded.settings)
    tls._context.cache_clear()  # count this process's context from scratch
    built, loaded_cas = Calls(), Calls()
    monkeypatch.setattr(ssl, "create_default_context", built.wrap(ssl.create_default_context))
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations",
                        loaded_cas.wrap(ssl.SSLContext.load_verify_locations))
    attempts = Calls()
    monkeypatch.setattr(AzureIdentityTokenProbe, "try_secret",
                        attempts.wrap(AzureIdentityTokenProbe.try_secret))
    try:
        async with engine_deps(loaded, store, verify_timing=VerifyTiming(
                success_interval=0.1, refusal_base=0.2, refusal_cap=1.0)) as deps:
            for app, _ in apps:
                plan = await plan_rotation(deps, app.app_id)
                rotation = await start_rotation(deps, plan, reason=RotationReason.MANUAL,
                                          retire_now=True)
                done = await drive(deps, rotation.id, retire_now=True)
                assert done.state is RotationState.COMPLETED, done.last_error
    finally:
        store.close()
    # Dozens of HTTPS requests (reads, writes, Key Vault, a fresh credential per verify
    # attempt) and still the one context, with the CA file read once.
    assert attempts.count >= ROTATIONS * 2
    assert built.count == 1
    assert loaded_cas.count == 1


def test_the_shared_context_verifies_certificates_and_host_names(
    emu: RunningEmulator,
) -> None:
    context = tls.ssl_context(str(emu.ca_file))
    assert context is tls.ssl_context(str(emu.ca_file))
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


async def test_a_server_outside_the_trust_store_is_refused(
    emu: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The emulator's certificate chains to its own CA; without that CA in the context
    # (and with the default trust store not pointed at it) the handshake must fail.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    tls._context.cache_clear()
    http = tls.AsyncHttp(None)
    try:
        probe = AzureIdentityTokenProbe(authority_host=emu.base_url, ca_bundle=None, http=http)
        app, value = make_due_apps(emu, 1, "tls-refused")[0]
        outcome = await probe.try_secret(emu.tenant.tenant_id, app.app_id,
                                         SecretValue(value), "https://graph.microsoft.com/.default")
        assert not outcome.ok
        assert outcome.message == "token request failed: ServiceRequestError"
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.session().get(emu.base_url):
                pass
        # The same secret through a context that trusts the CA gets its token.
        trusted = tls.AsyncHttp(str(emu.ca_file))
        try:
            good = AzureIdentityTokenProbe(authority_host=emu.base_url,
                                           ca_bundle=str(emu.ca_file), http=trusted)
            assert (await good.try_secret(emu.tenant.tenant_id, app.app_id, SecretValue(value),
                                          "https://graph.microsoft.com/.default")).ok
        finally:
            await trusted.close()
    finally:
        await http.close()
        tls._context.cache_clear()


async def test_proxies_come_from_the_environment_only_when_it_names_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    http = tls.AsyncHttp(None)
    try:
        assert not http.session().trust_env  # no per-request proxy or netrc lookups
    finally:
        await http.close()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    proxied = tls.AsyncHttp(None)
    try:
        assert proxied.session().trust_env
    finally:
        await proxied.close()


async def test_a_burst_of_graph_calls_leaves_its_connections_open_for_the_next(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    """Dozens of rotations call Graph at once. httpx kept 20 idle connections by default,
    so every burst past 20 ended in closed connections and began with new TLS
    handshakes; the pool now keeps open what a burst opened."""
    apps = make_due_apps(emu, 1, "tls-burst")
    policy = write_policy(tmp_path / "policy.toml", emu.env["ROTATOR_VAULT_URL"],
                          [a.app_id for a, _ in apps])
    loaded = load({**emu.env, "ROTATOR_CONFIG": str(policy),
                   "ROTATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'rotator.db'}"})
    store = open_store(loaded.settings)
    emu.faults.update({"latency_ms": 100})  # the burst's calls overlap
    tls._context.cache_clear()  # count this process's handshakes from scratch
    context = tls.ssl_context(str(emu.ca_file))
    app_id = apps[0][0].app_id
    try:
        async with engine_deps(loaded, store) as deps:

            async def burst() -> None:
                read = await asyncio.gather(*(deps.directory.get_application(app_id)
                                              for _ in range(BURST)))
                assert all(a is not None and a.app_id == app_id for a in read)

            await burst()
            opened = context.session_stats()["connect"]
            assert opened > 20  # the burst did need more connections than httpx kept
            await burst()
            await burst()
            assert context.session_stats()["connect"] == opened
    finally:
        store.close()
        tls._context.cache_clear()
