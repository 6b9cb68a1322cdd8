"""/metrics at scale: page size, series, render time, and /healthz while it is scraped.

The inventory is the emulated tenant's (``seed_tenant``: each app has 1-3 secrets and
0-2 certificates, expiring uniformly from 90 days ago to two years ahead), turned into
the rows a scan records, with ``--managed`` apps managed. Two pages are compared side
by side on the same rows:

- before: one gauge series per credential, the whole registry rendered per scrape on
  the event loop (what the service did until the inventory page was bounded);
- after: ``Metrics.record_inventory`` (bounded series, rendered and gzipped once per
  scan) and ``Metrics.render``, or ``render_gzip`` when the scraper asks for gzip as
  Prometheus does, per scrape.

For each, the page is served by the service's own Starlette app (``build_app``) under
uvicorn on loopback; one client scrapes /metrics back to back while another asks
/healthz every 20 ms, for a bounded number of scrapes. Run:

    .venv/bin/python -m tests.benchmarks.bench_metrics --apps 20000 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client import Gauge, generate_latest

from rotator.domain.credentials import CredentialKind
from rotator.domain.records import InventoryRow
from rotator.emulator.seed import seed_tenant
from rotator.health import bind, build_app, make_server
from rotator.metrics import Metrics

HORIZON_DAYS = 30.0  # the default policy's largest alert threshold
SCRAPES = 10
HEALTH_EVERY = 0.02


def inventory(apps: int, managed: int) -> list[InventoryRow]:
    tenant = seed_tenant(apps=apps, seed=1)
    rows: list[InventoryRow] = []
    bulk = [a for a in tenant._apps_by_app_id.values() if a.display_name.startswith("app-")]
    managed_ids = {a.app_id for a in bulk[:managed]}
    for app in bulk:
        creds = [(CredentialKind.SECRET, c.key_id, c.start, c.end)
                 for c in app.password_credentials]
        creds += [(CredentialKind.CERTIFICATE, c.key_id, c.start, c.end)
                  for c in app.key_credentials]
        for kind, key_id, start, end in creds:
            rows.append(InventoryRow(
                app_id=app.app_id, key_id=key_id, object_id=app.id,
                app_display_name=app.display_name, kind=kind, display_name=None,
                start_at=start, end_at=end, managed=app.app_id in managed_ids,
            ))
    return rows


class Before(Metrics):
    """The page as it was: a labelled gauge per credential, rendered at every scrape."""

    def __init__(self) -> None:
        super().__init__()
        self.expiry = Gauge("rotator_credential_expiry_timestamp_seconds", "End of validity.",
                            ["app_id", "key_id", "kind", "managed"], registry=self.registry)

    def load(self, rows: Iterable[InventoryRow]) -> None:
        self.expiry.clear()
        for row in rows:
            if row.end_at is not None:
                self.expiry.labels(row.app_id, row.key_id, str(row.kind),
                                   "true" if row.managed else "false").set(row.end_at.timestamp())

    def render(self) -> bytes:
        return generate_latest(self.registry)


def series(page: bytes) -> int:
    return sum(1 for line in page.splitlines() if line and not line.startswith(b"#"))


async def served(metrics: Metrics, encoding: str) -> dict[str, float]:
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = build_app(metrics=metrics, ping=lambda: None, last_scan=lambda: None,
                    scan_interval=timedelta(hours=1), now=lambda: datetime.now(UTC))
    server = make_server(app)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    scrapes: list[float] = []
    health: list[float] = []
    done = threading.Event()

    def scrape() -> None:
        with httpx.Client(base_url=base, timeout=60,
                          headers={"Accept-Encoding": encoding}) as client:
            for _ in range(SCRAPES):
                start = time.perf_counter()
                client.get("/metrics").raise_for_status()
                scrapes.append(time.perf_counter() - start)
        done.set()

    def probe() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            while not done.is_set():
                start = time.perf_counter()
                client.get("/healthz").raise_for_status()
                health.append(time.perf_counter() - start)
                time.sleep(HEALTH_EVERY)

    threads = [threading.Thread(target=scrape), threading.Thread(target=probe)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        await asyncio.sleep(0.05)
    server.should_exit = True
    await task
    sock.close()
    health.sort()
    return {"scrape_ms": statistics.median(scrapes) * 1000,
            "healthz_p50_ms": statistics.median(health) * 1000,
            "healthz_max_ms": health[-1] * 1000}


def measure(apps: int, managed: int) -> dict[str, object]:
    rows = inventory(apps, managed)
    now = datetime.now(UTC)
    before, after = Before(), Metrics()
    start = time.perf_counter()
    before.load(rows)
    load_before = time.perf_counter() - start
    start = time.perf_counter()
    after.record_inventory(rows, now=now, horizon_days=HORIZON_DAYS)
    load_after = time.perf_counter() - start
    out: dict[str, object] = {"apps": apps, "credentials": len(rows), "managed_apps": managed}
    # The page before could only be sent as it was; the page after is sent gzipped when
    # asked, as Prometheus does.
    for name, metrics, load, encoding in (("before", before, load_before, "identity"),
                                          ("after", after, load_after, "gzip")):
        renders = []
        for _ in range(5):
            start = time.perf_counter()
            page = metrics.render()
            renders.append(time.perf_counter() - start)
        out[name] = {
            "bytes": len(page), "series": series(page),
            "sent_bytes": len(page) if encoding == "identity" else len(metrics.render_gzip()),
            "render_ms": round(statistics.median(renders) * 1000, 1),
            "record_ms": round(load * 1000), **{
                k: round(v, 1) for k, v in asyncio.run(served(metrics, encoding)).items()},
        }
    del rows, before
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apps", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--managed", type=int, default=1000, help="apps under the policy")
    args = parser.parse_args()
    results = []
    for apps in args.apps:
        results.append(measure(apps, args.managed))
        print(json.dumps(results[-1]), flush=True)
    print()
    print(f"{'apps':>8} {'creds':>8} {'':<7} {'page MB':>8} {'sent MB':>8} {'series':>8} "
          f"{'render ms':>10} "
          f"{'scrape ms':>10} {'healthz p50':>12} {'healthz max':>12}")
    for r in results:
        for name in ("before", "after"):
            m = r[name]
            assert isinstance(m, dict)
            print(f"{r['apps']:>8} {r['credentials']:>8} {name:<7} {m['bytes'] / 1e6:>8.2f} "
                  f"{m['sent_bytes'] / 1e6:>8.2f} {m['series']:>8} {m['render_ms']:>10} "
                  f"{m['scrape_ms']:>10} "
                  f"{m['healthz_p50_ms']:>12} {m['healthz_max_ms']:>12}")
        b, a = r["before"], r["after"]
        assert isinstance(b, dict) and isinstance(a, dict)
        print(f"{'':>8} {'':>8} {'ratio':<7} {b['bytes'] / a['bytes']:>8.1f} "
              f"{b['sent_bytes'] / a['sent_bytes']:>8.1f} {b['series'] / a['series']:>8.1f} "
              f"{b['render_ms'] / a['render_ms']:>10.1f}")


if __name__ == "__main__":
    main()
