"""ROTATOR_DATABASE_AUTH=entra: each new database connection logs in with an Entra token
for Azure Database for PostgreSQL, from rotator's own identity, renewed near its end.

What this proves, and what it cannot: the emulated tenant's token endpoint issues the
tokens over HTTPS to the real azure-identity credential, exactly as Entra would, and
the real PostgreSQL takes every connection whose password is that token. The local test
server trusts local connections, so it does not check the password itself (checking an
Entra token is something only Azure's PostgreSQL does, against Entra's keys; a role
whose password the test set to the token would only prove what the test wrote). So the
test reads back, from each live connection, the password the driver logged in with, and
checks it is the current token (right audience, not expired) and a new one once the
previous one nears its end.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from rotator.adapters.db.entra_auth import REFRESH_MARGIN_SECONDS
from rotator.bootstrap import database_engine, open_store
from rotator.config import ConfigError, load_settings
from rotator.emulator.runner import RunningEmulator
from tests.support.databases import throwaway_pg_database

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def bare_pg_url() -> Iterator[str]:
    with throwaway_pg_database() as url:
        yield url


@pytest.fixture
def short_tokens(emu: RunningEmulator) -> Iterator[None]:
    """Tokens that enter azure-identity's (and rotator's) renewal margin 3 s after they
    are issued, so a renewal happens within the test instead of after an hour."""
    before = emu.state.tokens.lifetime
    emu.state.tokens.lifetime = int(REFRESH_MARGIN_SECONDS) + 3
    yield
    emu.state.tokens.lifetime = before


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return decoded


def login_password(engine: sa.Engine) -> str:
    """The password the driver logged in with on a brand-new connection."""
    engine.dispose()  # no pooled connection: the next one logs in now
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        password: str = conn.connection.dbapi_connection.info.password  # type: ignore[union-attr]
    return password


def test_each_new_connection_logs_in_with_a_current_token_renewed_near_its_end(
    emu: RunningEmulator, bare_pg_url: str, short_tokens: None,
    capfd: pytest.CaptureFixture[str],
) -> None:
    settings = load_settings({**emu.env, "ROTATOR_DATABASE_URL": bare_pg_url,
                              "ROTATOR_DATABASE_AUTH": "entra"})
    # The schema is created through the same login (rotator migrates on start).
    store = open_store(settings)
    engine = store.engine
    first = login_password(engine)
    seen = claims(first)
    assert seen["aud"] == "https://ossrdbms-aad.database.windows.net"
    assert seen["appid"] == settings.client_id
    assert seen["exp"] > time.time()
    # Still fresh: the next connection reuses it (no token request per connection).
    assert login_password(engine) == first
    time.sleep(4)  # now within the renewal margin
    second = login_password(engine)
    assert second != first
    assert claims(second)["exp"] > seen["exp"]
    assert store.list_rotations() == []  # the store works through the new login
    out, err = capfd.readouterr()
    assert first not in out + err and second not in out + err
    assert first not in repr(engine.url) and first not in repr(engine.pool)
    store.close()


@pytest.mark.parametrize(("url", "needle"), [
    ("sqlite:///rotator.db", "postgresql"),
    ("postgresql+psycopg://rotator:stored-password@db.example/rotator", "remove the password"),
])
def test_entra_auth_refuses_what_cannot_work(emu: RunningEmulator, url: str, needle: str
                                             ) -> None:
    settings = load_settings({**emu.env, "ROTATOR_DATABASE_URL": url,
                              "ROTATOR_DATABASE_AUTH": "entra"})
    with pytest.raises(ConfigError) as info:
        database_engine(settings)
    assert needle in str(info.value)
    assert "stored-password" not in str(info.value)


def test_an_unknown_auth_mode_is_refused(emu: RunningEmulator) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({**emu.env, "ROTATOR_DATABASE_AUTH": "kerberos"})
    assert "ROTATOR_DATABASE_AUTH" in str(info.value) or "database_auth" in str(info.value)
