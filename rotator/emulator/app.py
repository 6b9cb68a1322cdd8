"""The ASGI app: Graph, the token endpoint, one Key Vault and the admin routes on one origin."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rotator.emulator import admin, graph, graph_delta, signins, token, vault, vault_certificates
from rotator.emulator.errors import GraphError, graph_error_response
from rotator.emulator.state import EmulatorState


async def _graph_unknown(request: Request) -> Response:
    segment = request.path_params["rest"].split("/", 1)[0]
    return graph_error_response(
        request,
        GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'."),
    )


def _token_routes() -> list[BaseRoute]:
    return [
        Route("/{tenant}/v2.0/.well-known/openid-configuration", token.openid_configuration),
        Route("/{tenant}/.well-known/openid-configuration", token.openid_configuration_v1),
        Route("/{tenant}/discovery/v2.0/keys", token.jwks),
        Route("/{tenant}/discovery/keys", token.jwks),
        Route("/{tenant}/oauth2/v2.0/token", token.token, methods=["POST"]),
    ]


def build_app(state: EmulatorState) -> Starlette:
    methods = ["GET", "POST", "PATCH", "PUT", "DELETE"]
    app = Starlette(
        routes=[
            *admin.routes(),
            *graph_delta.routes(),
            *graph.routes(),
            *signins.routes(),
            Route("/v1.0/{rest:path}", _graph_unknown, methods=methods),
            *vault.routes(),
            *vault_certificates.routes(),
            *_token_routes(),
        ]
    )
    app.state.emulator = state
    app.state.faults = state.faults
    return app
