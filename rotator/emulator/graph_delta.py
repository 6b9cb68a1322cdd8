"""Delta queries: ``GET /applications/delta`` and ``GET /servicePrincipals/delta``.

As Graph does them: a round of pages linked by ``@odata.nextLink`` ends with an
``@odata.deltaLink``; following that link later returns only the objects changed since,
each with its selected properties (``id`` always), and deleted ones as
``{"id": ..., "@removed": {"reason": "changed"}}``. ``$select`` is given once, in the first
request, and carried by the tokens. ``$deltatoken=latest`` answers no objects and a
deltaLink from now. A token older than the tenant's delta lifetime (seven days for
directory objects), or issued before the tenant's change-tracking state was reset, is
answered ``410 Gone`` with ``syncStateNotFound``: the client must synchronise again in full.
An object changed while a round is paged may come twice; nothing is ever skipped.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rotator.emulator import graph_estate
from rotator.emulator.errors import GraphError
from rotator.emulator.graph import _json, _parse_select, _project, authenticate, graph_route
from rotator.emulator.graph import require_read as _require_read
from rotator.emulator.model import next_change
from rotator.emulator.state import EmulatorState

APPLICATIONS = "applications"
SERVICE_PRINCIPALS = "servicePrincipals"
EXPIRED_CODE = "syncStateNotFound"
EXPIRED_MESSAGE = (
    "The sync state generation is not found. The delta token is expired and data must be "
    "synchronized again.")


@dataclass(frozen=True, slots=True)
class _Token:
    resource: str
    tenant: str
    generation: int
    issued: float
    since: int  # 0: the first round, which lists every live object
    start: int  # the tick the round started at
    cursor: int  # every change up to this tick has been returned in this round
    select: list[str] | None

    def encode(self) -> str:
        raw = json.dumps({"r": self.resource, "tid": self.tenant, "g": self.generation,
                          "t": self.issued, "s": self.since, "b": self.start, "c": self.cursor,
                          "sel": self.select}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


def _read_token(text: str, resource: str, state: EmulatorState) -> _Token:
    try:
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        token = _Token(str(raw["r"]), str(raw["tid"]), int(raw["g"]), float(raw["t"]),
                       int(raw["s"]), int(raw["b"]), int(raw["c"]),
                       None if raw["sel"] is None else [str(f) for f in raw["sel"]])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise GraphError(400, "Request_BadRequest", "Badly formed token.") from exc
    if token.resource != resource or token.tenant != state.tenant.tenant_id:
        raise GraphError(400, "Request_BadRequest", "Badly formed token.")
    tenant = state.tenant
    if (token.generation != tenant.delta_generation
            or time.time() - token.issued > tenant.delta_token_lifetime_seconds):
        raise GraphError(410, EXPIRED_CODE, EXPIRED_MESSAGE)
    return token


def _select(resource: str, text: str | None) -> list[str] | None:
    if resource == APPLICATIONS:
        return _parse_select(text)
    return graph_estate._sp_select(text)


def _changes(state: EmulatorState, resource: str, live_after: int, removed_after: int
             ) -> list[tuple[int, str, Any]]:
    """(tick, object id, object or None when deleted) changed after the given ticks."""
    tenant = state.tenant
    out: list[tuple[int, str, Any]] = []
    if resource == APPLICATIONS:
        for app in tenant._apps.values():
            if app.deleted:
                if app.change_seq > removed_after:
                    out.append((app.change_seq, app.id, None))
            elif app.change_seq > live_after:
                out.append((app.change_seq, app.id, app))
    else:
        for sp in tenant._sps.values():
            if sp.change_seq > live_after:
                out.append((sp.change_seq, sp.id, sp))
        for sp_id, tick in tenant.removed_sps.items():
            if tick > removed_after and sp_id not in tenant._sps:
                out.append((tick, sp_id, None))
    out.sort(key=lambda item: item[0])
    return out


def _shown(state: EmulatorState, resource: str, obj: Any, select: list[str] | None
           ) -> dict[str, Any]:
    if resource == APPLICATIONS:
        body = _project(obj, select, single=False)
    else:
        body = graph_estate.sp_json(state, obj, select)
    return body if "id" in body else {"id": obj.id, **body}


async def _delta(request: Request, resource: str) -> Response:
    caller = authenticate(request)
    _require_read(caller)
    state = _state(request)
    tenant = state.tenant
    query = request.query_params
    if "$deltatoken" in query and "$skiptoken" in query:
        raise GraphError(400, "Request_BadRequest",
                         "Only one of $deltatoken and $skiptoken may be given.")
    with tenant._lock:
        now_tick = next_change()  # every change so far has a smaller tick
        if query.get("$deltatoken") == "latest":
            select = _select(resource, query.get("$select"))
            token = _Token(resource, tenant.tenant_id, tenant.delta_generation, time.time(),
                           now_tick, now_tick, now_tick, select)
            return _answer(request, state, resource, [], token, done=True)
        if "$deltatoken" in query:
            token = _read_token(query["$deltatoken"], resource, state)
            token = _Token(resource, token.tenant, token.generation, token.issued,
                           token.cursor, token.cursor, token.cursor, token.select)
        elif "$skiptoken" in query:
            token = _read_token(query["$skiptoken"], resource, state)
        else:
            select = _select(resource, query.get("$select"))
            token = _Token(resource, tenant.tenant_id, tenant.delta_generation, time.time(),
                           0, now_tick, 0, select)
        # The first round lists live objects only; deletions from before it are history.
        removed_after = max(token.cursor, token.start) if token.since == 0 else token.cursor
        changes = _changes(state, resource, token.cursor, removed_after)
        page = changes[:tenant.delta_page_size]
        values = [
            {"id": object_id, "@removed": {"reason": "changed"}} if obj is None
            else _shown(state, resource, obj, token.select)
            for _tick, object_id, obj in page
        ]
        done = len(changes) <= len(page)
        cursor = now_tick if done else page[-1][0]
        following = _Token(resource, token.tenant, token.generation, time.time(),
                           cursor if done else token.since, token.start, cursor,
                           token.select)
        return _answer(request, state, resource, values, following, done=done)


def _answer(request: Request, state: EmulatorState, resource: str,
            values: list[dict[str, Any]], token: _Token, *, done: bool) -> Response:
    context = f"{state.base_url}/v1.0/$metadata#{resource}"
    if token.select:
        context += f"({','.join(token.select)})"
    link = f"{state.base_url}/v1.0/{resource}/delta?"
    body: dict[str, Any] = {"@odata.context": context}
    if done:
        body["@odata.deltaLink"] = link + "$deltatoken=" + token.encode()
    else:
        body["@odata.nextLink"] = link + "$skiptoken=" + token.encode()
    body["value"] = values
    return _json(request, body)


@graph_route("graph.applicationsDelta")
async def applications_delta(request: Request) -> Response:
    return await _delta(request, APPLICATIONS)


@graph_route("graph.servicePrincipalsDelta")
async def service_principals_delta(request: Request) -> Response:
    return await _delta(request, SERVICE_PRINCIPALS)


def routes() -> list[BaseRoute]:
    """Before ``/applications/{id}``, which would take ``delta`` for an id. The SDKs ask
    for ``delta()``; Graph answers the short and the qualified names alike."""
    out: list[BaseRoute] = []
    for resource, handler in ((APPLICATIONS, applications_delta),
                              (SERVICE_PRINCIPALS, service_principals_delta)):
        out += [Route(f"/v1.0/{resource}/{name}", handler, methods=["GET"])
                for name in ("delta", "delta()", "microsoft.graph.delta()")]
    return out
