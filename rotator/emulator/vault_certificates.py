"""Azure Key Vault certificates and their backing keys (data plane), beside the secrets.

Shapes follow the REST API that azure-keyvault-certificates speaks (7.x): import, create
as a long-running operation (``/pending``), get latest and by version, versions, update
attributes and tags, get and update the policy; ``GET /keys/{name}/{version}`` serves a
certificate's public key. Challenge auth, throttling, limits and error shapes are the
secrets' (:mod:`rotator.emulator.vault`).
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from rotator.emulator.certstore import CertVersion, Operation, content_type_of
from rotator.emulator.pki import b64url
from rotator.emulator.state import EmulatorState
from rotator.emulator.timeparse import to_epoch
from rotator.emulator.vault import _body, _page, authorize, check_limits, vault_route
from rotator.emulator.vaultstore import RECOVERABLE_DAYS, RECOVERY_LEVEL, VaultError

log = logging.getLogger("rotator.emulator.vault")

PLANE = "certificates"


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


def _attributes(version: CertVersion) -> dict[str, Any]:
    return {
        "enabled": version.enabled,
        "nbf": to_epoch(version.certificate.not_valid_before_utc),
        "exp": to_epoch(version.certificate.not_valid_after_utc),
        "created": to_epoch(version.created),
        "updated": to_epoch(version.updated),
        "recoveryLevel": RECOVERY_LEVEL,
        "recoverableDays": RECOVERABLE_DAYS,
    }


def _x5t(version: CertVersion) -> str:
    return b64url(version.certificate.fingerprint(hashes.SHA1()))  # noqa: S303 - x5t is SHA-1


def _policy_json(base: str, name: str, policy: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"{base}/certificates/{name}/policy", **policy,
            "attributes": {"enabled": True}}


def _bundle(request: Request, version: CertVersion, *, with_policy: bool = True
            ) -> dict[str, Any]:
    state = _state(request)
    base = state.base_url
    out: dict[str, Any] = {
        "id": f"{base}/certificates/{version.name}/{version.version}",
        "kid": f"{base}/keys/{version.name}/{version.version}",
        "sid": f"{base}/secrets/{version.name}/{version.version}",
        "x5t": _x5t(version),
        "cer": base64.b64encode(version.der).decode("ascii"),
        "attributes": _attributes(version),
    }
    if with_policy:
        policy = state.tenant.certificates.policy(version.name)
        out["contentType"] = content_type_of(policy)
        out["policy"] = _policy_json(base, version.name, policy)
    if version.tags:
        out["tags"] = dict(version.tags)
    return out


def _item(request: Request, version: CertVersion, *, latest: bool) -> dict[str, Any]:
    base = _state(request).base_url
    out: dict[str, Any] = {
        "id": (f"{base}/certificates/{version.name}" if latest
               else f"{base}/certificates/{version.name}/{version.version}"),
        "x5t": _x5t(version),
        "attributes": _attributes(version),
    }
    if version.tags:
        out["tags"] = dict(version.tags)
    return out


def _operation(request: Request, op: Operation) -> dict[str, Any]:
    base = _state(request).base_url
    out: dict[str, Any] = {
        "id": f"{base}/certificates/{op.name}/pending",
        "issuer": {"name": (op.policy.get("issuer") or {}).get("name", "Self")},
        "cancellation_requested": False,
        "status": op.status,
        "request_id": op.request_id,
    }
    if op.csr:
        out["csr"] = base64.b64encode(op.csr).decode("ascii")
    if op.status == "inProgress":
        out["status_details"] = ("Pending certificate created. Certificate request is in "
                                 "progress. This may take some time based on the issuer "
                                 "provider. Please check again later.")
    else:
        out["target"] = f"{base}/certificates/{op.name}"
    return out


def _tags(body: dict[str, Any]) -> dict[str, str] | None:
    tags = body.get("tags")
    if tags is None:
        return None
    if not isinstance(tags, dict):
        raise VaultError(400, "BadParameter", "Property 'tags' must be an object.")
    return {str(k): str(v) for k, v in tags.items()}


def _policy(body: dict[str, Any]) -> dict[str, Any] | None:
    policy = body.get("policy")
    if policy is None:
        return None
    if not isinstance(policy, dict):
        raise VaultError(400, "BadParameter", "Property 'policy' must be an object.")
    policy = {k: v for k, v in policy.items() if k not in ("id", "attributes")}
    return policy


# ---------------------------------------------------------------------- certificates


@vault_route("vault.certImport")
async def import_certificate(request: Request) -> Response:
    app_id = authorize(request, "import/action", PLANE)
    name = request.path_params["name"]
    body = await _body(request)
    value = body.get("value")
    if not isinstance(value, str) or not value:
        raise VaultError(400, "BadParameter", "Property 'value' is required.")
    check_limits(None, None, body.get("tags"))
    attrs = body.get("attributes") or {}
    pwd = body.get("pwd")
    version = _state(request).tenant.certificates.import_certificate(
        name, value, password=pwd if isinstance(pwd, str) and pwd else None,
        policy=_policy(body), tags=_tags(body), enabled=bool(attrs.get("enabled", True)),
    )
    log.info("imported certificate name=%s version=%s by=%s", name, version.version, app_id)
    return JSONResponse(_bundle(request, version))


@vault_route("vault.certCreate")
async def create_certificate(request: Request) -> Response:
    app_id = authorize(request, "create/action", PLANE)
    name = request.path_params["name"]
    body = await _body(request)
    check_limits(None, None, body.get("tags"))
    attrs = body.get("attributes") or {}
    op = _state(request).tenant.certificates.begin_create(
        name, _policy(body), _tags(body), bool(attrs.get("enabled", True)))
    log.info("create certificate name=%s request=%s by=%s", name, op.request_id, app_id)
    base = _state(request).base_url
    return JSONResponse(
        _operation(request, op), status_code=202,
        headers={"Location": f"{base}/certificates/{op.name}/pending"
                             f"?api-version={request.query_params['api-version']}",
                 "Retry-After": "10"},
    )


@vault_route("vault.certPending")
async def get_operation(request: Request) -> Response:
    authorize(request, "get", PLANE)
    op = _state(request).tenant.certificates.operation(request.path_params["name"])
    return JSONResponse(_operation(request, op))


@vault_route("vault.certGet")
async def get_certificate(request: Request) -> Response:
    authorize(request, "get", PLANE)
    version = _state(request).tenant.certificates.get(
        request.path_params["name"], request.path_params.get("version") or None)
    return JSONResponse(_bundle(request, version))


@vault_route("vault.certUpdate")
async def update_certificate(request: Request) -> Response:
    authorize(request, "update/action", PLANE)
    body = await _body(request)
    check_limits(None, None, body.get("tags"))
    attrs = body.get("attributes") or {}
    enabled = attrs.get("enabled")
    version = _state(request).tenant.certificates.update(
        request.path_params["name"], request.path_params.get("version") or None,
        enabled=bool(enabled) if enabled is not None else None, tags=_tags(body),
    )
    return JSONResponse(_bundle(request, version))


@vault_route("vault.certVersions")
async def list_versions(request: Request) -> Response:
    authorize(request, "list", PLANE)
    name = request.path_params["name"]
    versions = _state(request).tenant.certificates.versions(name)
    items = [_item(request, v, latest=False) for v in versions]
    return _page(request, items, f"/certificates/{name}/versions")


@vault_route("vault.certList")
async def list_certificates(request: Request) -> Response:
    authorize(request, "list", PLANE)
    items = [_item(request, v, latest=True) for v in _state(request).tenant.certificates.names()]
    return _page(request, items, "/certificates")


@vault_route("vault.certPolicy")
async def get_policy(request: Request) -> Response:
    authorize(request, "get", PLANE)
    name = request.path_params["name"]
    policy = _state(request).tenant.certificates.policy(name)
    return JSONResponse(_policy_json(_state(request).base_url, name, policy))


@vault_route("vault.certPolicyUpdate")
async def update_policy(request: Request) -> Response:
    authorize(request, "update/action", PLANE)
    name = request.path_params["name"]
    body = await _body(request)
    changes = {k: v for k, v in body.items() if k not in ("id", "attributes")}
    policy = _state(request).tenant.certificates.update_policy(name, changes)
    return JSONResponse(_policy_json(_state(request).base_url, name, policy))


# ---------------------------------------------------------------------- backing keys


@vault_route("vault.keyGet")
async def get_key(request: Request) -> Response:
    authorize(request, "read/action", "keys")
    version = _state(request).tenant.certificates.key_of(
        request.path_params["name"], request.path_params.get("version") or None)
    base = _state(request).base_url
    jwk: dict[str, Any] = {"kid": f"{base}/keys/{version.name}/{version.version}"}
    public = version.certificate.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        jwk.update(kty="RSA", n=b64url(_int_bytes(numbers.n)), e=b64url(_int_bytes(numbers.e)),
                   key_ops=["sign", "verify", "wrapKey", "unwrapKey", "encrypt", "decrypt"])
    elif isinstance(public, ec.EllipticCurvePublicKey):
        point = public.public_numbers()
        size = (public.curve.key_size + 7) // 8
        jwk.update(kty="EC", crv="P-256", x=b64url(point.x.to_bytes(size, "big")),
                   y=b64url(point.y.to_bytes(size, "big")), key_ops=["sign", "verify"])
    attrs = _attributes(version)
    return JSONResponse({"key": jwk, "attributes": attrs, "managed": True})


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def routes() -> list[BaseRoute]:
    # The fixed sub-paths come before /certificates/{name}/{version}, which would take them.
    return [
        Route("/certificates", list_certificates, methods=["GET"]),
        Route("/certificates/", list_certificates, methods=["GET"]),
        Route("/certificates/{name}/import", import_certificate, methods=["POST"]),
        Route("/certificates/{name}/create", create_certificate, methods=["POST"]),
        Route("/certificates/{name}/pending", get_operation, methods=["GET"]),
        Route("/certificates/{name}/versions", list_versions, methods=["GET"]),
        Route("/certificates/{name}/policy", get_policy, methods=["GET"]),
        Route("/certificates/{name}/policy", update_policy, methods=["PATCH"]),
        Route("/certificates/{name}", get_certificate, methods=["GET"]),
        Route("/certificates/{name}/", get_certificate, methods=["GET"]),
        Route("/certificates/{name}/", update_certificate, methods=["PATCH"]),
        Route("/certificates/{name}/{version}", get_certificate, methods=["GET"]),
        Route("/certificates/{name}/{version}", update_certificate, methods=["PATCH"]),
        Route("/keys/{name}", get_key, methods=["GET"]),
        Route("/keys/{name}/", get_key, methods=["GET"]),
        Route("/keys/{name}/{version}", get_key, methods=["GET"]),
    ]
