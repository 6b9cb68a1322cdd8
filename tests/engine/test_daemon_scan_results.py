"""The service's scan job: ready only once its results are in place."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx

from rotator.daemon import Daemon
from rotator.domain.records import InventoryRow
from rotator.health import build_app
from rotator.metrics import Metrics
from tests.support.world import World


async def test_ready_only_once_the_inventory_and_gauges_are_in_place(world: World) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)
    metrics = Metrics()
    daemon = Daemon(world.deps(), metrics=metrics, http_port=None, jobs=[])
    reading, release = threading.Event(), threading.Event()
    read_inventory = world.store.each_credential

    def slow_inventory(*args: Any, **kwargs: Any) -> Iterator[InventoryRow]:
        reading.set()
        assert release.wait(10)
        yield from read_inventory(*args, **kwargs)

    world.store.each_credential = slow_inventory  # type: ignore[method-assign]
    asgi = build_app(metrics=metrics, ping=world.store.ping, last_scan=lambda: daemon.last_scan,
                     scan_interval=daemon.scan_interval, now=world.clock.now)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi),
                                 base_url="http://rotator") as client:
        scan = asyncio.create_task(daemon.scan_once())
        try:
            while not reading.is_set():
                await asyncio.sleep(0.01)
            # The scan is recorded in the store, but its gauges are not on /metrics yet.
            answer = await client.get("/readyz")
            assert answer.status_code == 503, answer.json()
            assert b"rotator_credentials{" not in (await client.get("/metrics")).content
        finally:
            release.set()
        await scan
        assert (await client.get("/readyz")).status_code == 200
        page = (await client.get("/metrics")).text
        assert f'rotator_credential_expiry_timestamp_seconds{{app_id="{app.app_id}"' in page
