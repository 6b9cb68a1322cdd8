"""Graph v1.0 beyond app registrations: service principals with their own credentials,
owners (users and service principals), ``$expand=owners``, users, federated identity
credentials, and JSON batching."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rotator.emulator.errors import GraphError, graph_denied
from rotator.emulator.model import ServicePrincipal, User
from rotator.emulator.state import EmulatorState

# Graph answers at most this many objects a page when a listing expands a relationship,
# and at most this many objects of the expanded relationship.
EXPAND_MAX_PAGE = 100
EXPAND_MAX_ITEMS = 20
BATCH_MAX = 20
USER_READ_ROLES = frozenset({"User.Read.All", "User.ReadBasic.All", "Directory.Read.All"})
SP_PROPERTIES = frozenset({
    "id", "deletedDateTime", "accountEnabled", "appId", "appDisplayName",
    "appOwnerOrganizationId", "displayName", "preferredSingleSignOnMode",
    "preferredTokenSigningKeyThumbprint", "servicePrincipalNames", "servicePrincipalType",
    "signInAudience", "appRoles", "keyCredentials", "passwordCredentials",
})
_EXPAND = re.compile(r"^owners(?:\(\$select=([A-Za-z,]+)\))?$")


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


# ---------------------------------------------------------------------- $expand=owners


def parse_expand(text: str | None) -> list[str] | None:
    """``None`` when nothing is expanded; else the owner properties to show (empty: all)."""
    if not text:
        return None
    match = _EXPAND.match(text.strip())
    if match is None:
        raise GraphError(
            400, "Request_BadRequest",
            f"Parsing OData Select and Expand failed: Could not find a property named "
            f"'{text.split('(')[0]}' on type 'microsoft.graph.directoryObject' that can be "
            "expanded. This emulator expands 'owners' only.")
    return [f for f in (match.group(1) or "").split(",") if f]


def expand_page_size(top: int, expand: list[str] | None) -> int:
    return min(top, EXPAND_MAX_PAGE) if expand is not None else top


def owner_json(obj: User | ServicePrincipal, select: list[str], roles: frozenset[str]
               ) -> dict[str, Any]:
    if isinstance(obj, User):
        kind = "#microsoft.graph.user"
        # Without a user read permission Graph shows an owner as a bare directory object.
        full = obj.to_json() if roles & USER_READ_ROLES else {"id": obj.id}
    else:
        kind = "#microsoft.graph.servicePrincipal"
        full = {"id": obj.id, "appId": obj.app_id, "displayName": obj.display_name}
    shown = {k: v for k, v in full.items() if not select or k in select or k == "id"}
    return {"@odata.type": kind, **shown}


def with_owners(state: EmulatorState, item: dict[str, Any], owner_ids: set[str],
                select: list[str], roles: frozenset[str]) -> dict[str, Any]:
    owners = state.tenant.owner_objects(owner_ids)[:EXPAND_MAX_ITEMS]
    return {**item, "owners": [owner_json(o, select, roles) for o in owners]}


# ---------------------------------------------------------------------- service principals


def _skip(position: int) -> str:
    return base64.urlsafe_b64encode(f"U1BwdAIAAQ:{position}".encode()).decode().rstrip("=")


def _read_skip(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        return int(text.rsplit(":", 1)[1])
    except (ValueError, IndexError, binascii.Error) as exc:
        raise GraphError(400, "Request_BadRequest", "The skip token is invalid.") from exc


def _sp_select(text: str | None) -> list[str] | None:
    if not text:
        return None
    fields = [f.strip() for f in text.split(",") if f.strip()]
    for name in fields:
        if name not in SP_PROPERTIES:
            raise GraphError(
                400, "Request_BadRequest",
                f"Could not find a property named '{name}' on type "
                "'microsoft.graph.servicePrincipal'.")
    return fields


def sp_json(state: EmulatorState, sp: ServicePrincipal, select: list[str] | None
            ) -> dict[str, Any]:
    full = sp.to_json(state.tenant.app_roles_of(sp))
    return full if select is None else {k: full[k] for k in select}


async def list_service_principals(request: Request, roles: frozenset[str]) -> Response:
    """``GET /servicePrincipals``: paged like applications; ``$filter=appId eq '...'``."""
    from rotator.emulator.graph import DEFAULT_PAGE, MAX_PAGE, _json

    state = _state(request)
    query = request.query_params
    top_text = query.get("$top")
    try:
        top = int(top_text) if top_text else DEFAULT_PAGE
    except ValueError:
        top = -1
    if not 1 <= top <= MAX_PAGE:
        raise GraphError(
            400, "Request_BadRequest",
            f"Invalid page size specified: '{top_text}'. Must be between 1 and 999 inclusive.")
    select = _sp_select(query.get("$select"))
    expand = parse_expand(query.get("$expand"))
    predicate = None
    text = query.get("$filter")
    if text:
        match = re.match(r"^appId eq '([^']*)'$", text.strip(), re.I)
        if match is None:
            raise GraphError(
                400, "Request_UnsupportedQuery",
                "Unsupported or invalid query filter clause specified for property of resource "
                "'ServicePrincipal'.")
        wanted = match.group(1).lower()
        predicate = lambda sp: sp.app_id == wanted  # noqa: E731
    start = _read_skip(query["$skiptoken"]) if "$skiptoken" in query else 0
    sps, next_position = state.tenant.sp_page(start, expand_page_size(top, expand), predicate)
    context = f"{state.base_url}/v1.0/$metadata#servicePrincipals"
    if select:
        context += f"({','.join(select)})"
    body: dict[str, Any] = {"@odata.context": context}
    if next_position is not None:
        params = {k: v for k, v in query.items() if k != "$skiptoken"}
        params["$skiptoken"] = _skip(next_position)
        body["@odata.nextLink"] = (
            f"{state.base_url}/v1.0/servicePrincipals?{urlencode(params, safe='$,()=')}")
    values = [sp_json(state, sp, select) for sp in sps]
    if expand is not None:
        values = [with_owners(state, v, sp.owners, expand, roles) for v, sp in zip(values, sps,
                                                                                strict=True)]
    body["value"] = values
    return _json(request, body)


# ---------------------------------------------------------------------- routes


def routes() -> list[BaseRoute]:
    from rotator.emulator import graph_estate_routes as r

    sp_forms = ("/v1.0/servicePrincipals/{id}", "/v1.0/servicePrincipals(appId='{app_id}')")
    out: list[BaseRoute] = [
        Route("/v1.0/$batch", r.batch, methods=["POST"]),
        Route("/v1.0/users", r.list_users, methods=["GET"]),
        Route("/v1.0/users", r.create_user, methods=["POST"]),
        Route("/v1.0/users/{user_id}", r.get_user, methods=["GET"]),
    ]
    for base in sp_forms:
        out += [
            Route(base + "/addPassword", r.sp_add_password, methods=["POST"]),
            Route(base + "/removePassword", r.sp_remove_password, methods=["POST"]),
            Route(base + "/addKey", r.sp_add_key, methods=["POST"]),
            Route(base + "/addTokenSigningCertificate", r.sp_add_token_signing_certificate,
                  methods=["POST"]),
            Route(base + "/owners", r.sp_owners, methods=["GET"]),
            Route(base + "/owners/$ref", r.sp_add_owner, methods=["POST"]),
        ]
    for base in ("/v1.0/applications/{id}", "/v1.0/applications(appId='{app_id}')"):
        out += [
            Route(base + "/federatedIdentityCredentials", r.list_fics, methods=["GET"]),
            Route(base + "/federatedIdentityCredentials", r.create_fic, methods=["POST"]),
        ]
    return out


def require_sp_write(roles: frozenset[str]) -> None:
    if "Application.ReadWrite.All" not in roles:
        raise graph_denied()


def batch_target(url: object) -> tuple[str, bytes]:
    """A batch request's relative URL as a path under /v1.0 and a query string."""
    if not isinstance(url, str) or not url:
        raise GraphError(400, "BadRequest", "Invalid request: a batch request needs a 'url'.")
    parts = urlsplit(url if url.startswith("/") else "/" + url)
    if parts.scheme or parts.netloc:
        raise GraphError(400, "BadRequest", "Batch request URLs must be relative.")
    path = parts.path if parts.path.startswith("/v1.0/") else "/v1.0" + parts.path
    return path, parts.query.encode()


def batch_body(value: object) -> bytes:
    if value is None:
        return b""
    return json.dumps(value).encode()
