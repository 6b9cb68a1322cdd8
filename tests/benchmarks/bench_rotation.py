"""Rotation throughput at the tenant's write budget, and what the service spends on it.

An emulated tenant with 20 ms of latency per call, propagation up to 5 s, and a
Graph write budget enforced as a tenant-wide token bucket (429 + Retry-After past
it). `rotator serve` works N due secrets; each rotation needs two Graph writes
(addPassword, removePassword), so the ceiling is budget/2 rotations per minute.
Graph's real budget is 3,000 writes per 150 s per app and tenant: 1,200 a minute.

Each run is made twice, side by side against the same emulator, once per way of
trusting the emulator's certificate authority:

- ``bundle``: ``ROTATOR_CA_BUNDLE`` names the CA file (emulator, sovereign clouds,
  TLS-inspecting proxies);
- ``system``: no ``ROTATOR_CA_BUNDLE``; the CA is part of the default trust store,
  as a public cloud's is. ``SSL_CERT_FILE`` points OpenSSL's default verify file at
  certifi's bundle plus the emulator CA, which is what installing the CA into the
  system store does for every ``ssl.create_default_context()`` without needing root.

For each it reports the steady (10-90 % done) and whole-run rate as a fraction of
the ceiling, Graph 429s, the service's CPU-seconds per rotation (user + system, from
/proc, counted from ready to done) and its peak RSS (VmHWM). The baseline rotates K
of the same kind of app one after the other, the way a script does. Run:

    .venv/bin/python -m tests.benchmarks.bench_rotation --apps 1000 --budget 1200

``--replicas 3`` runs three `rotator serve` processes on one throwaway PostgreSQL
database (ROTATOR_TEST_POSTGRES_URL, as the tests use) instead of one on SQLite: they
share ``graph_writes_per_minute`` through the database, so the ceiling is the same
and the figures say whether three replicas together reach it without 429s (CPU is
summed over the replicas, RSS is the largest one's). It also reports the Graph writes
the tenant accepted per minute over the middle of the run, what each replica did
(from its /metrics) and whether every app was rotated exactly once with no orphan:

    .venv/bin/python -m tests.benchmarks.bench_rotation --apps 600 --budget 600 \
        --replicas 3 --trust bundle --baseline 0

``--postgres`` with one replica runs it on the database too: the shared budget's
limiter alone, which must be able to spend all of the budget.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import certifi

from rotator.config.policy import DaemonPolicy
from rotator.domain.states import RotationState
from rotator.emulator.model import Application
from rotator.emulator.runner import RunningEmulator, start_emulator
from tests.support.serve import Served, make_due_apps, open_store, start_serve, write_policy

SQLITE = "sqlite:///{tmp}/rotator-{mode}.db"
TRUST_MODES = ("bundle", "system")


def completed(url: str) -> int:
    store = open_store(url)
    try:
        return len(store.list_rotations(states=[RotationState.COMPLETED]))
    finally:
        store.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After "pid (comm)": state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


WRITES = ("graph.addPassword", "graph.removePassword")


def shares_budget(args: argparse.Namespace) -> bool:
    """On PostgreSQL, where the write budget is the database's (one replica alone shows
    it can spend all of it)."""
    return bool(args.replicas > 1 or args.postgres)


class WriteSampler:
    """Graph writes the emulated tenant accepted, sampled over time.

    The completions-based 10-90 % rate is not a rate of writes (a completion needs only
    its removePassword, the addPassword having gone out earlier); this counts the writes
    themselves at the tenant, over the middle of the run (from 10 % to 90 % of all the
    writes accepted), when every replica is past start-up and none has run out of work.
    """

    def __init__(self, emu: RunningEmulator) -> None:
        self.emu = emu
        self.samples: list[tuple[float, int, int]] = []  # (when, accepted, refused with 429)

    def sample(self) -> None:
        accepted = sum(self.emu.faults.count_of(route, code)
                       for route in WRITES for code in (200, 204))
        throttled = sum(self.emu.faults.count_of(route, 429) for route in WRITES)
        self.samples.append((time.monotonic(), accepted, throttled))

    def steady(self, budget: float) -> dict[str, Any]:
        if not self.samples or self.samples[-1][1] < 10:
            return {}
        total = self.samples[-1][1]
        first = next(s for s in self.samples if s[1] >= total * 0.1)
        last = next(s for s in self.samples if s[1] >= total * 0.9)
        if last[0] <= first[0]:
            return {}
        per_minute = (last[1] - first[1]) / ((last[0] - first[0]) / 60)
        return {"steady_graph_writes_per_min": round(per_minute, 1),
                "steady_writes_fraction_of_budget": round(per_minute / budget, 3),
                "steady_window_seconds": round(last[0] - first[0], 1),
                "steady_window_429s": last[2] - first[2],
                "writes_per_10s": self.timeline(10.0)}

    def timeline(self, step: float) -> list[int]:
        """Writes accepted in each ``step`` seconds from the first sample: where the
        rate dips (start-up, the last verifies) shows without a profiler."""
        start = self.samples[0][0]
        out = [0] * (int((self.samples[-1][0] - start) / step) + 1)
        for (_, before, _), (when, after, _) in itertools.pairwise(self.samples):
            out[int((when - start) / step)] += after - before
        return out


def scraped(text: str, name: str, **labels: str) -> float:
    """The sum of one metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        if series.split("{", 1)[0] != name:
            continue
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


def replica_counts(served: Served) -> dict[str, float]:
    """What one replica did, from its own /metrics (read before it stops)."""
    text = served.get("/metrics").text
    return {
        "rotations_completed": scraped(text, "rotator_rotations_total", result="completed"),
        "graph_writes": sum(scraped(text, "rotator_requests_total", service="graph",
                                    operation=op) for op in ("add_password", "remove_password")),
        "graph_429s": scraped(text, "rotator_throttled_requests_total", service="graph"),
        "write_budget_wait_seconds": scraped(text, "rotator_graph_write_wait_seconds_total"),
    }


def shared_work(emu: RunningEmulator, url: str, apps: list[tuple[Application, str]],
                originals: dict[str, str], per_replica: list[dict[str, float]]
                ) -> dict[str, Any]:
    """Who did what, and that every app was rotated exactly once with nothing left over:
    one completed rotation per app, from its original secret, whose new secret is the
    only one the app still has and the one its consumer secret names."""
    store = open_store(url)
    problems: list[str] = []
    try:
        for app, _ in apps:
            rotations = store.list_rotations(app_id=app.app_id)
            if [r.state for r in rotations] != [RotationState.COMPLETED]:
                problems.append(f"{app.display_name}: {[str(r.state) for r in rotations]}")
                continue
            (rotation,) = rotations
            key_ids = {c.key_id for c in emu.tenant.passwords(app.app_id)}
            consumer = emu.tenant.vault.get(rotation.secret_name)
            if (rotation.old_key_id != originals[app.app_id]
                    or key_ids != {rotation.new_key_id}
                    or consumer.tags.get("key_id") != rotation.new_key_id):
                problems.append(f"{app.display_name}: credentials {sorted(key_ids)}")
    finally:
        store.close()
    by_route = {route: sum(codes.values()) for route, codes in emu.faults.counters().items()
                if route.startswith("graph.")}
    return {"per_replica": [{k: round(v, 1) for k, v in r.items()} for r in per_replica],
            "graph_requests_by_route": by_route,
            "exactly_once": not problems, "exactly_once_problems": problems[:10]}


def trust_for(mode: str, emu: RunningEmulator, tmp: Path) -> tuple[Path, dict[str, str]]:
    """The env file and extra environment the service runs with in this trust mode."""
    if mode == "bundle":
        return emu.env_file, {}
    lines = [line for line in emu.env_file.read_text().splitlines()
             if not line.startswith("ROTATOR_CA_BUNDLE=")]
    env_file = tmp / "system-trust.env"
    env_file.write_text("\n".join(lines) + "\n")
    store = tmp / "system-store.pem"
    store.write_text(Path(certifi.where()).read_text() + "\n" + emu.ca_file.read_text())
    return env_file, {"SSL_CERT_FILE": str(store)}


def run_once(emu: RunningEmulator, mode: str, args: argparse.Namespace, tmp: Path
             ) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        if shares_budget(args):
            from tests.support.databases import throwaway_pg_database

            url = stack.enter_context(throwaway_pg_database())
        else:
            url = SQLITE.format(tmp=tmp, mode=mode)
        return _run(emu, mode, args, tmp, url)


def _run(emu: RunningEmulator, mode: str, args: argparse.Namespace, tmp: Path, url: str
         ) -> dict[str, Any]:
    apps = make_due_apps(emu, args.apps, f"bench-{mode}")
    originals = {a.app_id: emu.tenant.passwords(a.app_id)[0].key_id for a, _ in apps}
    subprocess.run([sys.executable, "-m", "rotator", "db", "upgrade"], check=True,
                   capture_output=True, env={"ROTATOR_DATABASE_URL": url, "PATH": ""})
    # Stay a little under the budget, as the daemon documentation advises. It is the
    # whole deployment's: replicas share it, nobody divides it.
    policy = write_policy(tmp / f"policy-{mode}.toml", emu.env["ROTATOR_VAULT_URL"],
                          [a.app_id for a, _ in apps], verify_successes=3,
                          max_concurrent_rotations=args.concurrency,
                          graph_writes_per_minute=args.budget * 0.95,
                          scan_interval_minutes=60,
                          # The service's default lease, as deployed: the tests' 5 s
                          # renews a rotation's lease during every verify (database
                          # writes production does not make) and, on busy cores, hands
                          # rotations back and forth between live replicas.
                          lease_seconds=DaemonPolicy().lease_seconds)
    env_file, extra_env = trust_for(mode, emu, tmp)
    emu.faults.reset_counters()
    writes = WriteSampler(emu)
    replicas = [start_serve(emu, url, policy, tmp / f"serve-{mode}-{i}.log",
                            env_file=env_file, extra_env=extra_env)
                for i in range(args.replicas)]
    pids = [r.proc.pid for r in replicas]

    def cpu() -> float:
        return sum(cpu_seconds(pid) for pid in pids)

    def peak_kib() -> int:
        return max(memory_kib(pid, "VmHWM") for pid in pids)

    cpu_ready = cpu()
    profiler = start_profiler(args.profile, mode, pids[0]) if args.profile else None
    rss_ready = max(memory_kib(pid, "VmRSS") for pid in pids)
    # The emulated tenant runs in this process: what it spends shows whether it, not
    # the service, is what holds the run back on a busy machine.
    emu_ready = cpu_seconds(os.getpid())
    started = time.monotonic()
    marks: dict[int, float] = {}  # completions reached -> when
    try:
        while (done := completed(url)) < args.apps:
            marks.setdefault(done, time.monotonic())
            writes.sample()
            if time.monotonic() - started > 3600:
                raise SystemExit(f"{mode}: did not finish within an hour")
            for served in replicas:
                if not served.alive():
                    raise SystemExit(f"{mode}: the service died:\n{served.log()[-3000:]}")
            if done and len(marks) % 30 == 0:  # progress, for a run cut short
                print(json.dumps({"trust": mode, "done": done,
                                  "seconds": round(time.monotonic() - started),
                                  "service_cpu_seconds": round(cpu() - cpu_ready, 1),
                                  "peak_rss_mb": peak_kib() // 1024}),
                      file=sys.stderr, flush=True)
            time.sleep(1)
        cpu_done, peak = cpu(), peak_kib()
        emu_done = cpu_seconds(os.getpid())
        writes.sample()
        per_replica = [replica_counts(served) for served in replicas]
    finally:
        if profiler is not None:
            stop_profiler(profiler)
        for i, served in enumerate(replicas):
            served.stop()
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                (args.keep_logs / f"serve-{mode}-{i}.log").write_bytes(
                    (tmp / f"serve-{mode}-{i}.log").read_bytes())
    elapsed = time.monotonic() - started
    marks.setdefault(args.apps, time.monotonic())
    # Steady state: from 10 % to 90 % done, without start-up and the last verifies.
    lo, hi = int(args.apps * 0.1), int(args.apps * 0.9)
    t_lo = min(t for n, t in marks.items() if n >= lo)
    t_hi = min(t for n, t in marks.items() if n >= hi)
    steady = (hi - lo) / ((t_hi - t_lo) / 60)
    graph_requests = emu.faults.count_of("graph.*")
    throttled = emu.faults.count_of("graph.*", 429)
    rate = args.apps / (elapsed / 60)
    ceiling = args.budget / 2
    cpu_spent = cpu_done - cpu_ready
    return {
        "trust": mode, "replicas": args.replicas, "apps": args.apps,
        "budget_writes_per_min": args.budget,
        "seconds": round(elapsed, 1), "ceiling_per_min": ceiling,
        "rotations_per_min": round(rate, 1), "fraction_of_ceiling": round(rate / ceiling, 3),
        "steady_rotations_per_min": round(steady, 1),
        "steady_fraction_of_ceiling": round(steady / ceiling, 3),
        "graph_requests": graph_requests, "throttled_429": throttled,
        "throttled_fraction": round(throttled / max(1, graph_requests), 4),
        "service_cpu_seconds": round(cpu_spent, 1),
        "service_cpu_seconds_per_rotation": round(cpu_spent / args.apps, 4),
        "service_rss_mb_ready": round(rss_ready / 1024), "service_peak_rss_mb":
        round(peak / 1024),
        "emulator_and_bench_cpu_seconds": round(emu_done - emu_ready, 1),
        "machine_load_average": round(os.getloadavg()[0], 1),
        **writes.steady(args.budget),
        **(shared_work(emu, url, apps, originals, per_replica) if shares_budget(args) else {}),
    }


def print_shared_figures(results: list[dict[str, Any]]) -> None:
    """The write rate at the tenant in the middle of the run and, with replicas, who
    did the work."""
    for r in results:
        if "steady_graph_writes_per_min" in r:
            print(f"\n{r['trust']}: Graph writes accepted {r['steady_graph_writes_per_min']}/min "
                  f"({r['steady_writes_fraction_of_budget']:.0%} of the budget of "
                  f"{r['budget_writes_per_min']:g}) over {r['steady_window_seconds']} s "
                  f"(10-90 % of the writes), {r['steady_window_429s']} refused with 429 there")
        if "per_replica" not in r:
            continue
        print("| replica | rotations completed | Graph writes | Graph 429s | "
              "waited for the budget (s) |")
        print("|---:|---:|---:|---:|---:|")
        for i, rep in enumerate(r["per_replica"]):
            print(f"| {i + 1} | {rep['rotations_completed']:g} | {rep['graph_writes']:g} | "
                  f"{rep['graph_429s']:g} | {rep['write_budget_wait_seconds']:g} |")
        print("every rotation exactly once, no orphan:", r["exactly_once"],
              *r["exactly_once_problems"])


def start_profiler(directory: Path, mode: str, pid: int) -> subprocess.Popen[bytes]:
    """py-spy sampling the (first) service from ready to done, as collapsed stacks.

    Non-blocking sampling: the service is never paused, so the figures stay its own."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"serve-{mode}.txt"
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid),
         "--rate", "50", "--nonblocking", "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)  # py-spy writes what it sampled on SIGINT
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def baseline(emu: RunningEmulator, count: int, tmp: Path) -> float:
    """Rotations per minute of the same rotation, one app at a time via the admin command."""
    url = SQLITE.format(tmp=tmp, mode="baseline")
    subprocess.run([sys.executable, "-m", "rotator", "db", "upgrade"], check=True,
                   capture_output=True, env={"ROTATOR_DATABASE_URL": url, "PATH": ""})
    base_apps = make_due_apps(emu, count, "base")
    base_policy = write_policy(tmp / "base.toml", emu.env["ROTATOR_VAULT_URL"],
                               [a.app_id for a, _ in base_apps], verify_successes=3)
    env = {"ROTATOR_ENV_FILE": str(emu.env_file), "ROTATOR_DATABASE_URL": url,
           "ROTATOR_CONFIG": str(base_policy), "PATH": ""}
    started = time.monotonic()
    for app, _ in base_apps:
        subprocess.run([sys.executable, "-m", "rotator", "rotate", "--app", app.app_id,
                        "--retire-now"], check=True, capture_output=True, env=env)
    return count / ((time.monotonic() - started) / 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--budget", type=float, default=1200, help="Graph writes per minute")
    # Little's law: rotations in flight = rate x time per rotation. At 570 a minute and
    # about 10 s a rotation (verify waits out propagation of up to 5 s and takes three
    # tokens a second apart) that is some 95 at once; 48 capped the run at half the budget.
    parser.add_argument("--concurrency", type=int, default=128,
                        help="max_concurrent_rotations of the service")
    parser.add_argument("--replicas", type=int, default=1,
                        help="rotator serve processes; more than one share a throwaway "
                        "PostgreSQL database and the tenant-wide write budget")
    parser.add_argument("--postgres", action="store_true",
                        help="one replica on PostgreSQL: the shared budget's limiter alone "
                        "(implied by --replicas above 1)")
    parser.add_argument("--trust", choices=(*TRUST_MODES, "both"), default="both")
    parser.add_argument("--baseline", type=int, default=8,
                        help="apps rotated one at a time (0: skip)")
    parser.add_argument("--keep-logs", type=Path, default=None,
                        help="copy the service's log of each run into this directory")
    parser.add_argument("--profile", type=Path, default=None,
                        help="sample the service with py-spy (pip install py-spy) and write "
                        "its collapsed stacks, serve-<trust>.txt, into this directory")
    args = parser.parse_args()
    modes = TRUST_MODES if args.trust == "both" else (args.trust,)
    with tempfile.TemporaryDirectory() as tmp_name, start_emulator(
        apps=0, seed=3, propagation_seconds=5.0, workdir=Path(tmp_name) / "emu"
    ) as emu:
        tmp = Path(tmp_name)
        per_second = args.budget / 60
        # Graph counts writes over windows of seconds to minutes; a bucket holding ten
        # seconds of budget models that without letting a client borrow a minute ahead.
        emu.faults.update({"latency_ms": 20, "throttle_tenant_capacity": per_second * 10,
                           "throttle_tenant_refill_per_second": per_second})
        results = [run_once(emu, mode, args, tmp) for mode in modes]
        b_rate = baseline(emu, args.baseline, tmp) if args.baseline else None
    for result in results:
        if b_rate:
            result["baseline_rotations_per_min"] = round(b_rate, 2)
            result["speedup_vs_one_at_a_time"] = round(result["rotations_per_min"] / b_rate, 1)
        print(json.dumps(result))
    print()
    print("| trust | replicas | rotations/min 10-90 % | whole run | Graph 429s | "
          "service CPU-s per rotation | service peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['trust']} | {r['replicas']} | {r['steady_rotations_per_min']} "
              f"({r['steady_fraction_of_ceiling']:.0%} of {r['ceiling_per_min']:g}) | "
              f"{r['rotations_per_min']} ({r['fraction_of_ceiling']:.0%}) | "
              f"{r['throttled_429']} of {r['graph_requests']} "
              f"({r['throttled_fraction']:.2%}) | {r['service_cpu_seconds_per_rotation']:.3f} | "
              f"{r['service_peak_rss_mb']} MB (ready: {r['service_rss_mb_ready']} MB) |")
    if b_rate:
        print(f"\none at a time: {b_rate:.2f} rotations/min")
    print_shared_figures(results)
    print("goals: steady ≥ 90 % of ceiling, < 1 % 429s, ≤ 0.06 CPU-s per rotation, "
          "peak RSS ≤ 250 MB")


if __name__ == "__main__":
    main()
