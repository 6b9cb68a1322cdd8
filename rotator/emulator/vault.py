"""Azure Key Vault secrets (data plane), one vault at the emulator's base URL."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from rotator.emulator.errors import vault_error_response
from rotator.emulator.faults import guarded, vault_throttled
from rotator.emulator.state import EmulatorState
from rotator.emulator.tenant import VAULT_RESOURCE
from rotator.emulator.timeparse import from_epoch, to_epoch
from rotator.emulator.vaultstore import (
    RECOVERABLE_DAYS,
    RECOVERY_LEVEL,
    DeletedSecret,
    SecretVersion,
    VaultError,
    check_name,
)

log = logging.getLogger("rotator.emulator.vault")

VAULT_AUDIENCES = (VAULT_RESOURCE, VAULT_RESOURCE + "/", "cfa8b339-82a2-471a-a3c9-0fc0be7a4093")
DEFAULT_PAGE = 25

Handler = Callable[[Request], Awaitable[Response]]


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


def _challenge(state: EmulatorState) -> dict[str, str]:
    return {
        "WWW-Authenticate": (
            f'Bearer authorization="{state.authority}", resource="{VAULT_RESOURCE}"'
        )
    }


MAX_VALUE_BYTES = 25 * 1024
MAX_TAGS = 15
MAX_CONTENT_TYPE = 255


def check_limits(value: str | None, content_type: object, tags: object) -> None:
    """Key Vault's service limits on one secret version (400 ``BadParameter``)."""
    if value is not None and len(value.encode()) > MAX_VALUE_BYTES:
        raise VaultError(
            400,
            "BadParameter",
            f"The secret value is {len(value.encode())} bytes; the maximum allowed size is "
            f"{MAX_VALUE_BYTES} bytes (25 KB).",
        )
    if isinstance(content_type, str) and len(content_type) > MAX_CONTENT_TYPE:
        raise VaultError(
            400,
            "BadParameter",
            f"Property 'contentType' is {len(content_type)} characters long; the maximum "
            f"length is {MAX_CONTENT_TYPE}.",
        )
    if isinstance(tags, dict) and len(tags) > MAX_TAGS:
        raise VaultError(
            400,
            "BadParameter",
            f"The secret has {len(tags)} tags; at most {MAX_TAGS} tags are allowed.",
        )


def vault_route(name: str) -> Callable[[Handler], Handler]:
    def decorate(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                if not request.query_params.get("api-version"):
                    raise VaultError(
                        400, "BadParameter", "The 'api-version' query parameter is missing."
                    )
                wait = _state(request).faults.admit_vault()
                if wait > 0:
                    return vault_throttled(wait)
                return await handler(request)
            except VaultError as exc:
                return vault_error_response(exc.status, exc.code, exc.message, exc.inner)
            except _Unauthorized as exc:
                return vault_error_response(
                    401, "Unauthorized", str(exc), None, _challenge(_state(request))
                )

        run.__name__ = handler.__name__
        return guarded(name, "vault")(run)

    return decorate


class _Unauthorized(Exception):
    pass


def authorize(request: Request, action: str, plane: str = "secrets") -> str:
    """The calling app id; the challenge or a refusal otherwise."""
    state = _state(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _Unauthorized("AKV10000: Request is missing a Bearer or PoP token.")
    try:
        claims = state.tokens.verify(token.strip(), VAULT_AUDIENCES)
    except jwt.InvalidAudienceError as exc:
        raise _Unauthorized(
            f"AKV10022: Invalid audience. Expected {VAULT_RESOURCE}, found: other."
        ) from exc
    except jwt.ExpiredSignatureError as exc:
        raise _Unauthorized("AKV10032: Token expired.") from exc
    except jwt.InvalidTokenError as exc:
        raise _Unauthorized("AKV10032: Invalid issuer or signature.") from exc
    app_id = str(claims.get("appid"))
    if not state.tenant.has_vault_access(app_id):
        raise VaultError(
            403,
            "Forbidden",
            "Caller is not authorized to perform action on resource.\r\n"
            "If role assignments, deny assignments or role definitions were changed recently, "
            "please observe propagation time.\r\n"
            f"Caller: appid={app_id};oid={claims.get('oid')}\r\n"
            f"Action: 'Microsoft.KeyVault/vaults/{plane}/{action}'\r\n",
            "ForbiddenByRbac",
        )
    return app_id


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise VaultError(400, "BadParameter", "The request body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise VaultError(400, "BadParameter", "The request body must be a JSON object.")
    return body


def _attributes(version: SecretVersion) -> dict[str, Any]:
    attrs: dict[str, Any] = {"enabled": version.enabled}
    if version.nbf is not None:
        attrs["nbf"] = to_epoch(version.nbf)
    if version.exp is not None:
        attrs["exp"] = to_epoch(version.exp)
    attrs["created"] = to_epoch(version.created)
    attrs["updated"] = to_epoch(version.updated)
    attrs["recoveryLevel"] = RECOVERY_LEVEL
    attrs["recoverableDays"] = RECOVERABLE_DAYS
    return attrs


def bundle(
    base: str, version: SecretVersion, *, with_value: bool = True, item: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if with_value:
        out["value"] = version.value
    out["id"] = (
        f"{base}/secrets/{version.name}"
        if item
        else f"{base}/secrets/{version.name}/{version.version}"
    )
    if version.content_type is not None:
        out["contentType"] = version.content_type
    out["attributes"] = _attributes(version)
    if version.tags:
        out["tags"] = dict(version.tags)
    if version.kid is not None:
        out["kid"] = base + version.kid
        out["managed"] = True
    return out


def _deleted_bundle(base: str, deleted: DeletedSecret, *, item: bool = False) -> dict[str, Any]:
    out = bundle(base, deleted.versions[-1], with_value=False, item=item)
    out["recoveryId"] = f"{base}/deletedsecrets/{deleted.name}"
    out["deletedDate"] = to_epoch(deleted.deleted)
    out["scheduledPurgeDate"] = to_epoch(deleted.scheduled_purge)
    return out


def _page(request: Request, items: list[dict[str, Any]], path: str) -> Response:
    state = _state(request)
    query = request.query_params
    try:
        size = min(int(query.get("maxresults") or DEFAULT_PAGE), DEFAULT_PAGE)
        start = (
            int(base64.urlsafe_b64decode(query["$skiptoken"]).decode())
            if ("$skiptoken" in query)
            else 0
        )
    except (ValueError, binascii.Error) as exc:
        raise VaultError(400, "BadParameter", "Invalid paging parameter.") from exc
    chunk = items[start : start + size]
    next_link = None
    if start + size < len(items):
        params = {"api-version": query.get("api-version", "7.5")}
        params["$skiptoken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        params["maxresults"] = str(size)
        next_link = f"{state.base_url}{path}?{urlencode(params)}"
    return JSONResponse({"value": chunk, "nextLink": next_link})


# ---------------------------------------------------------------------- secrets


@vault_route("vault.set")
async def set_secret(request: Request) -> Response:
    app_id = authorize(request, "setSecret/action")
    state = _state(request)
    name = request.path_params["name"]
    check_name(name)
    body = await _body(request)
    value = body.get("value")
    if not isinstance(value, str):
        raise VaultError(400, "BadParameter", "Property 'value' is required.")
    check_limits(value, body.get("contentType"), body.get("tags"))
    attrs = body.get("attributes") or {}
    try:
        version = state.tenant.vault.set(
            name,
            value,
            content_type=body.get("contentType"),
            tags={str(k): str(v) for k, v in (body.get("tags") or {}).items()},
            enabled=bool(attrs.get("enabled", True)),
            nbf=from_epoch(attrs.get("nbf")),
            exp=from_epoch(attrs.get("exp")),
        )
    except ValueError as exc:
        if isinstance(exc, VaultError):
            raise
        raise VaultError(400, "BadParameter", str(exc)) from exc
    log.info("set secret name=%s version=%s by=%s", name, version.version, app_id)
    return JSONResponse(bundle(state.base_url, version))


@vault_route("vault.get")
async def get_secret(request: Request) -> Response:
    authorize(request, "getSecret/action")
    state = _state(request)
    version = state.tenant.vault.get(
        request.path_params["name"], request.path_params.get("version") or None
    )
    return JSONResponse(bundle(state.base_url, version))


@vault_route("vault.update")
async def update_secret(request: Request) -> Response:
    authorize(request, "writeSecret/action")
    state = _state(request)
    body = await _body(request)
    check_limits(None, body.get("contentType"), body.get("tags"))
    attrs = body.get("attributes") or {}
    version = state.tenant.vault.update(
        request.path_params["name"],
        request.path_params.get("version") or None,
        enabled=attrs.get("enabled"),
        exp=from_epoch(attrs.get("exp")),
        set_exp="exp" in attrs,
        nbf=from_epoch(attrs.get("nbf")),
        set_nbf="nbf" in attrs,
        content_type=body.get("contentType"),
        set_content_type="contentType" in body,
        tags=body.get("tags"),
    )
    return JSONResponse(bundle(state.base_url, version, with_value=False))


@vault_route("vault.delete")
async def delete_secret(request: Request) -> Response:
    authorize(request, "delete")
    state = _state(request)
    deleted = state.tenant.vault.delete(request.path_params["name"])
    log.info("deleted secret name=%s", deleted.name)
    return JSONResponse(_deleted_bundle(state.base_url, deleted))


@vault_route("vault.list")
async def list_secrets(request: Request) -> Response:
    authorize(request, "readMetadata/action")
    state = _state(request)
    items = [
        bundle(state.base_url, v, with_value=False, item=True) for v in state.tenant.vault.names()
    ]
    return _page(request, items, "/secrets")


@vault_route("vault.versions")
async def list_versions(request: Request) -> Response:
    authorize(request, "readMetadata/action")
    state = _state(request)
    name = request.path_params["name"]
    check_name(name)
    versions = state.tenant.vault.versions(name)
    items = [bundle(state.base_url, v, with_value=False) for v in versions]
    return _page(request, items, f"/secrets/{name}/versions")


# ---------------------------------------------------------------------- deleted secrets


@vault_route("vault.getDeleted")
async def get_deleted(request: Request) -> Response:
    authorize(request, "readMetadata/action")
    state = _state(request)
    deleted = state.tenant.vault.get_deleted(request.path_params["name"])
    return JSONResponse(_deleted_bundle(state.base_url, deleted))


@vault_route("vault.listDeleted")
async def list_deleted(request: Request) -> Response:
    authorize(request, "readMetadata/action")
    state = _state(request)
    items = [_deleted_bundle(state.base_url, d, item=True) for d in state.tenant.vault.deleted()]
    return _page(request, items, "/deletedsecrets")


@vault_route("vault.recover")
async def recover_deleted(request: Request) -> Response:
    authorize(request, "recover/action")
    state = _state(request)
    version = state.tenant.vault.recover(request.path_params["name"])
    return JSONResponse(bundle(state.base_url, version, with_value=False))


@vault_route("vault.purge")
async def purge_deleted(request: Request) -> Response:
    authorize(request, "purge/action")
    _state(request).tenant.vault.purge(request.path_params["name"])
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    return [
        Route("/secrets", list_secrets, methods=["GET"]),
        Route("/secrets/", list_secrets, methods=["GET"]),
        Route("/secrets/{name}/versions", list_versions, methods=["GET"]),
        Route("/secrets/{name}", set_secret, methods=["PUT"]),
        Route("/secrets/{name}", get_secret, methods=["GET"]),
        Route("/secrets/{name}", delete_secret, methods=["DELETE"]),
        Route("/secrets/{name}", update_secret, methods=["PATCH"]),
        Route("/secrets/{name}/", get_secret, methods=["GET"]),
        Route("/secrets/{name}/", update_secret, methods=["PATCH"]),
        Route("/secrets/{name}/{version}", get_secret, methods=["GET"]),
        Route("/secrets/{name}/{version}", update_secret, methods=["PATCH"]),
        Route("/deletedsecrets", list_deleted, methods=["GET"]),
        Route("/deletedsecrets/{name}", get_deleted, methods=["GET"]),
        Route("/deletedsecrets/{name}", purge_deleted, methods=["DELETE"]),
        Route("/deletedsecrets/{name}/recover", recover_deleted, methods=["POST"]),
    ]
