"""``/_emulator/...``: readiness, fault knobs and counters. Not part of any Azure API."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from rotator.emulator.state import EmulatorState


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


async def health(request: Request) -> Response:
    state = _state(request)
    return JSONResponse(
        {"status": "ok", "tenant": state.tenant.tenant_id, "apps": state.tenant.app_count()}
    )


def _faults_json(state: EmulatorState) -> dict[str, object]:
    return {
        **state.faults.to_json(),
        "propagation_seconds": state.tenant.propagation_seconds,
        "removal_propagation_seconds": state.tenant.removal_propagation_seconds,
        "graph_consistency_seconds": state.tenant.graph_consistency_seconds,
        "lifetime_max_days": state.tenant.lifetime_max_days,
    }


async def get_faults(request: Request) -> Response:
    return JSONResponse(_faults_json(_state(request)))


async def set_faults(request: Request) -> Response:
    state = _state(request)
    try:
        body = json.loads(await request.body() or b"{}")
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        # Tenant-level knobs ride along so one call can set up a scenario.
        if "propagation_seconds" in body:
            state.tenant.propagation_seconds = float(body.pop("propagation_seconds"))
        if "removal_propagation_seconds" in body:
            value = body.pop("removal_propagation_seconds")
            state.tenant.removal_propagation_seconds = None if value is None else float(value)
        if "graph_consistency_seconds" in body:
            state.tenant.graph_consistency_seconds = float(body.pop("graph_consistency_seconds"))
        if "lifetime_max_days" in body:
            value = body.pop("lifetime_max_days")
            state.tenant.set_lifetime_policy(None if value is None else int(value))
        state.faults.update(body)
    except KeyError as exc:
        return JSONResponse({"error": f"unknown fault setting {exc}"}, status_code=400)
    except (ValueError, TypeError, AttributeError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse(_faults_json(state))


async def stats(request: Request) -> Response:
    return JSONResponse({"requests": _state(request).faults.counters()})


async def reset_stats(request: Request) -> Response:
    _state(request).faults.reset_counters()
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    return [
        Route("/_emulator/health", health, methods=["GET"]),
        Route("/_emulator/faults", get_faults, methods=["GET"]),
        Route("/_emulator/faults", set_faults, methods=["POST"]),
        Route("/_emulator/stats", stats, methods=["GET"]),
        Route("/_emulator/stats/reset", reset_stats, methods=["POST"]),
    ]
