"""Error bodies in the exact shapes each real service uses; clients parse them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse

NOT_FOUND_MESSAGE = (
    "Resource '{id}' does not exist or one of its queried reference-property objects "
    "are not present."
)
DENIED_MESSAGE = "Insufficient privileges to complete the operation."


class GraphError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details or []


def graph_not_found(object_id: str) -> GraphError:
    return GraphError(404, "Request_ResourceNotFound", NOT_FOUND_MESSAGE.format(id=object_id))


def graph_denied() -> GraphError:
    return GraphError(403, "Authorization_RequestDenied", DENIED_MESSAGE)


def request_ids(request: Request) -> tuple[str, str]:
    """(request-id, client-request-id); Graph echoes the client's id when it sent one."""
    request_id = str(uuid.uuid4())
    return request_id, request.headers.get("client-request-id") or request_id


def graph_error_response(request: Request, error: GraphError) -> JSONResponse:
    request_id, client_request_id = request_ids(request)
    inner: dict[str, object] = {
        "code": error.code,
        "message": error.message,
        "innerError": {
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": request_id,
            "client-request-id": client_request_id,
        },
    }
    if error.details:
        inner["details"] = list(error.details)
    body = {"error": inner}
    headers = {"request-id": request_id, "client-request-id": client_request_id, **error.headers}
    return JSONResponse(body, status_code=error.status, headers=headers)


def vault_error_response(
    status: int, code: str, message: str, inner: str | None, headers: dict[str, str] | None = None
) -> JSONResponse:
    error: dict[str, object] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    all_headers = {"x-ms-request-id": str(uuid.uuid4()), **(headers or {})}
    return JSONResponse({"error": error}, status_code=status, headers=all_headers)


class AadError(Exception):
    """An AADSTS refusal from the token endpoint."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.code = code
        self.description = description


def aad_error_response(error: AadError, headers: dict[str, str] | None = None) -> JSONResponse:
    now = datetime.now(UTC)
    trace_id = str(uuid.uuid4())
    correlation_id = str(uuid.uuid4())
    description = (
        f"AADSTS{error.code}: {error.description} Trace ID: {trace_id} "
        f"Correlation ID: {correlation_id} Timestamp: {now:%Y-%m-%d %H:%M:%S}Z"
    )
    body = {
        "error": error.error,
        "error_description": description,
        "error_codes": [error.code],
        "timestamp": f"{now:%Y-%m-%d %H:%M:%S}Z",
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": "https://login.microsoftonline.com/error?code=" + str(error.code),
    }
    return JSONResponse(body, status_code=error.status, headers=headers)
