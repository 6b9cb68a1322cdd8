"""Scan benchmark: `rotator scan` against a plain HTTP loop reading the same pages.

`rotator scan --json --full` runs as a fresh process, writes the inventory and prints
the whole listing (the table with ``--human``). The plain loop sends exactly the
requests the scan sends (same URLs, query options and headers, one at a time as the
scan does) and JSON-decodes each page; the emulator's request counters must agree for
both. Both run against one emulator process seeded with N apps, one right after the
other for each database, so the ratio is measured side by side. It also prints what the
service principal pass and the owner lookup cost, each way of reading them, in requests
and seconds per 10,000 objects (``--passes-only`` prints just those). Run:

    .venv/bin/python -m tests.benchmarks.bench_scan --apps 20000 100000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.databases import throwaway_pg_database


@contextmanager
def emulator(apps: int, workdir: Path) -> Iterator[dict[str, str]]:
    env_file = workdir / "emu.env"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotator", "emulator", "--port", "0", "--env-file",
         str(env_file), "--apps", str(apps)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not env_file.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the emulator did not start")
            time.sleep(0.2)
        time.sleep(0.2)
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
        yield env
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def timed_child(args: list[str], env: dict[str, str], stdout: Path | None = None
                ) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB, and exit code of one child process (its output goes
    to ``stdout`` when given)."""
    start = time.perf_counter()
    with open(stdout or os.devnull, "wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    return elapsed, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


# The plain loop: every request the full scan sends, in the same order and one at a
# time as the scan sends them (the scan reads its pages sequentially), each body
# JSON-decoded and its nextLink followed, and nothing else. The URLs come from
# ``plain_requests`` so they stay the scan's own.
BASELINE = r"""
import asyncio, json, ssl, sys
import httpx
from azure.identity import ClientSecretCredential
env, requests = json.loads(sys.argv[1]), json.loads(sys.argv[2])
cred = ClientSecretCredential(env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"],
    env["AZURE_CLIENT_SECRET"], authority=env["ROTATOR_AUTHORITY_HOST"],
    disable_instance_discovery=True, connection_verify=env["ROTATOR_CA_BUNDLE"])
token = cred.get_token("https://graph.microsoft.com/.default").token
async def main():
    ctx = ssl.create_default_context(cafile=env["ROTATOR_CA_BUNDLE"])
    n = 0
    async with httpx.AsyncClient(verify=ctx, timeout=120, headers={
            "Authorization": f"Bearer {token}", "Accept": "application/json"}) as c:
        for url, headers in requests:
            while url:
                body = json.loads((await c.get(url, headers=headers)).content)
                n += len(body.get("value", ()))
                url = body.get("@odata.nextLink")
    print(n)
asyncio.run(main())
"""


def plain_requests(graph_url: str) -> list[tuple[str, dict[str, str]]]:
    """The first request of each listing a full scan makes, in its order, with its
    headers: the two delta links from now, the federated-credential advanced query,
    then applications and service principals with their owners."""
    from rotator.adapters.graph import ADVANCED_QUERY, PAGE_SIZE
    from rotator.adapters.graph_json import APP_SELECT, OWNERS_EXPAND, SP_SELECT

    g = graph_url.rstrip("/")
    return [
        (f"{g}/applications/delta?$deltatoken=latest&$select={','.join(APP_SELECT)}", {}),
        (f"{g}/servicePrincipals/delta?$deltatoken=latest&$select={','.join(SP_SELECT)}", {}),
        (f"{g}/applications?$count=true&$filter=federatedIdentityCredentials/$count ne 0"
         f"&$select=appId&$top={PAGE_SIZE}", dict([ADVANCED_QUERY])),
        (f"{g}/applications?$expand={OWNERS_EXPAND}&$select={','.join(APP_SELECT)}"
         f"&$top={PAGE_SIZE}", {}),
        (f"{g}/servicePrincipals?$expand={OWNERS_EXPAND}&$select={','.join(SP_SELECT)}"
         f"&$top={PAGE_SIZE}", {}),
    ]


def emulator_requests(emu_env: dict[str, str], reset: bool = False) -> dict[str, int]:
    """Requests the emulator served, by route (its counters are reset when asked)."""
    import httpx

    base = emu_env["ROTATOR_GRAPH_URL"].rsplit("/v1.0", 1)[0]
    with httpx.Client(base_url=base, verify=emu_env["ROTATOR_CA_BUNDLE"]) as c:
        if reset:
            c.post("/_emulator/stats/reset").raise_for_status()
            return {}
        counts = c.get("/_emulator/stats").json()["requests"]
    return {route: sum(by_status.values()) for route, by_status in counts.items()
            if not route.startswith(("token", "login", "aad"))}


# Changes CHANGED apps through Graph as the tenant's administrator: a new secret each.
CHANGE = r'''
import asyncio, json, ssl, sys
import httpx
from azure.identity import ClientSecretCredential
env, changed = json.loads(sys.argv[1]), int(sys.argv[2])
cred = ClientSecretCredential(env["AZURE_TENANT_ID"], env["EMULATOR_ADMIN_CLIENT_ID"],
    env["EMULATOR_ADMIN_CLIENT_SECRET"], authority=env["ROTATOR_AUTHORITY_HOST"],
    disable_instance_discovery=True, connection_verify=env["ROTATOR_CA_BUNDLE"])
token = cred.get_token("https://graph.microsoft.com/.default").token
async def main():
    ctx = ssl.create_default_context(cafile=env["ROTATOR_CA_BUNDLE"])
    async with httpx.AsyncClient(verify=ctx, timeout=120,
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        page = (await c.get(env["ROTATOR_GRAPH_URL"]
                            + f"/applications?$select=id&$top={changed}")).json()
        for app in page["value"]:
            r = await c.post(env["ROTATOR_GRAPH_URL"] + f"/applications/{app['id']}/addPassword",
                             json={"passwordCredential": {"displayName": "bench"}})
            r.raise_for_status()
asyncio.run(main())
'''
CHANGED = 100


PASSES = r'''
import asyncio, json, ssl, sys, time
import httpx
from azure.identity import ClientSecretCredential
env = json.loads(sys.argv[1])
cred = ClientSecretCredential(env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"],
    env["AZURE_CLIENT_SECRET"], authority=env["ROTATOR_AUTHORITY_HOST"],
    disable_instance_discovery=True, connection_verify=env["ROTATOR_CA_BUNDLE"])
token = cred.get_token("https://graph.microsoft.com/.default").token
G = env["ROTATOR_GRAPH_URL"]
CREDS = "passwordCredentials,keyCredentials"
OWNERS = "&$expand=owners($select=id,mail,userPrincipalName)"
async def listing(c, url):
    n = requests = 0
    ids = []
    while url:
        body = json.loads((await c.get(url)).content)
        requests += 1
        n += len(body["value"])
        ids += [v["id"] for v in body["value"]]
        url = body.get("@odata.nextLink")
    return n, requests, ids
async def main():
    ctx = ssl.create_default_context(cafile=env["ROTATOR_CA_BUNDLE"])
    out = {}
    async with httpx.AsyncClient(verify=ctx, timeout=120,
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        for name, url in (
            ("applications", f"{G}/applications?$select=id,appId,{CREDS}&$top=999"),
            ("applications+owners", f"{G}/applications?$select=id,appId,{CREDS}&$top=999"
                                    + OWNERS),
            ("servicePrincipals", f"{G}/servicePrincipals?$select=id,appId,{CREDS}&$top=999"),
            ("servicePrincipals+owners", f"{G}/servicePrincipals?$select=id,appId,{CREDS}"
                                         "&$top=999" + OWNERS),
        ):
            start = time.perf_counter()
            n, requests, ids = await listing(c, url)
            out[name] = (n, requests, time.perf_counter() - start)
            if name == "applications":
                app_ids = ids
        start = time.perf_counter()
        requests = 0
        for at in range(0, len(app_ids), 20):
            batch = [{"id": str(k), "method": "GET",
                      "url": f"/applications/{i}/owners?$select=id,mail,userPrincipalName"}
                     for k, i in enumerate(app_ids[at:at + 20])]
            (await c.post(f"{G}/$batch", json={"requests": batch})).raise_for_status()
            requests += 1
        out["owners by $batch (applications)"] = (len(app_ids), requests,
                                                  time.perf_counter() - start)
    print(json.dumps(out))
asyncio.run(main())
'''


def passes(apps: int) -> None:
    """Requests and seconds per 10,000 objects of each listing and owner lookup."""
    with tempfile.TemporaryDirectory() as tmp, emulator(apps, Path(tmp)) as emu_env:
        done = subprocess.run([sys.executable, "-c", PASSES, json.dumps(emu_env)],
                              env={**os.environ, **emu_env}, capture_output=True, text=True,
                              check=True)
    print(f"\n{'pass':<34} {'objects':>8} {'requests':>9} {'req/10k':>8} {'s/10k':>7}")
    for name, (n, requests, took) in json.loads(done.stdout).items():
        per = 10_000 / max(n, 1)
        print(f"{name:<34} {n:>8} {requests:>9} {requests * per:>8.0f} {took * per:>7.2f}")


def run(sizes: list[int], *, human: bool = False) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with throwaway_pg_database() as pg_url:
        for apps in sizes:
            with tempfile.TemporaryDirectory() as tmp, emulator(apps, Path(tmp)) as emu_env:
                base_env = {**os.environ, **emu_env, "ROTATOR_LOG_LEVEL": "WARNING"}
                plain = [sys.executable, "-c", BASELINE, json.dumps(emu_env),
                         json.dumps(plain_requests(emu_env["ROTATOR_GRAPH_URL"]))]
                for db_name, url in (("sqlite", f"sqlite:///{tmp}/r.db"), ("postgresql", pg_url)):
                    env = {**base_env, "ROTATOR_DATABASE_URL": url}
                    # migrations once, outside the timing
                    subprocess.run([sys.executable, "-m", "rotator", "db", "upgrade"], env=env,
                                   check=True, capture_output=True)
                    # The plain loop right before the scan, so both see the same machine.
                    emulator_requests(emu_env, reset=True)
                    base_t, base_mem, rc = timed_child(plain, base_env)
                    assert rc == 0, "baseline failed"
                    plain_counts = emulator_requests(emu_env)
                    emulator_requests(emu_env, reset=True)
                    # The whole listing printed, as a user waits for it.
                    out = Path(tmp) / "full.json"
                    command = ["scan", "--full"] if human else ["scan", "--json", "--full"]
                    t, mem, rc = timed_child([sys.executable, "-m", "rotator", *command], env,
                                             stdout=out)
                    assert rc == 0, f"scan failed on {db_name}"
                    scan_counts = emulator_requests(emu_env)
                    # Same requests or the ratio means nothing.
                    assert scan_counts == plain_counts, (scan_counts, plain_counts)
                    # Then CHANGED apps change, and the next scan reads only those.
                    subprocess.run([sys.executable, "-c", CHANGE, json.dumps(emu_env),
                                    str(CHANGED)], env=base_env, check=True)
                    out = Path(tmp) / "delta.json"
                    dt, _dmem, rc = timed_child(
                        [sys.executable, "-m", "rotator", "scan", "--json", "--within-days",
                         "-36500"], env, stdout=out)
                    assert rc == 0, f"incremental scan failed on {db_name}"
                    delta = json.loads(out.read_text())["scan"]
                    assert delta["mode"] == "delta", delta
                    rows.append({"apps": apps, "db": db_name, "rotator_s": round(t, 2),
                                 "baseline_s": round(base_t, 2),
                                 "ratio": round(t / base_t, 2), "peak_mb": round(mem),
                                 "baseline_peak_mb": round(base_mem),
                                 "requests": sum(scan_counts.values()),
                                 "delta_s": round(dt, 2), "delta_ratio": round(dt / t, 3),
                                 "delta_requests": delta["graph_requests"],
                                 "delta_changed": delta["apps_changed"],
                                 "load": os.getloadavg()[0]})
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apps", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--passes-only", action="store_true",
                        help="only the cost of each listing and owner lookup")
    parser.add_argument("--no-passes", action="store_true",
                        help="only the full and incremental scans")
    parser.add_argument("--human", action="store_true",
                        help="time the table listing instead of --json")
    args = parser.parse_args()
    for apps in [] if args.no_passes else args.apps:
        passes(apps)
    if args.passes_only:
        return
    rows = run(args.apps, human=args.human)
    print()
    print(f"{'apps':>8} {'db':<11} {'full s':>7} {'plain s':>8} {'full/plain':>10} "
          f"{'goal':>5} {'peak MB':>8} {'goal':>5} {'delta s':>8} {'delta/full':>10} "
          f"{'goal':>5} {'requests':>8}")
    for r in rows:
        print(f"{r['apps']:>8} {r['db']:<11} {r['rotator_s']:>7} {r['baseline_s']:>8} "
              f"{r['ratio']:>10} {'≤1.5':>5} {r['peak_mb']:>8} {'≤300':>5} "
              f"{r['delta_s']:>8} {r['delta_ratio']:>10} {'≤.02':>5} "
              f"{r['delta_requests']:>8}")
    print(f"(delta: the scan after {CHANGED} apps got a new secret, as a fresh process)")


if __name__ == "__main__":
    main()
