"""Microsoft Graph v1.0: applications, their credentials, service principals, app role grants."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import jwt
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rotator.emulator import graph_estate
from rotator.emulator.errors import (
    GraphError,
    graph_denied,
    graph_error_response,
    graph_not_found,
    request_ids,
)
from rotator.emulator.faults import guarded
from rotator.emulator.graph_estate import expand_page_size, owner_json, parse_expand, with_owners
from rotator.emulator.jws import BadJws, parse_jws
from rotator.emulator.model import Application, KeyCredential, ServicePrincipal, utcnow
from rotator.emulator.state import EmulatorState
from rotator.emulator.tenant import GRAPH_APP_ID, GRAPH_RESOURCE, Tenant
from rotator.emulator.timeparse import parse_iso

log = logging.getLogger("rotator.emulator.graph")

GRAPH_AUDIENCES = (GRAPH_RESOURCE, GRAPH_RESOURCE + "/", GRAPH_APP_ID)
PROOF_AUDIENCE = "00000002-0000-0000-c000-000000000000"
PROOF_MAX_LIFETIME = 600
PROOF_REFUSED_MESSAGE = "Access Token missing or malformed."
READ_ROLES = frozenset(
    {"Application.Read.All", "Application.ReadWrite.All", "Application.ReadWrite.OwnedBy"}
)
CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)
DEFAULT_PAGE = 100
MAX_PAGE = 999
APP_PROPERTIES = frozenset(
    {
        "id",
        "deletedDateTime",
        "appId",
        "createdDateTime",
        "description",
        "displayName",
        "identifierUris",
        "notes",
        "publisherDomain",
        "signInAudience",
        "tags",
        "api",
        "appRoles",
        "keyCredentials",
        "passwordCredentials",
        "requiredResourceAccess",
    }
)

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Caller:
    app_id: str
    sp_id: str
    roles: frozenset[str]


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


def _json(request: Request, body: Any, status: int = 200) -> Response:
    request_id, client_request_id = request_ids(request)
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type=None,
        headers={
            "content-type": CONTENT_TYPE,
            "request-id": request_id,
            "client-request-id": client_request_id,
        },
    )


def _no_content(request: Request) -> Response:
    request_id, client_request_id = request_ids(request)
    return Response(
        status_code=204,
        headers={"request-id": request_id, "client-request-id": client_request_id},
    )


def graph_route(name: str) -> Callable[[Handler], Handler]:
    """Counting, faults, and Graph-shaped errors around one handler."""

    def decorate(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except GraphError as exc:
                return graph_error_response(request, exc)

        run.__name__ = handler.__name__
        return guarded(name, "graph")(run)

    return decorate


# ---------------------------------------------------------------------- auth


def authenticate(request: Request) -> Caller:
    state = _state(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
    try:
        claims = state.tokens.verify(token.strip(), GRAPH_AUDIENCES)
    except jwt.ExpiredSignatureError as exc:
        raise GraphError(
            401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
        ) from exc
    except jwt.InvalidAudienceError as exc:
        raise GraphError(
            401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
        ) from exc
    except jwt.InvalidTokenError as exc:
        raise GraphError(
            401, "InvalidAuthenticationToken", "Access token validation failure."
        ) from exc
    roles = frozenset(str(r) for r in claims.get("roles", []))
    caller = Caller(str(claims.get("appid")), str(claims.get("oid")), roles)
    if request.method == "GET":
        # Reads spend the caller's request budget too; writes spend it in admit_write.
        state.faults.admit_read(caller.app_id)
    return caller


def require_read(caller: Caller) -> None:
    if not caller.roles & READ_ROLES:
        raise graph_denied()


def require_write(tenant: Tenant, caller: Caller, app: Application) -> None:
    if "Application.ReadWrite.All" in caller.roles:
        return
    if "Application.ReadWrite.OwnedBy" in caller.roles and tenant.owns(caller.sp_id, app):
        return
    raise graph_denied()


def _writable(request: Request, caller: Caller) -> Application:
    tenant = _state(request).tenant
    app = _target(request, tenant)
    require_write(tenant, caller, app)
    return app


def _target(request: Request, tenant: Tenant) -> Application:
    params = request.path_params
    if "app_id" in params:
        return tenant.find_app(app_id=params["app_id"])
    return tenant.find_app(object_id=params["id"])


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from exc
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.")
    return body


def _dt(value: object, prop: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_iso(str(value))
    except ValueError as exc:
        raise GraphError(
            400, "BadRequest", f"Invalid value specified for property '{prop}'."
        ) from exc


# ---------------------------------------------------------------------- query options


_FILTERS: list[tuple[re.Pattern[str], Callable[[str], Callable[[Application], bool]]]] = [
    (re.compile(r"^appId eq '([^']*)'$", re.I), lambda v: lambda a: a.app_id == v.lower()),
    (re.compile(r"^id eq '([^']*)'$", re.I), lambda v: lambda a: a.id == v.lower()),
    (
        re.compile(r"^displayName eq '((?:[^']|'')*)'$", re.I),
        lambda v: lambda a: a.display_name == v.replace("''", "'"),
    ),
    (
        re.compile(r"^startswith\(displayName,\s*'((?:[^']|'')*)'\)$", re.I),
        lambda v: lambda a: a.display_name.lower().startswith(v.replace("''", "'").lower()),
    ),
]


# Filters Graph only answers as advanced queries (ConsistencyLevel: eventual, $count=true).
_ADVANCED_FILTERS: list[tuple[re.Pattern[str], Callable[[str], Callable[[Application], bool]]]] = [
    (
        re.compile(r"^federatedIdentityCredentials/\$count\s+(eq|ne)\s+0$", re.I),
        lambda op: (lambda a: not a.federated_identity_credentials) if op.lower() == "eq"
        else (lambda a: bool(a.federated_identity_credentials)),
    ),
]


def _parse_filter(text: str | None, *, advanced: bool = False
                  ) -> Callable[[Application], bool] | None:
    if not text:
        return None
    for pattern, build in _FILTERS:
        match = pattern.match(text.strip())
        if match:
            return build(match.group(1))
    for pattern, build in _ADVANCED_FILTERS:
        match = pattern.match(text.strip())
        if match and advanced:
            return build(match.group(1))
        if match:
            raise GraphError(
                400,
                "Request_UnsupportedQuery",
                "Unsupported or invalid query filter clause specified for property "
                "'federatedIdentityCredentials' of resource 'Application'. Counting a "
                "relationship is an advanced query: send ConsistencyLevel: eventual and "
                "$count=true.",
            )
    raise GraphError(
        400,
        "Request_UnsupportedQuery",
        "Unsupported or invalid query filter clause specified for property of resource "
        "'Application'.",
    )


def _parse_select(text: str | None) -> list[str] | None:
    if not text:
        return None
    fields = [f.strip() for f in text.split(",") if f.strip()]
    for name in fields:
        if name not in APP_PROPERTIES:
            raise GraphError(
                400,
                "Request_BadRequest",
                f"Could not find a property named '{name}' on type 'microsoft.graph.application'.",
            )
    return fields


def _project(app: Application, select: list[str] | None, *, single: bool) -> dict[str, Any]:
    full = app.to_json()
    if select is None:
        return full
    out = {name: full[name] for name in select}
    if single and "keyCredentials" in out:
        # The raw key comes back only for one object with keyCredentials selected.
        out["keyCredentials"] = [k.to_json(with_key=True) for k in app.key_credentials]
    return out


def _skip_token(position: int) -> str:
    return base64.urlsafe_b64encode(f"RFNwdAIAAQ:{position}".encode()).decode().rstrip("=")


def _read_skip_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        return int(text.rsplit(":", 1)[1])
    except (ValueError, IndexError, binascii.Error) as exc:
        raise GraphError(400, "Request_BadRequest", "The skip token is invalid.") from exc


# ---------------------------------------------------------------------- applications


@graph_route("graph.list")
async def list_applications(request: Request) -> Response:
    caller = authenticate(request)
    require_read(caller)
    state = _state(request)
    query = request.query_params
    top_text = query.get("$top")
    try:
        top = int(top_text) if top_text else DEFAULT_PAGE
    except ValueError:
        top = -1
    if not 1 <= top <= MAX_PAGE:
        raise GraphError(
            400,
            "Request_BadRequest",
            f"Invalid page size specified: '{top_text}'. Must be between 1 and 999 inclusive.",
        )
    select = _parse_select(query.get("$select"))
    expand = parse_expand(query.get("$expand"))
    advanced = (request.headers.get("ConsistencyLevel", "").lower() == "eventual"
                and query.get("$count", "").lower() == "true")
    predicate = _parse_filter(query.get("$filter"), advanced=advanced)
    start = _read_skip_token(query["$skiptoken"]) if "$skiptoken" in query else 0
    apps, next_position = state.tenant.page(start, expand_page_size(top, expand), predicate)
    context = f"{state.base_url}/v1.0/$metadata#applications"
    if select:
        context += f"({','.join(select)})"
    body: dict[str, Any] = {"@odata.context": context}
    if advanced:
        body["@odata.count"] = state.tenant.count_apps(predicate)
    if next_position is not None:
        params = {k: v for k, v in query.items() if k != "$skiptoken"}
        params["$skiptoken"] = _skip_token(next_position)
        body["@odata.nextLink"] = (
            f"{state.base_url}/v1.0/applications?{urlencode(params, safe='$,()=')}"
        )
    replica = state.tenant.pick_replica()  # one replica serves the whole page
    views = [state.tenant.read_view(a, replica) for a in apps]
    body["value"] = [
        _project(a, select, single=False) if expand is None
        else with_owners(state, _project(a, select, single=False), a.owners, expand,
                         caller.roles)
        for a in views if a is not None
    ]
    return _json(request, body)


@graph_route("graph.get")
async def get_application(request: Request) -> Response:
    caller = authenticate(request)
    require_read(caller)
    state = _state(request)
    app = _target(request, state.tenant)
    # Served by a read replica, which may not have learned the latest writes yet.
    seen = state.tenant.read_view(app)
    if seen is None:
        raise graph_not_found(request.path_params.get("id") or request.path_params["app_id"])
    app = seen
    select = _parse_select(request.query_params.get("$select"))
    expand = parse_expand(request.query_params.get("$expand"))
    body = {"@odata.context": f"{state.base_url}/v1.0/$metadata#applications/$entity"}
    body.update(_project(app, select, single=True))
    if expand is not None:
        body = with_owners(state, body, app.owners, expand, caller.roles)
    return _json(request, body)


@graph_route("graph.create")
async def create_application(request: Request) -> Response:
    caller = authenticate(request)
    if not caller.roles & {"Application.ReadWrite.All", "Application.ReadWrite.OwnedBy"}:
        raise graph_denied()
    state = _state(request)
    tenant = state.tenant
    state.faults.admit_write(caller.app_id)
    body = await _body(request)
    name = body.get("displayName")
    if not isinstance(name, str) or not name:
        raise GraphError(
            400,
            "Request_BadRequest",
            "Property 'displayName' is required to create an application.",
        )
    if body.get("passwordCredentials"):
        raise GraphError(
            400,
            "Request_BadRequest",
            "Password credentials cannot be set on create; use addPassword.",
        )
    app = tenant.create_app(
        name,
        owned_by_rotator=False,
        owners=[caller.sp_id],
        service_principal=False,
        identifier_uris=[str(u) for u in body.get("identifierUris") or []],
        lagged=True,
    )
    if "signInAudience" in body:
        tenant.set_sign_in_audience(app.id, str(body["signInAudience"]))
    if "api" in body:
        tenant.set_access_token_version(app.id, _token_version(body["api"]))
    if body.get("keyCredentials"):
        tenant.replace_key_credentials(app.id, list(body["keyCredentials"]))
    log.info("created application %s (%s)", app.app_id, app.display_name)
    out = {"@odata.context": f"{state.base_url}/v1.0/$metadata#applications/$entity"}
    out.update(app.to_json())
    response = _json(request, out, 201)
    response.headers["location"] = f"{state.base_url}/v1.0/directoryObjects/{app.id}/"
    return response


@graph_route("graph.update")
async def update_application(request: Request) -> Response:
    caller = authenticate(request)
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    app = _writable(request, caller)
    body = await _body(request)
    if "passwordCredentials" in body:
        raise GraphError(
            400,
            "Request_BadRequest",
            "Property 'passwordCredentials' is read-only and cannot be set; use addPassword.",
        )
    async with state.faults.write_window(app.id):
        if "keyCredentials" in body:
            entries = body["keyCredentials"]
            if not isinstance(entries, list):
                raise GraphError(
                    400,
                    "BadRequest",
                    "Property keyCredentials in payload has a value that does not match schema.",
                )
            try:
                state.tenant.replace_key_credentials(app.id, entries)
            except (binascii.Error, ValueError) as exc:
                if isinstance(exc, GraphError):
                    raise
                raise GraphError(
                    400, "KeyCredentialsInvalidValue", "Key credential value is invalid."
                ) from exc
            log.info("replaced keyCredentials of %s (%d entries)", app.app_id, len(entries))
        if isinstance(body.get("displayName"), str):
            state.tenant.rename_app(app.id, body["displayName"])
        if "signInAudience" in body:
            state.tenant.set_sign_in_audience(app.id, str(body["signInAudience"]))
        if "api" in body:
            state.tenant.set_access_token_version(app.id, _token_version(body["api"]))
    return _no_content(request)


def _token_version(api: object) -> int | None:
    """``api.requestedAccessTokenVersion`` of a request body: null, 1 or 2."""
    version = api.get("requestedAccessTokenVersion") if isinstance(api, dict) else None
    if version not in (None, 1, 2):
        raise GraphError(
            400, "Request_BadRequest",
            "Invalid value specified for property 'requestedAccessTokenVersion' of resource "
            "'Application'.")
    return version


@graph_route("graph.delete")
async def delete_application(request: Request) -> Response:
    caller = authenticate(request)
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    app = _writable(request, caller)
    async with state.faults.write_window(app.id):
        state.tenant.delete_app(app.id)
    return _no_content(request)


@graph_route("graph.addPassword")
async def add_password(request: Request) -> Response:
    caller = authenticate(request)
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    app = _writable(request, caller)
    body = await _body(request)
    spec = body.get("passwordCredential") or {}
    if not isinstance(spec, dict):
        raise GraphError(400, "BadRequest", "Invalid passwordCredential.")
    async with state.faults.write_window(app.id):
        cred = state.tenant.add_password(
            app.id,
            spec.get("displayName"),
            _dt(spec.get("endDateTime"), "endDateTime"),
            _dt(spec.get("startDateTime"), "startDateTime"),
        )
    log.info("addPassword app=%s keyId=%s hint=%s", app.app_id, cred.key_id, cred.hint)
    out = {"@odata.context": f"{state.base_url}/v1.0/$metadata#microsoft.graph.passwordCredential"}
    out.update(cred.to_json(with_secret=True))
    return _json(request, out)


@graph_route("graph.removePassword")
async def remove_password(request: Request) -> Response:
    caller = authenticate(request)
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    app = _writable(request, caller)
    key_id = str((await _body(request)).get("keyId") or "")
    if not key_id:
        raise GraphError(400, "Request_BadRequest", "Property 'keyId' is required.")
    async with state.faults.write_window(app.id):
        state.tenant.remove_password(app.id, key_id)
    log.info("removePassword app=%s keyId=%s", app.app_id, key_id)
    return _no_content(request)


def check_proof(app: Application, proof: object) -> KeyCredential:
    """Validate an addKey/removeKey proof as Graph does; the signing certificate is returned."""
    return check_proof_of(app.key_credentials, app.id, proof, "application")


def check_proof_of(keys: list[KeyCredential], object_id: str, proof: object, kind: str
                   ) -> KeyCredential:
    """The proof rules for an application's or a service principal's own keys."""
    now = utcnow()
    valid = [k for k in keys if k.start <= now < k.end and k.der is not None
             and k.usage == "Verify"]
    if not valid:
        raise GraphError(
            400,
            "Request_BadRequest",
            f"The {kind} has no valid certificate to verify the proof of possession; "
            f"add the first certificate with PATCH /{kind}s/{{id}} (keyCredentials).",
        )
    if not isinstance(proof, str) or not proof:
        raise _bad_proof("no proof was sent")
    try:
        jws = parse_jws(proof, strict=True)
    except BadJws as exc:
        raise _bad_proof(f"the token is malformed ({exc})") from exc
    x5t = jws.x5t
    kid = jws.header.get("kid")
    signer = next(
        (
            k
            for k in valid
            if (x5t is not None and k.thumbprint == x5t)
            or (isinstance(kid, str) and kid.upper() in (k.thumbprint.hex().upper(),))
        ),
        None,
    )
    if signer is None or signer.public_key is None or not jws.verify(signer.public_key):
        raise _bad_proof(f"it is not signed by a valid certificate of the {kind}")
    claims = jws.claims
    if claims.get("aud") != PROOF_AUDIENCE:
        raise _bad_proof(f"the audience must be '{PROOF_AUDIENCE}'")
    if claims.get("iss") != object_id:
        raise _bad_proof(f"the issuer must be the {kind}'s object id")
    nbf, exp = claims.get("nbf"), claims.get("exp")
    if not isinstance(nbf, int | float) or not isinstance(exp, int | float):
        raise _bad_proof("nbf and exp are required")
    if exp - nbf > PROOF_MAX_LIFETIME:
        raise _bad_proof("its lifetime exceeds 10 minutes")
    stamp = time.time()
    if exp <= stamp or nbf > stamp + 300:
        raise _bad_proof("it is expired or not yet valid")
    return signer


def _bad_proof(reason: str) -> GraphError:
    # Graph answers every unusable proof alike, as an authentication failure; the reason
    # goes to the emulator's log only, as Graph keeps it to itself.
    log.info("proof of possession refused: %s", reason)
    return GraphError(401, "Authentication_MissingOrMalformed", PROOF_REFUSED_MESSAGE)


@graph_route("graph.addKey")
async def add_key(request: Request) -> Response:
    caller = authenticate(request)
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    app = _writable(request, caller)
    body = await _body(request)
    signer = check_proof(app, body.get("proof"))
    spec = body.get("keyCredential") or {}
    if not isinstance(spec, dict) or not spec.get("key"):
        raise GraphError(400, "KeyCredentialsInvalidValue", "Key credential value is invalid.")
    for required in ("type", "usage"):
        if not spec.get(required):
            raise GraphError(
                400,
                "Request_BadRequest",
                f"Property '{required}' of keyCredential is required.",
            )
    try:
        der = base64.b64decode(str(spec["key"]), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GraphError(
            400, "KeyCredentialsInvalidValue", "Key credential value is invalid."
        ) from exc
    if body.get("passwordCredential"):
        raise GraphError(
            400, "Request_BadRequest", "Symmetric keys are not supported by this emulator."
        )
    cred = state.tenant.make_key_credential(
        der,
        spec.get("displayName"),
        start=_dt(spec.get("startDateTime"), "startDateTime"),
        end=_dt(spec.get("endDateTime"), "endDateTime"),
        usage=str(spec["usage"]),
        key_type=str(spec["type"]),
    )
    async with state.faults.write_window(app.id):
        state.tenant.add_key(app.id, cred)
    log.info("addKey app=%s keyId=%s proofSigner=%s", app.app_id, cred.key_id, signer.key_id)
    out = {"@odata.context": f"{state.base_url}/v1.0/$metadata#microsoft.graph.keyCredential"}
    out.update(cred.to_json())
    return _json(request, out)


@graph_route("graph.removeKey")
async def remove_key(request: Request) -> Response:
    caller = authenticate(request)
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    app = _writable(request, caller)
    body = await _body(request)
    check_proof(app, body.get("proof"))
    key_id = str(body.get("keyId") or "")
    async with state.faults.write_window(app.id):
        state.tenant.remove_key(app.id, key_id)
    log.info("removeKey app=%s keyId=%s", app.app_id, key_id)
    return _no_content(request)


@graph_route("graph.owners")
async def list_owners(request: Request) -> Response:
    caller = authenticate(request)
    require_read(caller)
    state = _state(request)
    app = _target(request, state.tenant)
    return owners_response(request, caller, app.owners)


def owners_response(request: Request, caller: Caller, owner_ids: set[str]) -> Response:
    state = _state(request)
    shown: list[dict[str, Any]] = []
    for obj in state.tenant.owner_objects(owner_ids):
        if isinstance(obj, ServicePrincipal):
            shown.append({"@odata.type": "#microsoft.graph.servicePrincipal",
                          **_sp_json(state, obj)})
        else:
            shown.append(owner_json(obj, [], caller.roles))
    return _json(
        request,
        {"@odata.context": f"{state.base_url}/v1.0/$metadata#directoryObjects", "value": shown},
    )


@graph_route("graph.addOwner")
async def add_owner(request: Request) -> Response:
    caller = authenticate(request)
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    app = _writable(request, caller)
    ref = str((await _body(request)).get("@odata.id") or "")
    owner_id = ref.rstrip("/").rsplit("/", 1)[-1]
    async with state.faults.write_window(app.id):
        state.tenant.add_owner(app.id, owner_id)
    return _no_content(request)


# ---------------------------------------------------------------------- service principals


def _sp_json(state: EmulatorState, sp: ServicePrincipal) -> dict[str, Any]:
    return sp.to_json(state.tenant.app_roles_of(sp))


def _target_sp(request: Request) -> ServicePrincipal:
    tenant = _state(request).tenant
    params = request.path_params
    sp = tenant.sp_by_app_id(params["app_id"]) if "app_id" in params else tenant.sp(params["id"])
    if sp is None:
        raise graph_not_found(params.get("app_id") or params.get("id") or "")
    return sp


@graph_route("graph.createServicePrincipal")
async def create_service_principal(request: Request) -> Response:
    caller = authenticate(request)
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    body = await _body(request)
    app_id = str(body.get("appId") or "")
    app = state.tenant.app_by_app_id(app_id)
    if app is not None:
        require_write(state.tenant, caller, app)
    elif not caller.roles & {"Application.ReadWrite.All", "Application.ReadWrite.OwnedBy"}:
        raise graph_denied()
    sp = state.tenant.create_service_principal(app_id)
    out = {"@odata.context": f"{state.base_url}/v1.0/$metadata#servicePrincipals/$entity"}
    out.update(_sp_json(state, sp))
    return _json(request, out, 201)


@graph_route("graph.servicePrincipals")
async def list_service_principals(request: Request) -> Response:
    caller = authenticate(request)
    require_read(caller)
    return await graph_estate.list_service_principals(request, caller.roles)


@graph_route("graph.getServicePrincipal")
async def get_service_principal(request: Request) -> Response:
    caller = authenticate(request)
    require_read(caller)
    state = _state(request)
    sp = _target_sp(request)
    select = graph_estate._sp_select(request.query_params.get("$select"))
    expand = parse_expand(request.query_params.get("$expand"))
    out: dict[str, Any] = {
        "@odata.context": f"{state.base_url}/v1.0/$metadata#servicePrincipals/$entity"}
    out.update(graph_estate.sp_json(state, sp, select))
    if expand is not None:
        out = with_owners(state, out, sp.owners, expand, caller.roles)
    return _json(request, out)


@graph_route("graph.appRoleAssignment")
async def assign_app_role(request: Request) -> Response:
    caller = authenticate(request)
    if "AppRoleAssignment.ReadWrite.All" not in caller.roles:
        raise graph_denied()
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    sp = _target_sp(request)
    body = await _body(request)
    principal_id = str(body.get("principalId") or "")
    resource_id = str(body.get("resourceId") or "")
    if request.url.path.endswith("appRoleAssignedTo"):
        resource_id = resource_id or sp.id
        if resource_id != sp.id:
            raise GraphError(
                400, "Request_BadRequest", "resourceId must match the service principal."
            )
    else:
        principal_id = principal_id or sp.id
        if principal_id != sp.id:
            raise GraphError(
                400, "Request_BadRequest", "principalId must match the service principal."
            )
    assignment = state.tenant.assign_app_role(
        principal_id, resource_id, str(body.get("appRoleId") or "")
    )
    out = {"@odata.context": f"{state.base_url}/v1.0/$metadata#appRoleAssignments/$entity"}
    out.update(assignment.to_json())
    return _json(request, out, 201)


@graph_route("graph.listAppRoleAssignments")
async def list_app_role_assignments(request: Request) -> Response:
    caller = authenticate(request)
    require_read(caller)
    state = _state(request)
    sp = _target_sp(request)
    if request.url.path.endswith("appRoleAssignedTo"):
        found = state.tenant.assignments(resource_id=sp.id)
    else:
        found = state.tenant.assignments(principal_id=sp.id)
    return _json(
        request,
        {
            "@odata.context": f"{state.base_url}/v1.0/$metadata#appRoleAssignments",
            "value": [a.to_json() for a in found],
        },
    )


# ---------------------------------------------------------------------- app management policies

POLICY_READ_ROLES = frozenset({"Policy.Read.All", "Policy.ReadWrite.ApplicationConfiguration"})
POLICY_WRITE_ROLE = "Policy.ReadWrite.ApplicationConfiguration"


def require_policy_read(caller: Caller) -> None:
    if not caller.roles & POLICY_READ_ROLES:
        raise graph_denied()


def require_policy_write(caller: Caller) -> None:
    if POLICY_WRITE_ROLE not in caller.roles:
        raise graph_denied()


@graph_route("graph.getDefaultPolicy")
async def get_default_policy(request: Request) -> Response:
    caller = authenticate(request)
    require_policy_read(caller)
    state = _state(request)
    out: dict[str, Any] = {
        "@odata.context": f"{state.base_url}/v1.0/$metadata#policies/defaultAppManagementPolicy"
        "/$entity"
    }
    out.update(state.tenant.default_policy.to_json(tenant_default=True))
    return _json(request, out)


@graph_route("graph.updateDefaultPolicy")
async def update_default_policy(request: Request) -> Response:
    caller = authenticate(request)
    require_policy_write(caller)
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    state.tenant.update_default_policy(await _body(request))
    return _no_content(request)


@graph_route("graph.createPolicy")
async def create_policy(request: Request) -> Response:
    caller = authenticate(request)
    require_policy_write(caller)
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    body = await _body(request)
    name, description = body.get("displayName"), body.get("description")
    if not isinstance(name, str) or not name or not isinstance(description, str):
        raise GraphError(
            400, "Request_BadRequest", "Properties 'displayName' and 'description' are required."
        )
    policy = state.tenant.create_policy(
        name, description, bool(body.get("isEnabled", True)), body.get("restrictions")
    )
    out: dict[str, Any] = {
        "@odata.context": f"{state.base_url}/v1.0/$metadata#policies/appManagementPolicies/$entity"
    }
    out.update(policy.to_json())
    return _json(request, out, 201)


@graph_route("graph.listPolicies")
async def list_policies(request: Request) -> Response:
    caller = authenticate(request)
    require_policy_read(caller)
    state = _state(request)
    return _json(
        request,
        {
            "@odata.context": f"{state.base_url}/v1.0/$metadata#policies/appManagementPolicies",
            "value": [p.to_json() for p in state.tenant.policies()],
        },
    )


@graph_route("graph.getPolicy")
async def get_policy(request: Request) -> Response:
    caller = authenticate(request)
    require_policy_read(caller)
    state = _state(request)
    out: dict[str, Any] = {
        "@odata.context": f"{state.base_url}/v1.0/$metadata#policies/appManagementPolicies/$entity"
    }
    out.update(state.tenant.policy(request.path_params["policy_id"]).to_json())
    return _json(request, out)


@graph_route("graph.assignPolicy")
async def assign_policy(request: Request) -> Response:
    caller = authenticate(request)
    require_policy_write(caller)
    if "Application.ReadWrite.All" not in caller.roles:
        raise graph_denied()
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    app = _target(request, state.tenant)
    ref = str((await _body(request)).get("@odata.id") or "")
    policy_id = ref.rstrip("/").rsplit("/", 1)[-1]
    if not policy_id:
        raise GraphError(400, "Request_BadRequest", "Property '@odata.id' is required.")
    async with state.faults.write_window(app.id):
        state.tenant.assign_policy(app.id, policy_id)
    return _no_content(request)


@graph_route("graph.appPolicies")
async def list_app_policies(request: Request) -> Response:
    caller = authenticate(request)
    require_read(caller)
    require_policy_read(caller)
    state = _state(request)
    app = _target(request, state.tenant)
    return _json(
        request,
        {
            "@odata.context": f"{state.base_url}/v1.0/$metadata#appManagementPolicies",
            "value": [p.to_json() for p in state.tenant.policies_of(app.id)],
        },
    )


@graph_route("graph.policyAppliesTo")
async def list_policy_targets(request: Request) -> Response:
    caller = authenticate(request)
    require_read(caller)
    require_policy_read(caller)
    state = _state(request)
    targets = state.tenant.applications_of(request.path_params["policy_id"])
    return _json(
        request,
        {
            "@odata.context": f"{state.base_url}/v1.0/$metadata#directoryObjects",
            "value": [
                {"@odata.type": "#microsoft.graph.application", "id": app.id,
                 "appId": app.app_id, "displayName": app.display_name}
                for app in targets
            ],
        },
    )


def routes() -> list[BaseRoute]:
    app_forms = ("/v1.0/applications/{id}", "/v1.0/applications(appId='{app_id}')")
    sp_forms = ("/v1.0/servicePrincipals/{id}", "/v1.0/servicePrincipals(appId='{app_id}')")
    out: list[BaseRoute] = [
        Route("/v1.0/applications", list_applications, methods=["GET"]),
        Route("/v1.0/applications", create_application, methods=["POST"]),
        Route("/v1.0/servicePrincipals", list_service_principals, methods=["GET"]),
        Route("/v1.0/servicePrincipals", create_service_principal, methods=["POST"]),
        Route("/v1.0/policies/defaultAppManagementPolicy", get_default_policy, methods=["GET"]),
        Route(
            "/v1.0/policies/defaultAppManagementPolicy", update_default_policy, methods=["PATCH"]
        ),
        Route("/v1.0/policies/appManagementPolicies", create_policy, methods=["POST"]),
        Route("/v1.0/policies/appManagementPolicies", list_policies, methods=["GET"]),
        Route("/v1.0/policies/appManagementPolicies/{policy_id}", get_policy, methods=["GET"]),
        *graph_estate.routes(),
        Route("/v1.0/policies/appManagementPolicies/{policy_id}/appliesTo",
              list_policy_targets, methods=["GET"]),
    ]
    for base in app_forms:
        out += [
            Route(base, get_application, methods=["GET"]),
            Route(base, update_application, methods=["PATCH"]),
            Route(base, delete_application, methods=["DELETE"]),
            Route(base + "/addPassword", add_password, methods=["POST"]),
            Route(base + "/removePassword", remove_password, methods=["POST"]),
            Route(base + "/addKey", add_key, methods=["POST"]),
            Route(base + "/removeKey", remove_key, methods=["POST"]),
            Route(base + "/owners", list_owners, methods=["GET"]),
            Route(base + "/owners/$ref", add_owner, methods=["POST"]),
            Route(base + "/appManagementPolicies", list_app_policies, methods=["GET"]),
            Route(base + "/appManagementPolicies/$ref", assign_policy, methods=["POST"]),
        ]
    for base in sp_forms:
        out += [
            Route(base, get_service_principal, methods=["GET"]),
            Route(base + "/appRoleAssignedTo", assign_app_role, methods=["POST"]),
            Route(base + "/appRoleAssignments", assign_app_role, methods=["POST"]),
            Route(base + "/appRoleAssignedTo", list_app_role_assignments, methods=["GET"]),
            Route(base + "/appRoleAssignments", list_app_role_assignments, methods=["GET"]),
        ]
    return out
