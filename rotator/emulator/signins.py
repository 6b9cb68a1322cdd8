"""The credential usage report: who signed in with which credential, and when.

The token endpoint records every successful token request per credential (``keyId``);
``GET /beta/reports/appCredentialSignInActivities`` serves the real resource's shape
(``appCredentialSignInActivity``), filtered with ``$filter=appId eq '<id>'``. Like the
real report it is aggregated with a lag: a sign-in shows up ``lag_seconds`` after it
happened (``--signin-report-lag-seconds``, default 10). Reading it needs the
``AuditLog.Read.All`` (or ``Directory.Read.All``) application role, else 403.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rotator.emulator.errors import GraphError
from rotator.emulator.model import iso, utcnow

REPORT_ROLES = frozenset({"AuditLog.Read.All", "Directory.Read.All"})
DEFAULT_LAG_SECONDS = 10.0
_NAMESPACE = uuid.UUID("0d7b4d9c-7a4e-4d53-9f57-5a8d1b3c2e10")
_FILTER = re.compile(r"^\s*appId\s+eq\s+'([0-9a-fA-F-]{36})'\s*$")


@dataclass(frozen=True, slots=True)
class SignIn:
    at: datetime
    request_id: str


@dataclass
class _Credential:
    app_id: str
    app_object_id: str
    sp_object_id: str | None
    key_type: str  # clientSecret | certificate
    key_usage: str  # verify | sign
    created: datetime
    expires: datetime
    sign_ins: deque[SignIn] = field(default_factory=deque)


class SignInLog:
    """Successful sign-ins per credential, as the report will show them after the lag."""

    def __init__(self, lag_seconds: float = DEFAULT_LAG_SECONDS) -> None:
        self.lag = timedelta(seconds=lag_seconds)
        self._lock = threading.Lock()
        self._by_key: dict[str, _Credential] = {}

    def record(self, *, key_id: str, app_id: str, app_object_id: str,
               sp_object_id: str | None, key_type: str, created: datetime, expires: datetime,
               at: datetime | None = None) -> SignIn:
        sign_in = SignIn(at or utcnow(), str(uuid.uuid4()))
        with self._lock:
            cred = self._by_key.get(key_id)
            if cred is None:
                cred = self._by_key[key_id] = _Credential(
                    app_id, app_object_id, sp_object_id, key_type, "verify", created, expires)
            cred.sign_ins.append(sign_in)
            # Keep only what the report can still show: the newest sign-in already past
            # the lag, and those after it.
            cutoff = sign_in.at - self.lag
            while len(cred.sign_ins) > 1 and cred.sign_ins[1].at <= cutoff:
                cred.sign_ins.popleft()
        return sign_in

    def last_visible(self, key_id: str, now: datetime | None = None) -> SignIn | None:
        cutoff = (now or utcnow()) - self.lag
        with self._lock:
            cred = self._by_key.get(key_id)
            seen = [s for s in cred.sign_ins if s.at <= cutoff] if cred else []
        return seen[-1] if seen else None

    def report(self, app_id: str | None, now: datetime | None = None) -> list[dict[str, Any]]:
        """``appCredentialSignInActivity`` items whose sign-ins are already visible."""
        now = now or utcnow()
        with self._lock:
            items = [(k, c) for k, c in self._by_key.items()
                     if app_id is None or c.app_id.lower() == app_id.lower()]
        out = []
        for key_id, cred in items:
            last = self.last_visible(key_id, now)
            if last is None:
                continue
            out.append({
                "id": str(uuid.uuid5(_NAMESPACE, f"{cred.app_id}/{key_id}")),
                "keyId": key_id,
                "appId": cred.app_id,
                "appObjectId": cred.app_object_id,
                "servicePrincipalObjectId": cred.sp_object_id,
                "resourceId": None,
                "credentialOrigin": "application",
                "keyType": cred.key_type,
                "keyUsage": cred.key_usage,
                "createdDateTime": iso(cred.created),
                "expirationDateTime": iso(cred.expires),
                "signInActivity": {
                    "lastSignInDateTime": iso(last.at),
                    "lastSignInRequestId": last.request_id,
                },
            })
        return out


async def list_activities(request: Request) -> Response:
    # Imported here: graph imports the token module, which imports this one.
    from rotator.emulator.graph import _json, _state, authenticate, graph_route

    @graph_route("appCredentialSignInActivities")
    async def handle(request: Request) -> Response:
        state = _state(request)
        caller = authenticate(request)
        if not caller.roles & REPORT_ROLES:
            raise GraphError(
                403, "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        text = request.query_params.get("$filter")
        app_id = None
        if text is not None:
            match = _FILTER.match(text)
            if match is None:
                raise GraphError(400, "BadRequest", f"Invalid filter clause: {text}")
            app_id = match.group(1)
        return _json(request, {
            "@odata.context": f"{state.base_url}/beta/$metadata#reports/"
                              "appCredentialSignInActivities",
            "value": state.signins.report(app_id),
        })

    return await handle(request)


def routes() -> list[BaseRoute]:
    return [Route("/beta/reports/appCredentialSignInActivities", list_activities,
                  methods=["GET"])]
