"""``/api/v1``: the HTTP face of :class:`~rotator.api.service.ApiService`.

Every route but the OpenAPI document needs a bearer access token of the tenant for
rotator's API app (checked by the ``AccessTokenValidator`` port) carrying an app role:
``read_role`` (or ``admin_role``, which includes reading) for a GET, ``admin_role`` for
a POST. Refusals follow RFC 6750: 401 with ``WWW-Authenticate: Bearer`` and an
``error`` for a missing, malformed or unacceptable token, 403 with
``error="insufficient_scope"`` when the role is missing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from rotator.api.openapi import openapi_document
from rotator.api.service import ApiService, NotManaged, Page, RotationView
from rotator.api.views import audit_json, credential_json, finding_json, rotation_json
from rotator.config.api import ApiPolicy
from rotator.domain.credentials import CredentialSource
from rotator.engine.start import Refusal, RotationRefused
from rotator.ports import AccessTokenValidator, Caller, TokenKeysUnavailable, TokenRejected

log = structlog.get_logger("rotator.api")

PREFIX = "/api/v1"
REALM = "rotator"
DEFAULT_PAGE = 100
MAX_PAGE = 1000
_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_ROTATION_ID = re.compile(r"^[0-9a-f]{32}$")
# RFC 6750 section 3: error_description is %x20-21 / %x23-5B / %x5D-7E.
_UNSAFE = re.compile(r'[^\x20-\x21\x23-\x5b\x5d-\x7e]')

Handler = Callable[[Request, Caller], Awaitable[Response]]


class BadRequest(Exception):
    pass


def _challenge(error: str | None = None, description: str | None = None) -> str:
    parts = [f'Bearer realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{_UNSAFE.sub("?", description)}"')
    return ", ".join(parts)


def _refusal(status: int, error: str | None, description: str) -> Response:
    body = {"error": error or "unauthorized", "error_description": description}
    # RFC 6750 3.1: to a request with no credentials, no error information in the challenge.
    challenge = _challenge(error, description) if error else _challenge()
    return JSONResponse(body, status_code=status, headers={"WWW-Authenticate": challenge})


def _problem(status: int, error: str, message: str, **headers: str) -> Response:
    return JSONResponse({"error": error, "message": message}, status_code=status,
                        headers=headers or None)


def _int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number from {lo} to {hi}") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be a whole number from {lo} to {hi}")
    return value


def _bool(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise BadRequest(f"{name} must be true or false")


def _paging(request: Request) -> tuple[int, int]:
    return (_int(request, "offset", 0, 0, 10_000_000),
            _int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE))


def _page_json(request: Request, page: Page[Any], items: list[dict[str, Any]]) -> Response:
    nxt = page.next_offset
    link = None
    if nxt is not None:
        link = str(request.url.include_query_params(offset=nxt, limit=page.limit))
    return JSONResponse({"items": items, "offset": page.offset, "limit": page.limit,
                         "total": page.total, "next": link})


def build_api(service: ApiService, validator: AccessTokenValidator, policy: ApiPolicy) -> Mount:
    """The ``/api/v1`` mount for the service's HTTP app."""

    async def authenticate(request: Request) -> Caller | Response:
        header = request.headers.get("authorization")
        if header is None:
            return _refusal(401, None, "send an Entra access token for "
                            f"{policy.audience}: Authorization: Bearer <token>")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            return _refusal(401, "invalid_request",
                            "the Authorization header must be 'Bearer <token>'")
        try:
            return await validator.validate(token)
        except TokenRejected as exc:
            log.info("api token refused", reason=exc.description, path=request.url.path)
            return _refusal(401, exc.error, exc.description)
        except TokenKeysUnavailable as exc:
            log.warning("api cannot read the tenant's signing keys", error=str(exc))
            return _problem(503, "temporarily_unavailable",
                            "the tenant's signing keys cannot be read now; try again shortly",
                            **{"Retry-After": "30"})

    def guarded(handler: Handler, *, write: bool) -> Callable[[Request], Awaitable[Response]]:
        needed = (policy.admin_role,) if write else (policy.read_role, policy.admin_role)

        async def endpoint(request: Request) -> Response:
            caller = await authenticate(request)
            if isinstance(caller, Response):
                return caller
            if not caller.roles & set(needed):
                log.info("api role missing", client_id=caller.client_id,
                         path=request.url.path, needed=needed[0])
                return _refusal(403, "insufficient_scope",
                                f"the calling app needs the app role {needed[0]!r} of "
                                f"{policy.audience}, granted with admin consent")
            try:
                response = await handler(request, caller)
            except BadRequest as exc:
                response = _problem(400, "invalid_request", str(exc))
            log.info("api request", method=request.method, path=request.url.path,
                     status=response.status_code, client_id=caller.client_id,
                     object_id=caller.object_id)
            return response

        return endpoint

    async def credentials(request: Request, _caller: Caller) -> Response:
        within = request.query_params.get("within_days")
        within_days: float | None = None
        if within is not None:
            try:
                within_days = float(within)
            except ValueError:
                raise BadRequest("within_days must be a number of days") from None
            if not 0 <= within_days <= 36_500:
                raise BadRequest("within_days must be from 0 to 36500")
        source_raw = request.query_params.get("source")
        source = None
        if source_raw is not None:
            try:
                source = CredentialSource(source_raw)
            except ValueError:
                raise BadRequest("source must be one of: "
                                 + ", ".join(s.value for s in CredentialSource)) from None
        offset, limit = _paging(request)
        page = await service.credentials(within_days=within_days,
                                         managed=_bool(request, "managed"), source=source,
                                         offset=offset, limit=limit)
        now = service.deps.now()
        return _page_json(request, page, [credential_json(r, now) for r in page.items])

    async def rotations(request: Request, _caller: Caller) -> Response:
        try:
            view = RotationView(request.query_params.get("state", RotationView.RECENT))
        except ValueError:
            raise BadRequest("state must be one of: "
                             + ", ".join(v.value for v in RotationView)) from None
        app_id = request.query_params.get("app_id")
        if app_id is not None and not _GUID.fullmatch(app_id):
            raise BadRequest("app_id must be an application (client) id (a GUID)")
        offset, limit = _paging(request)
        page = await service.rotations(view=view, app_id=app_id.lower() if app_id else None,
                                       offset=offset, limit=min(limit, 500))
        return _page_json(request, page, [rotation_json(r) for r in page.items])

    async def rotation(request: Request, _caller: Caller) -> Response:
        rotation_id = request.path_params["rotation_id"]
        if not _ROTATION_ID.fullmatch(rotation_id):
            raise BadRequest("a rotation id is 32 lower-case hexadecimal characters")
        found = await service.rotation(rotation_id)
        if found is None:
            return _problem(404, "not_found", f"no rotation {rotation_id}")
        rot, events = found
        return JSONResponse({**rotation_json(rot), "audit": [audit_json(e) for e in events]})

    async def findings(request: Request, _caller: Caller) -> Response:
        offset, limit = _paging(request)
        page = await service.findings(offset=offset, limit=limit)
        return _page_json(request, page, [finding_json(f) for f in page.items])

    async def rotate(request: Request, caller: Caller) -> Response:
        app_id = request.path_params["app_id"]
        if not _GUID.fullmatch(app_id):
            raise BadRequest("app_id must be an application (client) id (a GUID)")
        body = await _rotate_body(request)
        try:
            outcome = await service.rotate(
                caller, app_id, key_id=body["credential"], retire_now=body["retire_now"],
                dry_run=body["dry_run"])
        except NotManaged:
            return _problem(404, "not_managed",
                            f"app {app_id.lower()} is not managed by rotator: its policy file "
                            "has no [[app]] table for it")
        except RotationRefused as exc:
            if exc.refusal is Refusal.REQUEST:
                return _problem(422, "refused", str(exc))
            return _problem(503, "refused", str(exc), **{"Retry-After": "60"})
        if outcome.rotation is None:
            return JSONResponse({"dry_run": True, "app_id": app_id.lower(),
                                 "in_flight": outcome.resumed,
                                 "plan": list(outcome.dry_run_plan)})
        rot = outcome.rotation
        where = f"{PREFIX}/rotations/{rot.id}"
        return JSONResponse(
            {"rotation_id": rot.id, "app_id": rot.app_id, "state": str(rot.state),
             "in_flight": outcome.resumed, "href": where},
            status_code=202, headers={"Location": where})

    async def openapi(_request: Request) -> Response:
        return JSONResponse(openapi_document(policy))

    return Mount(PREFIX, routes=[
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/credentials", guarded(credentials, write=False), methods=["GET"]),
        Route("/rotations", guarded(rotations, write=False), methods=["GET"]),
        Route("/rotations/{rotation_id}", guarded(rotation, write=False), methods=["GET"]),
        Route("/findings", guarded(findings, write=False), methods=["GET"]),
        Route("/apps/{app_id}/rotate", guarded(rotate, write=True), methods=["POST"]),
    ])


async def _rotate_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    data: object = {}
    if raw.strip():
        try:
            data = json.loads(raw)
        except ValueError:
            raise BadRequest("the body must be a JSON object (or empty)") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object (or empty)")
    unknown = set(data) - {"credential", "retire_now", "dry_run"}
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}; known: credential, "
                         "retire_now, dry_run")
    credential = data.get("credential")
    if credential is not None and (not isinstance(credential, str)
                                   or not _GUID.fullmatch(credential)):
        raise BadRequest("credential must be the key id (a GUID) of the credential to replace")
    for flag in ("retire_now", "dry_run"):
        if not isinstance(data.get(flag, False), bool):
            raise BadRequest(f"{flag} must be true or false")
    return {"credential": credential.lower() if credential else None,
            "retire_now": bool(data.get("retire_now", False)),
            "dry_run": bool(data.get("dry_run", False))}
