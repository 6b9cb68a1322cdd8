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
/healthz every 20 ms, for a bounded number of scrapes.

Then the real service: ``rotator serve`` on SQLite against the emulator serving that
tenant, after its first scan: the page a gzip scrape gets (size, series, time), the
/healthz latency while it is scraped, and the process's RSS (now and its peak). Run:

    .venv/bin/python -m tests.benchmarks.bench_metrics --apps 20000 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client import Gauge, generate_latest

from rotator.adapters.db import migrate
from rotator.domain.records import InventoryRow
from rotator.emulator.runner import start_emulator
from rotator.health import bind, build_app, make_server
from rotator.metrics import Metrics
from tests.support.inventory import seeded_inventory
from tests.support.serve import serving, wait_for, write_policy

HORIZON_DAYS = 30.0  # the default policy's largest alert threshold
EXPIRED_DAYS = 30.0  # metrics_expired_days' default
SCRAPES = 10
HEALTH_EVERY = 0.02


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
    result = await asyncio.to_thread(scrape_while_probing, f"http://127.0.0.1:{port}", encoding)
    server.should_exit = True
    await task
    sock.close()
    return result


def scrape_while_probing(base: str, encoding: str) -> dict[str, float]:
    """Scrape /metrics SCRAPES times back to back while /healthz is asked every 20 ms."""
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
    for t in threads:
        t.join()
    health.sort()
    return {"scrape_ms": statistics.median(scrapes) * 1000,
            "healthz_p50_ms": statistics.median(health) * 1000,
            "healthz_max_ms": health[-1] * 1000}


def measure(apps: int, managed: int) -> dict[str, object]:
    rows = seeded_inventory(apps, managed)
    now = datetime.now(UTC)
    before, after = Before(), Metrics()
    start = time.perf_counter()
    before.load(rows)
    load_before = time.perf_counter() - start
    start = time.perf_counter()
    after.record_inventory(rows, now=now, horizon_days=HORIZON_DAYS, expired_days=EXPIRED_DAYS)
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


def rss_mb(pid: int) -> tuple[float, float]:
    """The process's resident memory now and at its peak, in MB."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def measure_service(apps: int, managed: int) -> dict[str, object]:
    """The real service after its first scan of the emulated tenant of ``apps`` apps."""
    with tempfile.TemporaryDirectory() as tmp, \
            start_emulator(apps=apps, seed=1, workdir=Path(tmp) / "emu") as emu:
        db_url = f"sqlite:///{tmp}/rotator.db"
        migrate.upgrade(db_url)
        bulk = [a.app_id for a in emu.tenant._apps_by_app_id.values()
                if a.display_name.startswith("app-")]
        # Scan once and drive no rotation: the figures are the page's and the process's.
        policy = write_policy(Path(tmp) / "policy.toml", emu.base_url, bulk[:managed],
                              scan_interval_minutes=600, reconcile_interval_seconds=86_400)
        started = time.perf_counter()
        with serving(emu, db_url, policy, Path(tmp) / "serve.log") as served:
            wait_for(lambda: served.get("/readyz").status_code == 200, 1800, "the first scan")
            ready_s = time.perf_counter() - started
            page = served.get("/metrics").content
            with httpx.stream("GET", served.url("/metrics"),
                              headers={"Accept-Encoding": "gzip"}) as answer:
                sent = sum(len(chunk) for chunk in answer.iter_raw())  # as sent, not decoded
            probed = scrape_while_probing(served.url(""), "gzip")
            rss, peak = rss_mb(served.proc.pid)
    return {"apps": apps, "managed_apps": managed, "ready_s": round(ready_s, 1),
            "bytes": len(page), "sent_bytes": sent, "series": series(page),
            "expiry_series": page.count(b"rotator_credential_expiry_timestamp_seconds{"),
            **{k: round(v, 1) for k, v in probed.items()},
            "rss_mb": round(rss), "peak_rss_mb": round(peak)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apps", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--managed", type=int, default=1000, help="apps under the policy")
    parser.add_argument("--no-service", action="store_true",
                        help="skip the real service (its first scan of 100,000 apps takes minutes)")
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
    if args.no_service:
        return
    print("\nrotator serve (SQLite), after its first scan, scraped with gzip:", flush=True)
    services = []
    for apps in args.apps:
        services.append(measure_service(apps, args.managed))
        print(json.dumps(services[-1]), flush=True)
    print(f"{'apps':>8} {'ready s':>8} {'page MB':>8} {'sent MB':>8} {'series':>8} "
          f"{'expiry':>8} {'scrape ms':>10} {'healthz p50':>12} {'healthz max':>12} "
          f"{'RSS MB':>7} {'peak MB':>8}")
    for m in services:
        print(f"{m['apps']:>8} {m['ready_s']:>8} {m['bytes'] / 1e6:>8.2f} "  # type: ignore[operator]
              f"{m['sent_bytes'] / 1e6:>8.2f} {m['series']:>8} {m['expiry_series']:>8} "  # type: ignore[operator]
              f"{m['scrape_ms']:>10} {m['healthz_p50_ms']:>12} {m['healthz_max_ms']:>12} "
              f"{m['rss_mb']:>7} {m['peak_rss_mb']:>8}")


if __name__ == "__main__":
    main()
