"""One TLS configuration per process, and one connection pool for the azure-core clients.

Every HTTPS client of the service (Graph over httpx; Key Vault, the service credential
and each verify attempt's credential over azure-core's aiohttp transport) verifies peers
with the same ``ssl.SSLContext``: the system trust store plus the configured CA file,
certificate and host name checked. Building a context reads and parses the whole trust
store, which is why it is done once: azure-core builds a new one for every request when
``connection_verify`` names a file, and aiohttp then cannot reuse a connection either,
because its pool is keyed by the context object.
"""

from __future__ import annotations

import functools
import os
import ssl
import urllib.request
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp
    from azure.core.pipeline.transport import AioHttpTransport


@functools.lru_cache(maxsize=4)
def _context(ca_bundle: str | None, mtime_ns: int) -> ssl.SSLContext:
    context = ssl.create_default_context()  # CERT_REQUIRED, host names checked
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """System trust store, plus ``ca_bundle`` when given (never only the extra CA).

    The same object for the whole process while the file is unchanged; callers must not
    change it.
    """
    if not ca_bundle:
        return _context(None, 0)
    path = os.path.abspath(ca_bundle)
    return _context(path, os.stat(path).st_mtime_ns)


class AsyncHttp:
    """One aiohttp session over :func:`ssl_context`, lent to every azure-core client.

    Transports made by :meth:`transport` do not own the session: closing a client or a
    credential (each verify attempt closes its own) leaves the pool open for the others.
    Whoever made this object closes it. Use it from inside the running event loop.
    """

    def __init__(self, ca_bundle: str | None) -> None:
        self.context = ssl_context(ca_bundle)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            # The settings azure-core gives a session it makes for itself: no cookies kept
            # between requests (nor between credentials), bodies left compressed for
            # azure-core to decode, proxies from the environment. aiohttp looks the proxy
            # variables (and ~/.netrc) up again in a worker thread for every request; when
            # the environment names no proxy there is nothing to find, so it does not look.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.context),
                trust_env=bool(urllib.request.getproxies()),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        return self._session

    def transport(self) -> AioHttpTransport:
        from azure.core.pipeline.transport import AioHttpTransport

        return AioHttpTransport(session=self.session(), session_owner=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
