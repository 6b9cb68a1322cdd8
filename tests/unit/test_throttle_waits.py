"""Retry-After waits reach the log and the daemon's metrics, by service, with no secret."""

from __future__ import annotations

import gc

import structlog

from rotator import throttle_waits
from rotator.metrics import Metrics


def test_a_wait_is_logged_and_counted_by_service() -> None:
    metrics = Metrics()
    unsubscribe = throttle_waits.subscribe(metrics.record_throttle_wait)
    try:
        with structlog.testing.capture_logs() as logs:
            throttle_waits.waited("graph", 2.0, status=429, method="GET")
            throttle_waits.waited("keyvault", 7.0, status=429, method="PUT")
            throttle_waits.waited("graph", 3.0, status=503, method="POST")
    finally:
        unsubscribe()
    text = metrics.render().decode()
    assert 'rotator_throttle_wait_seconds_count{service="graph"} 2.0' in text
    assert 'rotator_throttle_wait_seconds_sum{service="graph"} 5.0' in text
    assert 'rotator_throttle_wait_seconds_count{service="keyvault"} 1.0' in text
    assert [(e["service"], e["wait_seconds"], e["status"], e["method"]) for e in logs] == [
        ("graph", 2.0, 429, "GET"), ("keyvault", 7.0, 429, "PUT"), ("graph", 3.0, 503, "POST")]
    assert all(set(e) == {"event", "log_level", "service", "wait_seconds", "status", "method"}
               for e in logs)


def test_metrics_that_are_gone_stop_listening() -> None:
    metrics = Metrics()
    throttle_waits.subscribe(metrics.record_throttle_wait)
    del metrics
    gc.collect()
    throttle_waits.waited("token", 1.0)  # nothing left to call, nothing raised
    assert all(ref() is not None for ref in throttle_waits._listeners)
