"""Handlers of :mod:`rotator.emulator.graph_estate`'s routes."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from rotator.emulator.errors import GraphError, graph_denied, graph_not_found
from rotator.emulator.graph import (
    Caller,
    _body,
    _dt,
    _json,
    _no_content,
    _target,
    _target_sp,
    authenticate,
    check_proof_of,
    graph_route,
    owners_response,
    require_read,
)
from rotator.emulator.graph_estate import (
    BATCH_MAX,
    USER_READ_ROLES,
    _state,
    batch_body,
    batch_target,
)
from rotator.emulator.model import ServicePrincipal

log = logging.getLogger("rotator.emulator.graph")


def _sp_writable(request: Request, caller: Caller) -> ServicePrincipal:
    sp = _target_sp(request)
    if "Application.ReadWrite.All" in caller.roles:
        return sp
    if "Application.ReadWrite.OwnedBy" in caller.roles and caller.sp_id in sp.owners:
        return sp
    raise graph_denied()


# ---------------------------------------------------------------------- service principals


@graph_route("graph.spAddPassword")
async def sp_add_password(request: Request) -> Response:
    caller = authenticate(request)
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    sp = _sp_writable(request, caller)
    spec = (await _body(request)).get("passwordCredential") or {}
    if not isinstance(spec, dict):
        raise GraphError(400, "BadRequest", "Invalid passwordCredential.")
    cred = state.tenant.sp_add_password(
        sp.id, spec.get("displayName"), _dt(spec.get("endDateTime"), "endDateTime"),
        _dt(spec.get("startDateTime"), "startDateTime"))
    log.info("addPassword servicePrincipal=%s keyId=%s hint=%s", sp.id, cred.key_id, cred.hint)
    out = {"@odata.context": f"{state.base_url}/v1.0/$metadata#microsoft.graph.passwordCredential"}
    out.update(cred.to_json(with_secret=True))
    return _json(request, out)


@graph_route("graph.spRemovePassword")
async def sp_remove_password(request: Request) -> Response:
    caller = authenticate(request)
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    sp = _sp_writable(request, caller)
    key_id = str((await _body(request)).get("keyId") or "")
    if not key_id:
        raise GraphError(400, "Request_BadRequest", "Property 'keyId' is required.")
    state.tenant.sp_remove_password(sp.id, key_id)
    return _no_content(request)


@graph_route("graph.spAddKey")
async def sp_add_key(request: Request) -> Response:
    caller = authenticate(request)
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    sp = _sp_writable(request, caller)
    body = await _body(request)
    check_proof_of(sp.key_credentials, sp.id, body.get("proof"), "servicePrincipal")
    spec = body.get("keyCredential") or {}
    if not isinstance(spec, dict) or not spec.get("key"):
        raise GraphError(400, "KeyCredentialsInvalidValue", "Key credential value is invalid.")
    try:
        der = base64.b64decode(str(spec["key"]), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GraphError(400, "KeyCredentialsInvalidValue",
                         "Key credential value is invalid.") from exc
    cred = state.tenant.make_key_credential(
        der, spec.get("displayName"),
        start=_dt(spec.get("startDateTime"), "startDateTime"),
        end=_dt(spec.get("endDateTime"), "endDateTime"),
        usage=str(spec.get("usage") or "Verify"),
        key_type=str(spec.get("type") or "AsymmetricX509Cert"),
    )
    state.tenant.sp_add_key(sp.id, cred)
    out = {"@odata.context": f"{state.base_url}/v1.0/$metadata#microsoft.graph.keyCredential"}
    out.update(cred.to_json())
    return _json(request, out)


@graph_route("graph.spAddTokenSigningCertificate")
async def sp_add_token_signing_certificate(request: Request) -> Response:
    from datetime import timedelta

    from rotator.emulator.model import utcnow
    from rotator.emulator.pki import placeholder_cert_der

    caller = authenticate(request)
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    sp = _sp_writable(request, caller)
    body = await _body(request)
    name = str(body.get("displayName") or f"CN={sp.display_name}")
    start = utcnow()
    end = _dt(body.get("endDateTime"), "endDateTime") or start + timedelta(days=3 * 365)
    der = placeholder_cert_der(name, start, end)
    sign, _verify, _password = state.tenant.add_token_signing_certificate(
        sp.id, der, name, prefer=False)
    return _json(request, {
        "@odata.context": f"{state.base_url}/v1.0/$metadata#microsoft.graph.selfSignedCertificate",
        "customKeyIdentifier": sign.custom_key_identifier,
        "displayName": name,
        "endDateTime": sign.to_json()["endDateTime"],
        "key": base64.b64encode(der).decode(),
        "keyId": sign.key_id,
        "startDateTime": sign.to_json()["startDateTime"],
        "thumbprint": sign.custom_key_identifier,
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
    })


@graph_route("graph.spOwners")
async def sp_owners(request: Request) -> Response:
    caller = authenticate(request)
    require_read(caller)
    return owners_response(request, caller, _target_sp(request).owners)


@graph_route("graph.spAddOwner")
async def sp_add_owner(request: Request) -> Response:
    caller = authenticate(request)
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    sp = _sp_writable(request, caller)
    ref = str((await _body(request)).get("@odata.id") or "")
    state.tenant.add_sp_owner(sp.id, ref.rstrip("/").rsplit("/", 1)[-1])
    return _no_content(request)


# ---------------------------------------------------------------------- users


def _require_users(caller: Caller) -> None:
    if not caller.roles & USER_READ_ROLES:
        raise graph_denied()


@graph_route("graph.users")
async def list_users(request: Request) -> Response:
    caller = authenticate(request)
    _require_users(caller)
    state = _state(request)
    return _json(request, {
        "@odata.context": f"{state.base_url}/v1.0/$metadata#users",
        "value": [u.to_json() for u in state.tenant.users()],
    })


@graph_route("graph.getUser")
async def get_user(request: Request) -> Response:
    caller = authenticate(request)
    _require_users(caller)
    state = _state(request)
    wanted = request.path_params["user_id"].lower()
    found = next((u for u in state.tenant.users()
                  if wanted in (u.id, u.user_principal_name.lower())), None)
    if found is None:
        raise graph_not_found(wanted)
    out: dict[str, Any] = {"@odata.context": f"{state.base_url}/v1.0/$metadata#users/$entity"}
    out.update(found.to_json())
    return _json(request, out)


@graph_route("graph.createUser")
async def create_user(request: Request) -> Response:
    caller = authenticate(request)
    if "User.ReadWrite.All" not in caller.roles:
        raise graph_denied()
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    body = await _body(request)
    upn, name = body.get("userPrincipalName"), body.get("displayName")
    if not isinstance(upn, str) or "@" not in upn or not isinstance(name, str):
        raise GraphError(400, "Request_BadRequest",
                         "Properties 'displayName' and 'userPrincipalName' are required.")
    mail = body.get("mail")
    user = state.tenant.create_user(name, upn, mail if isinstance(mail, str) else None)
    out: dict[str, Any] = {"@odata.context": f"{state.base_url}/v1.0/$metadata#users/$entity"}
    out.update(user.to_json())
    return _json(request, out, 201)


# ---------------------------------------------------------------------- federated credentials


@graph_route("graph.listFederatedCredentials")
async def list_fics(request: Request) -> Response:
    caller = authenticate(request)
    require_read(caller)
    state = _state(request)
    app = _target(request, state.tenant)
    return _json(request, {
        "@odata.context": f"{state.base_url}/v1.0/$metadata#applications('{app.id}')/"
                          "federatedIdentityCredentials",
        "value": [f.to_json() for f in state.tenant.federated_credentials(app.id)],
    })


@graph_route("graph.createFederatedCredential")
async def create_fic(request: Request) -> Response:
    from rotator.emulator.graph import _writable

    caller = authenticate(request)
    state = _state(request)
    state.faults.admit_write(caller.app_id)
    app = _writable(request, caller)
    body = await _body(request)
    name, issuer, subject = body.get("name"), body.get("issuer"), body.get("subject")
    audiences = body.get("audiences") or ["api://AzureADTokenExchange"]
    if not all(isinstance(v, str) and v for v in (name, issuer, subject)) or not isinstance(
            audiences, list):
        raise GraphError(400, "Request_BadRequest",
                         "Properties 'name', 'issuer', 'subject' and 'audiences' are required.")
    fic = state.tenant.add_federated_credential(
        app.id, str(name), str(issuer), str(subject), [str(a) for a in audiences],
        body.get("description") if isinstance(body.get("description"), str) else None)
    out: dict[str, Any] = {"@odata.context": f"{state.base_url}/v1.0/$metadata#applications('"
                                             f"{app.id}')/federatedIdentityCredentials/$entity"}
    out.update(fic.to_json())
    return _json(request, out, 201)


# ---------------------------------------------------------------------- JSON batching


@graph_route("graph.batch")
async def batch(request: Request) -> Response:
    """``POST /$batch``: each request runs as if sent alone, with the batch's token."""
    body = await _body(request)
    items = body.get("requests")
    if not isinstance(items, list) or not items:
        raise GraphError(400, "BadRequest", "Invalid batch payload: 'requests' is required.")
    if len(items) > BATCH_MAX:
        raise GraphError(400, "BadRequest",
                         f"Invalid batch payload format: the number of requests exceeds the "
                         f"limit of {BATCH_MAX}.")
    ids = [item.get("id") if isinstance(item, dict) else None for item in items]
    if any(not isinstance(i, str) or not i for i in ids) or len(set(ids)) != len(ids):
        raise GraphError(400, "BadRequest",
                         "Invalid batch payload: every request needs a unique 'id'.")
    responses = [await _one(request, item) for item in items]
    return _json(request, {"responses": responses})


async def _one(request: Request, item: dict[str, Any]) -> dict[str, Any]:
    method = str(item.get("method") or "GET").upper()
    try:
        path, query = batch_target(item.get("url"))
    except GraphError as exc:
        return {"id": item["id"], "status": exc.status,
                "body": {"error": {"code": exc.code, "message": exc.message}}}
    payload = batch_body(item.get("body"))
    headers = [(k, v) for k, v in request.scope["headers"]
               if k in (b"authorization", b"client-request-id")]
    headers += [(b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode())]
    scope = {**request.scope, "path": path, "raw_path": path.encode(), "query_string": query,
             "method": method, "headers": headers}
    sent: list[bytes] = []
    status = 500
    out_headers: dict[str, str] = {}
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, out_headers
        if message["type"] == "http.response.start":
            status = int(message["status"])
            out_headers = {k.decode(): v.decode() for k, v in message.get("headers", [])
                           if k.lower() in (b"content-type", b"retry-after")}
        elif message["type"] == "http.response.body":
            sent.append(message.get("body", b""))

    await request.app(scope, receive, send)
    raw = b"".join(sent)
    answer: dict[str, Any] = {"id": item["id"], "status": status, "headers": out_headers}
    if raw:
        try:
            answer["body"] = json.loads(raw)
        except ValueError:
            answer["body"] = raw.decode(errors="replace")
    return answer
