"""Build the Azure SDK clients for any cloud: public, national, or the emulated tenant.

The emulator is just one more "cloud": an authority host, a Graph URL, a vault URL and a CA
file. Everything that differs between clouds is decided here so adapters stay cloud-agnostic.
msgraph is imported inside functions because importing it costs over a second.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from rotator.adapters.tls import AsyncHttp, ssl_context

__all__ = ["AsyncHttp", "ssl_context"]

if TYPE_CHECKING:
    import azure.identity
    import azure.identity.aio
    from azure.core.credentials import TokenCredential
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.keyvault.certificates.aio import CertificateClient
    from azure.keyvault.secrets import SecretClient as SyncSecretClient
    from azure.keyvault.secrets.aio import SecretClient
    from msgraph.graph_service_client import GraphServiceClient

PUBLIC_GRAPH_URL = "https://graph.microsoft.com/v1.0"

# Authority hosts MSAL already knows; instance discovery must stay on for them.
_KNOWN_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.microsoftonline.us",
        "login.usgovcloudapi.net",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
    }
)
# Graph hosts of the national clouds have their own resource id; anything else is Graph public.
_GRAPH_HOSTS = frozenset(
    {
        "graph.microsoft.com",
        "graph.microsoft.us",
        "dod-graph.microsoft.us",
        "microsoftgraph.chinacloudapi.cn",
    }
)
_VAULT_SUFFIXES = (
    ".vault.azure.net",
    ".vault.usgovcloudapi.net",
    ".vault.azure.cn",
    ".vault.microsoftazure.de",
    ".managedhsm.azure.net",
    ".managedhsm.usgovcloudapi.net",
    ".managedhsm.azure.cn",
)


# The longest Retry-After an SDK call sleeps through before answering; longer ones make
# the call fail as transient, carrying the Retry-After (kiota's own ceiling for Graph).
SDK_RETRY_AFTER_CEILING = 180.0


# httpx keeps only 20 idle connections by default: with dozens of rotations calling Graph
# at once, every burst opened connections (a TLS handshake each) that were closed again
# as soon as they went idle. Keeping as many idle as may be open lets them be reused.
GRAPH_MAX_CONNECTIONS = 100


def _graph_limits() -> Any:
    import httpx

    return httpx.Limits(max_connections=GRAPH_MAX_CONNECTIONS,
                        max_keepalive_connections=GRAPH_MAX_CONNECTIONS)


def _host(url: str) -> str:
    return (urlparse(url if "://" in url else f"https://{url}").hostname or "").lower()


@functools.lru_cache(maxsize=8)
def _bundle_with_system(ca_bundle: str, mtime_ns: int) -> str:
    """A PEM file holding the system trust store plus ``ca_bundle``.

    azure-core's transports take a file path, not an SSL context, and a path alone would
    replace the system store; merging keeps real hosts verifiable next to the extra CA.
    """
    parts: list[str] = []
    for cert in ssl.create_default_context().get_ca_certs(binary_form=True):
        if isinstance(cert, bytes):
            parts.append(ssl.DER_cert_to_PEM_cert(cert))
    default_file = ssl.get_default_verify_paths().cafile
    if not parts and default_file and os.path.exists(default_file):
        parts.append(Path(default_file).read_text())
    if not parts:
        # Hash-directory stores cannot be listed; fall back to requests' own bundle.
        with contextlib.suppress(ImportError, OSError):
            parts.append(Path(importlib.import_module("certifi").where()).read_text())
    parts.append(Path(ca_bundle).read_text())
    directory = tempfile.mkdtemp(prefix="rotator-ca-")
    target = Path(directory) / "ca-bundle.pem"
    target.write_text("\n".join(parts))
    return str(target)


def trust_bundle(ca_bundle: str | None) -> str | None:
    """Path for ``connection_verify``: system CAs plus the extra one; None means defaults."""
    if not ca_bundle:
        return None
    path = os.path.abspath(ca_bundle)
    return _bundle_with_system(path, os.stat(path).st_mtime_ns)


def identity_options(
    authority_host: str | None, ca_bundle: str | None, http: AsyncHttp | None = None
) -> dict[str, object]:
    """Keyword arguments for azure-identity credentials (sync and async).

    With ``http`` (async credentials only) the credential sends through the process's
    shared connection pool and TLS context instead of opening and verifying its own.
    """
    options: dict[str, object] = {}
    if authority_host:
        options["authority"] = authority_host.rstrip("/")
        if _host(authority_host) not in _KNOWN_AUTHORITY_HOSTS:
            # MSAL would ask login.microsoftonline.com whether this host is a valid authority.
            options["disable_instance_discovery"] = True
    if http is not None:
        options["transport"] = http.transport()
        return options
    verify = trust_bundle(ca_bundle)
    if verify:
        options["connection_verify"] = verify
    return options


def async_secret_credential(
    tenant_id: str,
    client_id: str,
    client_secret: str,
    *,
    authority_host: str | None = None,
    ca_bundle: str | None = None,
    http: AsyncHttp | None = None,
    **pipeline: Any,
) -> azure.identity.aio.ClientSecretCredential:
    """``pipeline``: azure-core options such as ``retry_total``."""
    from azure.identity.aio import ClientSecretCredential

    options: dict[str, Any] = {
        # Token requests answered 429/503 are retried by azure-core after the Retry-After;
        # the waits are reported like Graph's and Key Vault's.
        "retry_policy_class": _observed_retry_policy("token"),
        **identity_options(authority_host, ca_bundle, http),
        **pipeline,
    }
    return ClientSecretCredential(tenant_id, client_id, client_secret, **options)


def sync_secret_credential(
    tenant_id: str,
    client_id: str,
    client_secret: str,
    *,
    authority_host: str | None = None,
    ca_bundle: str | None = None,
) -> azure.identity.ClientSecretCredential:
    from azure.identity import ClientSecretCredential

    options: dict[str, Any] = identity_options(authority_host, ca_bundle)
    return ClientSecretCredential(tenant_id, client_id, client_secret, **options)


def sync_default_credential(
    *, authority_host: str | None = None, ca_bundle: str | None = None
) -> azure.identity.DefaultAzureCredential:
    """DefaultAzureCredential, synchronous: for the database's connection tokens, which
    are asked for from SQLAlchemy's connect in a worker thread."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(**identity_options(authority_host, ca_bundle))


def async_default_credential(
    *, authority_host: str | None = None, ca_bundle: str | None = None,
    http: AsyncHttp | None = None,
) -> AsyncTokenCredential:
    """DefaultAzureCredential: env vars, workload identity, managed identity, CLI..."""
    from azure.identity.aio import DefaultAzureCredential

    options: dict[str, Any] = identity_options(authority_host, ca_bundle, http)
    return DefaultAzureCredential(**options)


def graph_scopes(graph_url: str) -> list[str]:
    host = _host(graph_url)
    if host in _GRAPH_HOSTS:
        return [f"https://{host}/.default"]
    # Any other host (the emulator) stands in for public Graph and takes its tokens.
    return ["https://graph.microsoft.com/.default"]


def make_graph_client(
    credential: AsyncTokenCredential,
    *,
    graph_url: str = PUBLIC_GRAPH_URL,
    ca_bundle: str | None = None,
) -> GraphServiceClient:
    import httpx
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph.graph_request_adapter import GraphRequestAdapter
    from msgraph.graph_request_adapter import options as graph_options
    from msgraph.graph_service_client import GraphServiceClient

    # msgraph_core ships no type information; reach it without making mypy guess.
    graph_client_factory: Any = importlib.import_module("msgraph_core").GraphClientFactory

    base_url = graph_url.rstrip("/")  # a trailing slash would make every path start with //
    host = _host(base_url)
    auth = AzureIdentityAuthenticationProvider(
        credential, scopes=graph_scopes(base_url), allowed_hosts=[host]
    )
    http = httpx.AsyncClient(
        base_url=base_url,
        verify=ssl_context(ca_bundle),
        timeout=httpx.Timeout(60.0, connect=10.0),
        limits=_graph_limits(),
        http2=False,
    )
    # A custom client skips Graph's retry/redirect middleware unless wrapped like this:
    # kiota's default chain, its retry handler swapped for one that reports its waits.
    http = graph_client_factory.create_with_custom_middleware(
        graph_middleware(graph_options), client=http
    )
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = base_url
    return GraphServiceClient(request_adapter=adapter)


def graph_middleware(options: dict[str, Any]) -> list[Any]:
    """Kiota's default middleware plus Graph's telemetry handler, as
    ``GraphClientFactory.create_with_default_middleware`` builds it, except that the
    retry handler reports each wait it makes for a ``Retry-After``, and without the
    handlers that do nothing for rotator's requests: every handler is one more layer
    (and tracing span) on every Graph call."""
    from kiota_http.kiota_client_factory import KiotaClientFactory
    from kiota_http.middleware import (
        BodyInspectionHandler,
        HeadersInspectionHandler,
        RetryHandler,
        UrlReplaceHandler,
    )
    from msgraph_core.middleware import GraphTelemetryHandler
    from msgraph_core.middleware.options import GraphTelemetryHandlerOption

    # The inspection handlers only act for a request that asks for inspection, and the
    # URL replacement only rewrites /users/me-token-to-replace, which rotator never calls.
    idle = (BodyInspectionHandler, HeadersInspectionHandler, UrlReplaceHandler)
    observed = _observed_retry_handler()
    middleware: list[Any] = [
        observed(m.options) if type(m) is RetryHandler else m
        for m in KiotaClientFactory.get_default_middleware(options)
        if not isinstance(m, idle)
    ]
    telemetry = options.get(GraphTelemetryHandlerOption().get_key())
    middleware.append(
        GraphTelemetryHandler(options=telemetry) if telemetry else GraphTelemetryHandler()
    )
    return middleware


@functools.cache
def _observed_retry_handler() -> type[Any]:
    from kiota_http.middleware import RetryHandler
    from kiota_http.middleware.options import RetryHandlerOption

    from rotator import throttle_waits

    class ObservedRetryHandler(RetryHandler):
        """Kiota's RetryHandler (it honours Retry-After on 429/503/504, up to three
        retries); each wait it makes for a Retry-After is reported, nothing else changes."""

        _delay: float = 0.0

        def get_delay_time(
            self, retry_count: int, response: Any = None,
            delay: float = RetryHandlerOption.DEFAULT_DELAY,
        ) -> float:
            self._delay = float(super().get_delay_time(retry_count, response, delay))
            return self._delay

        def should_retry(self, request: Any, options: Any, response: Any) -> bool:
            # send() calls check_retry_valid, get_delay_time and should_retry one after
            # the other with no await between them, so _delay belongs to this response.
            verdict = bool(super().should_retry(request, options, response))
            attempt = int(response.request.headers.get("Retry-Attempt", 0))
            if (
                verdict
                and attempt < options.max_retry
                and self._delay < RetryHandlerOption.MAX_DELAY
                and response.headers.get("retry-after")
            ):
                throttle_waits.waited(
                    "graph", self._delay, status=response.status_code, method=request.method
                )
            return verdict

    return ObservedRetryHandler


@functools.cache
def _observed_retry_policy(service: str) -> type[Any]:
    from azure.core.pipeline.policies import AsyncRetryPolicy

    from rotator import throttle_waits

    class ObservedAsyncRetryPolicy(AsyncRetryPolicy[Any, Any]):
        """azure-core's retry policy (it honours Retry-After, up to ten retries by
        default); each wait it makes for a Retry-After is reported, and one longer than
        ``SDK_RETRY_AFTER_CEILING`` is not slept through here: the error goes back to
        the engine, which schedules the step again after it (as kiota does for Graph)."""

        def is_retry(self, settings: Any, response: Any) -> bool:
            retry_after = self.get_retry_after(response)
            if retry_after is not None and retry_after >= SDK_RETRY_AFTER_CEILING:
                return False
            return bool(super().is_retry(settings, response))

        async def _sleep_for_retry(self, response: Any, transport: Any) -> bool:
            retry_after = self.get_retry_after(response)
            if retry_after:
                throttle_waits.waited(
                    service, float(retry_after),
                    status=response.http_response.status_code,
                    method=response.http_request.method,
                )
            return bool(await super()._sleep_for_retry(response, transport))

    return ObservedAsyncRetryPolicy


def _vault_options(
    vault_url: str, ca_bundle: str | None, http: AsyncHttp | None = None
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if not _host(vault_url).endswith(_VAULT_SUFFIXES):
        # The emulator's challenge names https://vault.azure.net, which is not its own host.
        options["verify_challenge_resource"] = False
    if http is not None:
        options["transport"] = http.transport()
        return options
    verify = trust_bundle(ca_bundle)
    if verify:
        options["connection_verify"] = verify
    return options


def make_secret_client(
    vault_url: str,
    credential: AsyncTokenCredential,
    *,
    ca_bundle: str | None = None,
    http: AsyncHttp | None = None,
) -> SecretClient:
    from azure.keyvault.secrets.aio import SecretClient

    return SecretClient(
        vault_url, credential, retry_policy=_observed_retry_policy("keyvault")(),
        **_vault_options(vault_url, ca_bundle, http),
    )


def make_certificate_client(
    vault_url: str,
    credential: AsyncTokenCredential,
    *,
    ca_bundle: str | None = None,
    http: AsyncHttp | None = None,
) -> CertificateClient:
    """Key Vault certificates over the same transport and retry policy as the secrets."""
    from azure.keyvault.certificates.aio import CertificateClient

    return CertificateClient(
        vault_url, credential, retry_policy=_observed_retry_policy("keyvault")(),
        **_vault_options(vault_url, ca_bundle, http),
    )


def make_sync_secret_client(
    vault_url: str,
    credential: TokenCredential,
    *,
    ca_bundle: str | None = None,
) -> SyncSecretClient:
    from azure.keyvault.secrets import SecretClient as SyncClient

    return SyncClient(vault_url, credential, **_vault_options(vault_url, ca_bundle))
