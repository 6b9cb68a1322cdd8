"""The credential usage report: ``GET /beta/reports/appCredentialSignInActivities``.

:class:`rotator.ports.UsageReport` over plain HTTPS with a Graph token from the same
credential as the rest (the report is beta and not in the v1.0 SDK). Needs the
application permission ``AuditLog.Read.All``. A refusal that waiting will not fix
(403, 404, 400) or a body of a shape rotator does not know is
:class:`UsageReportUnavailable` (the engine falls back to the grace rule); throttling,
outages and network errors are transient :class:`DirectoryError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from rotator.adapters.sdk_clients import graph_scopes, ssl_context
from rotator.ports import DirectoryError, UsageReportUnavailable

REPORT_PATH = "/reports/appCredentialSignInActivities"
MAX_PAGES = 100


def beta_url(graph_url: str) -> str:
    """``https://graph.microsoft.com/v1.0`` -> ``https://graph.microsoft.com/beta``."""
    base = graph_url.rstrip("/")
    if base.endswith("/v1.0"):
        base = base[: -len("/v1.0")]
    return f"{base}/beta"


class GraphUsageReport:
    def __init__(self, credential: Any, *, graph_url: str, ca_bundle: str | None = None,
                 timeout: float = 30.0) -> None:
        self._credential = credential
        self._graph_url = graph_url
        # The process's one TLS context: the system store plus the extra CA, built once.
        self._verify = ssl_context(ca_bundle)
        self._timeout = timeout

    async def last_sign_ins(self, app_id: str) -> Mapping[str, datetime | None]:
        token = await self._credential.get_token(*graph_scopes(self._graph_url))
        headers = {"Authorization": f"Bearer {token.token}", "Accept": "application/json"}
        url: str | None = beta_url(self._graph_url) + REPORT_PATH
        params: dict[str, str] | None = {"$filter": f"appId eq '{app_id}'"}
        found: dict[str, datetime | None] = {}
        async with httpx.AsyncClient(verify=self._verify, timeout=self._timeout) as client:
            for _ in range(MAX_PAGES):
                if url is None:
                    break
                try:
                    response = await client.get(url, params=params, headers=headers)
                except httpx.HTTPError as exc:
                    raise DirectoryError(f"usage report: {type(exc).__name__}: {exc}",
                                         transient=True) from None
                body = _checked(response)
                found.update(_rows(body))
                next_link = body.get("@odata.nextLink")
                url, params = (next_link, None) if isinstance(next_link, str) else (None, None)
        return found


def _checked(response: httpx.Response) -> dict[str, Any]:
    status = response.status_code
    code = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
    if status in (408, 429) or status >= 500:
        retry = response.headers.get("Retry-After")
        raise DirectoryError(
            f"usage report: HTTP {status}" + (f" {code}" if code else ""), status=status,
            code=code, retry_after=float(retry) if retry and retry.isdigit() else None,
        )
    if status != 200:
        hint = " (the permission AuditLog.Read.All is missing?)" if status == 403 else ""
        raise UsageReportUnavailable(
            f"the credential usage report answered HTTP {status}"
            + (f" {code}" if code else "") + hint,
            status=status,
        )
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        raise UsageReportUnavailable("the credential usage report has no 'value' list")
    return body


def _rows(body: Mapping[str, Any]) -> dict[str, datetime | None]:
    out: dict[str, datetime | None] = {}
    for item in body["value"]:
        if not isinstance(item, dict) or not isinstance(item.get("keyId"), str):
            raise UsageReportUnavailable("a credential usage report item has no keyId")
        activity = item.get("signInActivity")
        if activity is None:
            out[item["keyId"]] = None
            continue
        if not isinstance(activity, dict):
            raise UsageReportUnavailable("a credential usage report item's signInActivity "
                                         "is not an object")
        raw = activity.get("lastSignInDateTime")
        if raw is None:
            out[item["keyId"]] = None
            continue
        try:
            when = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError:
            raise UsageReportUnavailable(
                "a credential usage report item's lastSignInDateTime is not a date") from None
        if when.tzinfo is None:
            raise UsageReportUnavailable("lastSignInDateTime has no time zone")
        previous = out.get(item["keyId"])
        out[item["keyId"]] = when if previous is None or when > previous else previous
    return out
