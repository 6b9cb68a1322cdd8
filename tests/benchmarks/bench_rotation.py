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
summed over the replicas, RSS is the largest one's):

    .venv/bin/python -m tests.benchmarks.bench_rotation --apps 600 --budget 1200 \
        --replicas 3 --trust bundle --baseline 0
"""

from __future__ import annotations

import argparse
import contextlib
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

from rotator.domain.states import RotationState
from rotator.emulator.runner import RunningEmulator, start_emulator
from tests.support.serve import make_due_apps, open_store, start_serve, write_policy

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
        if args.replicas > 1:
            from tests.support.databases import throwaway_pg_database

            url = stack.enter_context(throwaway_pg_database())
        else:
            url = SQLITE.format(tmp=tmp, mode=mode)
        return _run(emu, mode, args, tmp, url)


def _run(emu: RunningEmulator, mode: str, args: argparse.Namespace, tmp: Path, url: str
         ) -> dict[str, Any]:
    apps = make_due_apps(emu, args.apps, f"bench-{mode}")
    subprocess.run([sys.executable, "-m", "rotator", "db", "upgrade"], check=True,
                   capture_output=True, env={"ROTATOR_DATABASE_URL": url, "PATH": ""})
    # Stay a little under the budget, as the daemon documentation advises. It is the
    # whole deployment's: replicas share it, nobody divides it.
    policy = write_policy(tmp / f"policy-{mode}.toml", emu.env["ROTATOR_VAULT_URL"],
                          [a.app_id for a, _ in apps], verify_successes=3,
                          max_concurrent_rotations=args.concurrency,
                          graph_writes_per_minute=args.budget * 0.95,
                          scan_interval_minutes=60,
                          # Replicas compete for leases: the tests' 5 s, on busy cores,
                          # hands rotations back and forth between live replicas.
                          lease_seconds=5 if args.replicas == 1 else 60)
    env_file, extra_env = trust_for(mode, emu, tmp)
    emu.faults.reset_counters()
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
    }


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
    print("goals: steady ≥ 90 % of ceiling, < 1 % 429s, ≤ 0.06 CPU-s per rotation, "
          "peak RSS ≤ 250 MB")


if __name__ == "__main__":
    main()
