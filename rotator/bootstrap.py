"""Wiring: real adapters from settings. The CLI and the daemon both start here."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from rotator.adapters.db import SqlStore
    from rotator.config import Policy, Settings
    from rotator.engine.context import EngineDeps
    from rotator.ports import AccessTokenValidator, CertificateStore, SecretStore


@dataclass
class Loaded:
    settings: Settings
    policy: Policy


def load(environ: dict[str, str] | None = None) -> Loaded:
    """Settings and policy; raises ConfigError with a message for people."""
    from rotator.config import load_policy, load_settings

    settings = load_settings(environ)
    policy = load_policy(settings.config_path, settings)
    return Loaded(settings, policy)


def open_store(settings: Settings, *, upgrade: bool = True) -> SqlStore:
    """The database, migrated to the latest schema (safe to run on every start).

    A database already at the head is not handed to Alembic at all: its import and
    environment are most of what a read-only command like ``rotator status`` would
    otherwise spend."""
    from rotator.adapters.db import SqlStore
    from rotator.adapters.db.scripts import is_current

    engine = database_engine(settings)
    if upgrade and not is_current(engine):
        from rotator.adapters.db.migrate import upgrade_engine

        upgrade_engine(engine)
    return SqlStore(engine)


def database_engine(settings: Settings) -> Engine:
    """The engine for ``ROTATOR_DATABASE_URL``, logging in as ``ROTATOR_DATABASE_AUTH``
    says: with the URL's password, or with an Entra token of rotator's identity."""
    import sqlalchemy as sa

    from rotator.adapters.db.session import make_engine
    from rotator.config import ConfigError

    if settings.database_auth != "entra":
        return make_engine(settings.database_url)
    url = sa.make_url(settings.database_url)
    if url.get_backend_name() != "postgresql":
        raise ConfigError(
            "ROTATOR_DATABASE_AUTH=entra logs in to Azure Database for PostgreSQL: set "
            "ROTATOR_DATABASE_URL to a postgresql+psycopg:// URL, or unset "
            "ROTATOR_DATABASE_AUTH")
    if url.password is not None:
        raise ConfigError(
            "ROTATOR_DATABASE_AUTH=entra logs in with an Entra token, yet "
            "ROTATOR_DATABASE_URL carries a password: remove the password from the URL "
            "(keep the role name, the identity's PostgreSQL role)")
    from rotator.adapters.db.entra_auth import EntraPassword, use_entra_password

    engine = make_engine(settings.database_url)
    use_entra_password(engine, EntraPassword(database_credential(settings)))
    return engine


def database_credential(settings: Settings) -> Any:
    """The identity rotator uses for Graph, as a synchronous credential: connections
    are opened in worker threads, where an async credential cannot be awaited."""
    from rotator.adapters import sdk_clients

    ca_bundle = str(settings.ca_bundle) if settings.ca_bundle else None
    if settings.client_secret is not None and settings.client_id:
        return sdk_clients.sync_secret_credential(
            settings.required_tenant_id(), settings.client_id,
            settings.client_secret.get_secret_value(),
            authority_host=settings.authority_host, ca_bundle=ca_bundle,
        )
    return sdk_clients.sync_default_credential(
        authority_host=settings.authority_host, ca_bundle=ca_bundle)


def token_validator(loaded: Loaded) -> AccessTokenValidator | None:
    """The API's bearer-token check, when the policy has an [api] table."""
    api = loaded.policy.api
    if api is None:
        return None
    from rotator.adapters.entra_tokens import EntraTokenValidator

    s = loaded.settings
    return EntraTokenValidator(
        authority_host=s.authority_host, tenant_id=s.required_tenant_id(),
        audiences=api.audiences, ca_bundle=str(s.ca_bundle) if s.ca_bundle else None,
    )


@contextlib.asynccontextmanager
async def engine_deps(
    loaded: Loaded, store: SqlStore, **overrides: Any
) -> AsyncIterator[EngineDeps]:
    """EngineDeps over the real SDKs; closes every client on exit."""
    from rotator.adapters import sdk_clients
    from rotator.adapters.graph import GraphDirectory
    from rotator.adapters.keyvault import KeyVaultSecretStore
    from rotator.adapters.keyvault_certificates import KeyVaultCertificateStore
    from rotator.adapters.token_probe import AzureIdentityTokenProbe
    from rotator.engine.context import EngineDeps
    from rotator.failpoints import (
        FailpointCertificateStore,
        FailpointDirectory,
        FailpointHookSender,
        Failpoints,
        FailpointSecretStore,
        FailpointTokenProbe,
    )

    s = loaded.settings
    ca_bundle = str(s.ca_bundle) if s.ca_bundle else None
    tenant_id = s.required_tenant_id()
    # One TLS context and one connection pool for every azure-core client and credential.
    http = sdk_clients.AsyncHttp(ca_bundle)
    if s.client_secret is not None and s.client_id:
        credential: Any = sdk_clients.async_secret_credential(
            tenant_id, s.client_id, s.client_secret.get_secret_value(),
            authority_host=s.authority_host, ca_bundle=ca_bundle, http=http,
        )
    else:
        credential = sdk_clients.async_default_credential(
            authority_host=s.authority_host, ca_bundle=ca_bundle, http=http
        )
    stores: dict[str, Any] = {}
    certificate_stores: dict[str, Any] = {}
    clients: list[Any] = []

    def secret_store_for(vault_url: str) -> SecretStore:
        if vault_url not in stores:
            client = sdk_clients.make_secret_client(vault_url, credential, http=http)
            clients.append(client)
            stores[vault_url] = KeyVaultSecretStore(client)
        store_: SecretStore = stores[vault_url]
        return store_

    graph = sdk_clients.make_graph_client(credential, graph_url=s.graph_url, ca_bundle=ca_bundle)
    directory: Any = GraphDirectory(graph)
    probe: Any = AzureIdentityTokenProbe(
        authority_host=s.authority_host, ca_bundle=ca_bundle, http=http
    )
    def certificate_store_for(vault_url: str) -> CertificateStore:
        if vault_url not in certificate_stores:
            client = sdk_clients.make_certificate_client(vault_url, credential, http=http)
            clients.append(client)
            secrets = secret_store_for(vault_url)
            assert isinstance(secrets, KeyVaultSecretStore)
            certificate_stores[vault_url] = KeyVaultCertificateStore(client, secrets)
        store_: CertificateStore = certificate_stores[vault_url]
        return store_

    store_for: Callable[[str], SecretStore] = secret_store_for
    certificates_for: Callable[[str], CertificateStore] = certificate_store_for
    failpoints = Failpoints.from_environ()
    if failpoints.active:
        directory = FailpointDirectory(directory, failpoints)
        probe = FailpointTokenProbe(probe, failpoints)
        overrides.setdefault("checkpoint", failpoints.hit)

        def store_for(url: str) -> SecretStore:
            return FailpointSecretStore(secret_store_for(url), failpoints)

        def certificates_for(url: str) -> CertificateStore:
            return FailpointCertificateStore(certificate_store_for(url), failpoints)

    from rotator.adapters.hooks import HookClient
    from rotator.adapters.usage_report import GraphUsageReport

    daemon_policy = loaded.policy.daemon
    overrides.setdefault("read_settle_seconds", daemon_policy.graph_read_settle_seconds)
    overrides.setdefault("max_step_attempts", daemon_policy.step_max_attempts)
    overrides.setdefault("step_backoff_seconds", daemon_policy.step_backoff_seconds)
    overrides.setdefault("step_backoff_max_seconds", daemon_policy.step_backoff_max_seconds)
    hooks: Any = HookClient(withheld=loaded.policy.secret_env_names())
    if failpoints.active:
        hooks = FailpointHookSender(hooks, failpoints)
    overrides.setdefault("hooks", hooks)
    overrides.setdefault(
        "usage", GraphUsageReport(credential, graph_url=s.graph_url, ca_bundle=ca_bundle)
    )
    deps = EngineDeps(
        directory=directory,
        secret_store_for=store_for,
        certificate_store_for=certificates_for,
        probe=probe,
        store=store,
        policy=loaded.policy,
        tenant_id=tenant_id,
        **overrides,
    )
    try:
        yield deps
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        with contextlib.suppress(Exception):
            await credential.close()
        with contextlib.suppress(Exception):
            await http.close()

