"""Entra authentication to Azure Database for PostgreSQL: no stored database password.

With ``ROTATOR_DATABASE_AUTH=entra`` every new connection logs in with an Entra access
token for Azure Database for PostgreSQL as its password, taken from the same identity
rotator uses for Graph. Azure's server validates the token against Entra; the role
in the URL is the identity's PostgreSQL role (``pgaadauth_create_principal``).

Tokens live about an hour and a connection only needs a valid one when it logs in, so
a token is reused until it is near its end and then replaced; pooled connections that
are already open stay open. The token is a credential: it is never logged, never part
of an error, and only ever handed to the driver.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from sqlalchemy import event
from sqlalchemy.engine import Engine

OSSRDBMS_SCOPE: Final = "https://ossrdbms-aad.database.windows.net/.default"
# Replaced this long before it ends, so a connection never logs in with a token that
# expires during the handshake (azure-identity refreshes on the same margin).
REFRESH_MARGIN_SECONDS: Final = 300.0


class _AccessToken(Protocol):
    token: str
    expires_on: int


class TokenCredential(Protocol):
    def get_token(self, *scopes: str, **kwargs: Any) -> _AccessToken: ...


class EntraPassword:
    """The password of the next connection: a current token for the database scope."""

    def __init__(self, credential: TokenCredential, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._credential = credential
        self._clock = clock
        self._token: _AccessToken | None = None
        # Connections open from several worker threads at once: one token request.
        self._lock = threading.Lock()
        self.requests = 0

    def current(self) -> str:
        with self._lock:
            token = self._token
            if token is None or token.expires_on - self._clock() < REFRESH_MARGIN_SECONDS:
                token = self._credential.get_token(OSSRDBMS_SCOPE)
                self._token = token
                self.requests += 1
            return token.token

    def __repr__(self) -> str:
        return "EntraPassword(<token withheld>)"


def use_entra_password(engine: Engine, password: EntraPassword) -> None:
    """Every new connection of ``engine`` logs in with ``password.current()``."""

    @event.listens_for(engine, "do_connect")
    def _token_as_password(_dialect: Any, _record: Any, _cargs: Any,
                           cparams: dict[str, Any]) -> None:
        cparams["password"] = password.current()
