"""The API's HTTP layer in process (ASGI) over the engine's world: real steps and
database, fake services, and a fake of the token-validator port, so each answer shape
is checked in milliseconds. Real tokens and a real service: tests/service/test_api.py."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from rotator.api.http import build_api
from rotator.api.service import ApiService
from rotator.config.api import ApiPolicy
from rotator.domain.states import RotationState
from rotator.ports import Caller, TokenKeysUnavailable, TokenRejected
from tests.support.fakes import CANARY
from tests.support.world import TENANT, World

ADMIN = Caller("aaaaaaaa-0000-0000-0000-000000000001", "0b1ec7a1-0000-0000-0000-000000000001",
               TENANT, frozenset({"Admin"}))
READER = Caller("aaaaaaaa-0000-0000-0000-000000000002", None, TENANT, frozenset({"ReadOnly"}))


class Tokens:
    """The AccessTokenValidator port, answering by the token's text."""

    async def validate(self, token: str) -> Caller:
        if token == "admin":
            return ADMIN
        if token == "reader":
            return READER
        if token == "keys-down":
            raise TokenKeysUnavailable("the tenant's keys cannot be read")
        raise TokenRejected('the token is "odd"\nand says so')


class Kicks:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> int:
        self.count += 1
        return 0


def client(world: World, kicks: Kicks | None = None) -> httpx.AsyncClient:
    service = ApiService(world.deps(), kick=kicks)
    app = Starlette(routes=[build_api(service, Tokens(), ApiPolicy("api://rotator"))])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post(world: World, path: str, token: str = "admin", **kw: Any) -> httpx.Response:
    async with client(world) as c:
        return await c.post(path, headers=auth(token), **kw)


async def test_a_rotation_request_is_recorded_with_who_asked(world: World) -> None:
    app = world.directory.add_app("orders", secret_days_left=100)
    world.manage(app)
    kicks = Kicks()
    async with client(world, kicks) as c:
        response = await c.post(f"/api/v1/apps/{app.app_id}/rotate", headers=auth("admin"))
    assert response.status_code == 202, response.text
    rotation = world.store.get_rotation(response.json()["rotation_id"])
    assert rotation is not None and rotation.state is RotationState.PENDING
    assert kicks.count == 1  # the service drives it now, not at its next tick
    plan = world.store.history(rotation_id=rotation.id)[0]
    assert plan.details["requested_by_client_id"] == ADMIN.client_id
    assert plan.details["requested_by_object_id"] == ADMIN.object_id
    assert CANARY not in response.text


async def test_a_dry_run_changes_nothing_and_is_audited(world: World) -> None:
    app = world.directory.add_app("orders", secret_days_left=100)
    world.manage(app)
    response = await post(world, f"/api/v1/apps/{app.app_id}/rotate", json={"dry_run": True})
    assert response.status_code == 200 and response.json()["plan"]
    assert world.store.list_rotations() == []
    (event,) = world.store.history(app_id=app.app_id)
    assert (event.step, event.details["requested_by_client_id"]) == ("api.rotate",
                                                                     ADMIN.client_id)


@pytest.mark.parametrize(("body", "needle"), [
    ({"credential": "not-a-guid"}, "key id"),
    ({"retire_now": "yes"}, "true or false"),
    ({"force": True}, "unknown field"),
    (["dry_run"], "JSON object"),
])
async def test_a_bad_body_is_400_and_says_what_is_wrong(world: World, body: object,
                                                        needle: str) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)
    response = await post(world, f"/api/v1/apps/{app.app_id}/rotate", json=body)
    assert response.status_code == 400 and needle in response.json()["message"]
    assert world.store.list_rotations() == []


async def test_unmanaged_app_is_404_and_unknown_credential_422(world: World) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)
    other = await post(world, f"/api/v1/apps/{uuid.uuid4()}/rotate")
    assert other.status_code == 404 and "not managed" in other.json()["message"]
    unknown = await post(world, f"/api/v1/apps/{app.app_id}/rotate",
                         json={"credential": str(uuid.uuid4())})
    assert unknown.status_code == 422 and "no credential" in unknown.json()["message"]


async def test_refusal_shapes(world: World) -> None:
    world.manage(world.directory.add_app("orders"))
    async with client(world) as c:
        down = await c.get("/api/v1/findings", headers=auth("keys-down"))
        assert down.status_code == 503 and down.headers["Retry-After"]
        odd = await c.get("/api/v1/findings", headers=auth("forged"))
        assert odd.status_code == 401
        challenge = odd.headers["WWW-Authenticate"]
        # What a token says never breaks out of the quoted RFC 6750 parameter.
        assert challenge.count('"') == 6 and "\n" not in challenge
        reader = await c.post(f"/api/v1/apps/{uuid.uuid4()}/rotate", headers=auth("reader"))
        assert reader.status_code == 403
        assert (await c.get("/api/v1/findings", headers=auth("admin"))).status_code == 200
        assert (await c.get("/api/v1/rotations/zz", headers=auth("reader"))).status_code == 400
        missing = await c.get(f"/api/v1/rotations/{uuid.uuid4().hex}", headers=auth("reader"))
        assert missing.status_code == 404
