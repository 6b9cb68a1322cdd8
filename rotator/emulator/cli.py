"""``rotator emulator``: run the emulated tenant in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("emulator")
@click.option("--port", type=int, default=0, show_default=True, help="0 picks a free port.")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write AZURE_* / ROTATOR_* settings (mode 0600); the CA PEM goes next to it.",
)
@click.option("--apps", type=int, default=20, show_default=True, help="Seeded app registrations.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for ids and secrets.")
@click.option(
    "--propagation-seconds",
    type=float,
    default=0.0,
    show_default=True,
    help="Max delay before a new credential is known to every token replica.",
)
@click.option(
    "--signin-report-lag-seconds",
    type=click.FloatRange(0, 86_400),
    default=10.0,
    show_default=True,
    help="How long after a sign-in the credential usage report shows it.",
)
@click.option(
    "--withhold-audit-log",
    is_flag=True,
    help="Do not grant the rotator's identity AuditLog.Read.All: the usage report answers 403.",
)
@click.option(
    "--graph-consistency-seconds",
    type=float,
    default=2.0,
    show_default=True,
    help="Max delay before a Graph directory read replica knows a write (0: strongly "
    "consistent reads).",
)
@click.option(
    "--removal-propagation-seconds",
    type=float,
    default=None,
    help="Max time a removed credential still gets tokens on some token replicas "
    "[default: --propagation-seconds].",
)
@click.option(
    "--policy-read/--no-policy-read",
    default=True,
    show_default=True,
    help="Grant the rotator's identity Policy.Read.All (reading app management policies).",
)
@click.option(
    "--graph-request-budget",
    type=click.FloatRange(0),
    default=3500.0,
    show_default=True,
    help="Graph requests (reads and writes) per 10 s per calling app before 429 "
    "with Retry-After (0: unlimited).",
)
@click.option(
    "--graph-write-budget",
    type=click.FloatRange(0),
    default=3000.0,
    show_default=True,
    help="Graph writes per 150 s per calling app before 429 with Retry-After (0: unlimited).",
)
@click.option(
    "--vault-request-budget",
    type=click.FloatRange(0),
    default=4000.0,
    show_default=True,
    help="Key Vault requests per 10 s before 429 with Retry-After (0: unlimited).",
)
def emulator_command(
    port: int,
    env_file: Path,
    apps: int,
    seed: int,
    propagation_seconds: float,
    signin_report_lag_seconds: float,
    withhold_audit_log: bool,
    graph_consistency_seconds: float,
    removal_propagation_seconds: float | None,
    policy_read: bool,
    graph_request_budget: float,
    graph_write_budget: float,
    vault_request_budget: float,
) -> None:
    """Run the emulated Entra tenant (Graph, token endpoint, Key Vault) over HTTPS."""
    # Imported here so `rotator --help` does not pay for uvicorn and cryptography.
    import logging
    import signal
    import threading
    from types import FrameType

    from rotator.emulator.faults import with_budgets
    from rotator.emulator.runner import ENV_KEYS, RunningEmulator

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    emulator = RunningEmulator.start(
        apps=apps,
        seed=seed,
        propagation_seconds=propagation_seconds,
        port=port,
        env_file=env_file,
        signin_report_lag_seconds=signin_report_lag_seconds,
        audit_log=not withhold_audit_log,
        policy_read=policy_read,
        removal_propagation_seconds=removal_propagation_seconds,
        graph_consistency_seconds=graph_consistency_seconds,
        faults=with_budgets(
            graph_requests_per_10s=graph_request_budget,
            graph_writes_per_150s=graph_write_budget,
            vault_requests_per_10s=vault_request_budget,
        ),
    )
    try:
        for key in ENV_KEYS:
            shown = "***" if key.endswith("_SECRET") else emulator.env[key]
            click.echo(f"{key}={shown}")
        click.echo(f"# written to {emulator.env_file}", err=True)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
