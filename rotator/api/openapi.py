"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from rotator.config.api import ApiPolicy

_PAGING = [
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                  "maximum": 1000, "default": 100}},
]
_PAGE = {"type": "object", "required": ["items", "offset", "limit", "total", "next"],
         "properties": {"items": {"type": "array", "items": {"type": "object"}},
                        "offset": {"type": "integer"}, "limit": {"type": "integer"},
                        "total": {"type": ["integer", "null"],
                                  "description": "null where counting would read every row"},
                        "next": {"type": ["string", "null"], "format": "uri"}}}
_ERRORS = {
    "401": {"description": "no token, or a token this API does not accept "
                           "(WWW-Authenticate: Bearer, RFC 6750)"},
    "403": {"description": "the calling app lacks the app role (insufficient_scope)"},
    "503": {"description": "the tenant's signing keys cannot be read now"},
}


def _get(summary: str, role: str, params: list[dict[str, Any]], paged: bool = True
         ) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK"}
    if paged:
        ok["content"] = {"application/json": {"schema": _PAGE}}
    return {"get": {"summary": summary, "description": f"Needs the app role {role}.",
                    "parameters": params + (_PAGING if paged else []),
                    "security": [{"entra": []}], "responses": {"200": ok, **_ERRORS}}}


def openapi_document(policy: ApiPolicy) -> dict[str, Any]:
    read = f"{policy.read_role} (or {policy.admin_role})"
    return {
        "openapi": "3.1.0",
        "info": {"title": "rotator", "version": "1",
                 "description": "Entra ID app credentials: what expires, what is in flight, "
                                "rotate an app now. Client-credentials tokens for "
                                f"{policy.audience}/.default with an app role."},
        "components": {"securitySchemes": {"entra": {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": f"an Entra access token whose aud is {policy.audience}"}}},
        "paths": {
            "/api/v1/credentials": _get("The inventory from the last scans, soonest expiry first",
                                        read, [
                {"name": "within_days", "in": "query", "schema": {"type": "number"}},
                {"name": "managed", "in": "query", "schema": {"type": "boolean"}},
                {"name": "source", "in": "query",
                 "schema": {"enum": ["application", "servicePrincipal"]}},
            ]),
            "/api/v1/rotations": _get("Rotations, newest first", read, [
                {"name": "state", "in": "query",
                 "schema": {"enum": ["recent", "in_flight", "failed"], "default": "recent"}},
                {"name": "app_id", "in": "query", "schema": {"type": "string", "format": "uuid"}},
            ]),
            "/api/v1/rotations/{rotation_id}": _get("One rotation and its audit trail", read, [
                {"name": "rotation_id", "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}},
            ], paged=False),
            "/api/v1/findings": _get("Posture findings about the estate", read, []),
            "/api/v1/apps/{app_id}/rotate": {"post": {
                "summary": "Rotate a managed app now; the service drives the rotation",
                "description": f"Needs the app role {policy.admin_role}. An app already in "
                               "flight answers with that rotation.",
                "security": [{"entra": []}],
                "parameters": [{"name": "app_id", "in": "path", "required": True,
                                "schema": {"type": "string", "format": "uuid"}}],
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False, "properties": {
                        "credential": {"type": "string", "format": "uuid",
                                       "description": "key id of the credential to replace"},
                        "retire_now": {"type": "boolean", "default": False},
                        "dry_run": {"type": "boolean", "default": False}}}}}},
                "responses": {
                    "202": {"description": "accepted: rotation_id, state, in_flight, href"},
                    "200": {"description": "dry run: what would happen"},
                    "404": {"description": "the app is not managed by rotator"},
                    "422": {"description": "the request cannot be carried out as asked"},
                    **_ERRORS},
            }},
        },
    }
