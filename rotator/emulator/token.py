"""The Entra ID v2.0 endpoints MSAL and azure-identity use: discovery, JWKS, client credentials."""

from __future__ import annotations

import hmac
import logging
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from rotator.emulator.errors import AadError, aad_error_response
from rotator.emulator.faults import guarded
from rotator.emulator.jws import BadJws, parse_jws
from rotator.emulator.model import (
    Application,
    KeyCredential,
    PasswordCredential,
    iso,
    known_to,
    utcnow,
)
from rotator.emulator.state import EmulatorState

log = logging.getLogger("rotator.emulator.token")

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


def _tenant_or_error(request: Request) -> EmulatorState:
    state = _state(request)
    wanted = request.path_params["tenant"].lower()
    if wanted not in (state.tenant.tenant_id, state.tenant.domain):
        raise AadError(
            400,
            "invalid_request",
            90002,
            f"Tenant '{request.path_params['tenant']}' not found. Check to make sure you have "
            "the correct tenant ID and are signing into the correct cloud.",
        )
    return state


async def openid_configuration(request: Request) -> Response:
    try:
        state = _tenant_or_error(request)
    except AadError as exc:
        return aad_error_response(exc)
    base, tid = state.base_url, state.tenant.tenant_id
    return JSONResponse(
        {
            "token_endpoint": f"{base}/{tid}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": state.issuer,
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{tid}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "ver"],
            "kerberos_endpoint": f"{base}/{tid}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "emulated",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }
    )


async def jwks(request: Request) -> Response:
    return JSONResponse(_state(request).tokens.jwks())


async def openid_configuration_v1(request: Request) -> Response:
    """The v1 endpoint's discovery document: what v1 access tokens name as issuer."""
    try:
        state = _tenant_or_error(request)
    except AadError as exc:
        return aad_error_response(exc)
    base, tid = state.base_url, state.tenant.tenant_id
    return JSONResponse({
        "token_endpoint": f"{base}/{tid}/oauth2/token",
        "jwks_uri": f"{base}/{tid}/discovery/keys",
        "issuer": state.tokens.v1_issuer,
        "authorization_endpoint": f"{base}/{tid}/oauth2/authorize",
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token",
                                     "token"],
        "subject_types_supported": ["pairwise"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "emulated",
    })


@guarded("token", "token")
async def token(request: Request) -> Response:
    try:
        return await _token(request)
    except AadError as exc:
        return aad_error_response(exc)


async def _token(request: Request) -> Response:
    state = _tenant_or_error(request)
    tenant = state.tenant
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
    grant_type = form.get("grant_type")
    if grant_type is None:
        raise _missing("grant_type")
    if grant_type != "client_credentials":
        raise AadError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'.",
        )
    client_id = form.get("client_id")
    if not client_id:
        raise _missing("client_id")
    scope = form.get("scope")
    if not scope:
        raise _missing("scope")
    scopes = scope.split()
    if len(scopes) != 1 or not scopes[0].endswith("/.default"):
        raise AadError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must "
            "have a scope value with /.default suffixed to the resource identifier "
            "(application ID URI).",
        )
    # The app registration, with its service principal's own credentials beside its own.
    app = tenant.token_client(client_id)
    if app is None:
        raise AadError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{tenant.domain}'. This can happen if the application has not been installed by "
            "the administrator of the tenant or consented to by any user in the tenant. You may "
            "have sent your authentication request to the wrong tenant.",
        )
    replica = tenant.pick_replica()
    if form.get("client_assertion"):
        if form.get("client_assertion_type") != JWT_BEARER:
            raise AadError(
                400,
                "invalid_request",
                700023,
                f"Invalid client_assertion_type. The assertion type must be '{JWT_BEARER}'.",
            )
        cred: KeyCredential | PasswordCredential = _check_assertion(
            state, request, app, form["client_assertion"], replica)
        appidacr = "2"
        log.info("token via certificate app=%s keyId=%s", client_id, cred.key_id)
    elif form.get("client_secret"):
        cred = _check_secret(state, app, form["client_secret"], replica)
        appidacr = "1"
    else:
        raise AadError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or "
            "'client_secret'.",
        )
    client_sp = tenant.sp_by_app_id(client_id)
    if client_sp is None:
        raise AadError(
            400,
            "invalid_client",
            7000229,
            f"The client application {client_id} is missing service principal in the tenant "
            f"{tenant.tenant_id}. See instructions here: "
            "https://go.microsoft.com/fwlink/?linkid=2225119",
        )
    resource_name = scopes[0][: -len("/.default")]
    resource = tenant.resolve_resource(resource_name)
    if resource is None:
        raise AadError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource_name} was not found in the tenant named "
            f"{tenant.domain}. This can happen if the application has not been installed by the "
            "administrator of the tenant or consented to by any user in the tenant. You might "
            "have sent your authentication request to the wrong tenant.",
        )
    version = tenant.token_version_for(resource)
    audience = resource_name.rstrip("/")
    if resource is tenant.graph_sp:
        audience = "https://graph.microsoft.com"
    elif resource is tenant.vault_sp:
        audience = "https://vault.azure.net"
    elif resource is tenant.ossrdbms_sp:
        audience = "https://ossrdbms-aad.database.windows.net"
    elif version == 2:
        audience = resource.app_id  # a v2 token's audience is always the API's app id
    access_token = state.tokens.issue(
        audience=audience,
        client_app_id=client_id,
        client_sp_id=client_sp.id,
        appidacr=appidacr,
        roles=tenant.roles_for(client_sp, resource),
        version=version,
    )
    state.signins.record(
        key_id=cred.key_id, app_id=app.app_id, app_object_id=app.id,
        sp_object_id=client_sp.id,
        key_type="certificate" if isinstance(cred, KeyCredential) else "clientSecret",
        created=cred.start, expires=cred.end,
    )
    return JSONResponse(
        {
            "token_type": "Bearer",
            "expires_in": state.tokens.lifetime,
            "ext_expires_in": state.tokens.lifetime,
            "access_token": access_token,
        },
        headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
    )


def _missing(name: str) -> AadError:
    return AadError(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


def _check_secret(
    state: EmulatorState, app: Application, secret: str, replica: int
) -> PasswordCredential:
    cred = state.tenant.match_secret(app, secret)
    if cred is None:
        # Removal propagates too: a replica that has not heard of it still accepts it.
        cred = next(
            (
                c
                for c in state.tenant.lingering(app, replica)
                if isinstance(c, PasswordCredential)
                and hmac.compare_digest(c.secret_text.encode(), secret.encode())
            ),
            None,
        )
    # A secret the chosen replica has not heard of yet looks exactly like a wrong one.
    if cred is None or not known_to(cred.visible_at, replica) or cred.start > utcnow():
        raise AadError(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the "
            f"client secret value, not the client secret ID, for a secret added to app "
            f"'{app.app_id}'.",
        )
    if cred.end <= utcnow():
        raise AadError(
            401,
            "invalid_client",
            7000222,
            f"The provided client secret keys for app '{app.app_id}' are expired. Visit the "
            "Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or "
            "consider using certificate credentials for added security: "
            "https://aka.ms/certCreds.",
        )
    log.info("token via secret app=%s keyId=%s hint=%s", app.app_id, cred.key_id, cred.hint)
    return cred


def _check_assertion(
    state: EmulatorState, request: Request, app: Application, assertion: str, replica: int
) -> KeyCredential:
    try:
        jws = parse_jws(assertion)
    except BadJws as exc:
        raise AadError(
            400,
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.",
        ) from exc
    claims = jws.claims
    if claims.get("iss") != app.app_id or claims.get("sub") != app.app_id:
        raise AadError(
            401,
            "invalid_client",
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter. "
            "Review the documentation at https://docs.microsoft.com/en-us/azure/active-"
            "directory/develop/active-directory-certificate-credentials .",
        )
    x5t, x5t_s256 = jws.x5t, jws.x5t_s256
    shown = (x5t or x5t_s256 or b"").hex().upper()
    with_keys = list(app.key_credentials) + [
        k for k in state.tenant.lingering(app, replica) if isinstance(k, KeyCredential)
    ]
    cred = next(
        (
            k
            for k in with_keys
            if (x5t_s256 is not None and k.sha256 == x5t_s256)
            or (x5t_s256 is None and x5t is not None and k.thumbprint == x5t)
        ),
        None,
    )
    if cred is None or not known_to(cred.visible_at, replica) or cred.public_key is None:
        raise AadError(
            401,
            "invalid_client",
            700027,
            "The certificate with identifier used to sign the client assertion is not "
            f"registered on application. [Reason - The key was not found., Thumbprint of key "
            f"used by client: '{shown}', Please visit the Azure Portal, Graph Explorer or "
            f"directly use MS Graph to see configured keys for app Id '{app.app_id}'. Review "
            "the documentation at https://docs.microsoft.com/en-us/graph/api/application-get "
            "to learn more about how to get the keys.]",
        )
    now = utcnow()
    if cred.end <= now or cred.start > now:
        raise AadError(
            401,
            "invalid_client",
            700027,
            f"Client assertion contains an invalid signature. [Reason - The key used is "
            f"expired., Thumbprint of key used by client: '{shown}', Found key 'Start="
            f"{iso(cred.start)}, End={iso(cred.end)}']",
        )
    if not jws.verify(cred.public_key):
        raise AadError(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation. [Reason - The provided signature "
            f"value did not match the expected signature value., Thumbprint of key used by "
            f"client: '{shown}']",
        )
    expected_aud = {
        f"{state.base_url}/{request.path_params['tenant']}/oauth2/v2.0/token".lower(),
        f"{state.base_url}/{state.tenant.tenant_id}/oauth2/v2.0/token".lower(),
    }
    aud = claims.get("aud")
    if not isinstance(aud, str) or aud.lower() not in expected_aud:
        raise AadError(
            401,
            "invalid_client",
            700023,
            f"Client assertion audience claim does not match Realm issuer. Review the "
            f"documentation at https://learn.microsoft.com/entra/identity-platform/"
            f"certificate-credentials . Audience '{aud}'.",
        )
    exp, nbf = claims.get("exp"), claims.get("nbf")
    stamp = time.time()
    if (
        not isinstance(exp, int | float)
        or exp < stamp - 300
        or (isinstance(nbf, int | float) and nbf > stamp + 300)
    ):
        valid_to = datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None
        raise AadError(
            401,
            "invalid_client",
            700024,
            f"Client assertion is not within its valid time range. Current time: "
            f"{iso(now)}, expiry time of assertion {iso(valid_to)}.",
        )
    return cred
