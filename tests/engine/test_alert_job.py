"""The daemon schedules the alert pass when channels are configured."""

from __future__ import annotations

import asyncio
import types
from pathlib import Path

from rotator.config import load_policy, load_settings
from rotator.daemon import extra_jobs
from tests.support.world import VAULT, World


def test_no_channels_no_alert_job(world: World) -> None:
    app = world.directory.add_app("orders")
    world.manage(app)
    assert extra_jobs(types.SimpleNamespace(deps=world.deps())) == []  # type: ignore[arg-type]


def with_log_channel(world: World, tmp_path: Path) -> str:
    """A managed app with a secret 3 days from its end, and a log alert channel; returns
    the app id."""
    app = world.directory.add_app("orders", secret_days_left=3)
    policy_file = tmp_path / "alerts.toml"
    policy_file.write_text(
        f'[defaults]\nvault_url = "{VAULT}"\n[[app]]\napp_id = "{app.app_id}"\n'
        'secret_name = "orders-secret"\n[alerts]\ndigest = "none"\n'
        '[[alerts.channel]]\ntype = "log"\nname = "log"\n')
    world.policy = load_policy(policy_file, load_settings({"ROTATOR_VAULT_URL": VAULT}))
    return app.app_id


def test_alert_job_runs_a_pass_over_the_inventory(world: World, tmp_path: Path) -> None:
    app_id = with_log_channel(world, tmp_path)
    deps = world.deps()

    async def scan_then_alert() -> None:
        from rotator.engine.scan import scan

        await scan(deps)
        (job,) = extra_jobs(types.SimpleNamespace(deps=deps))  # type: ignore[arg-type]
        assert job.name == "alerts"
        await job.run()
        await job.run()  # a second pass sends nothing new

    asyncio.run(scan_then_alert())
    import sqlalchemy as sa

    with world.store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT alert_key, status FROM alert_deliveries")).all()
    assert rows, "the pass recorded nothing"
    assert all(status == "sent" for _, status in rows)
    assert any(app_id in key for key, _ in rows)


def test_alert_job_uses_the_engine_database_threads(world: World, tmp_path: Path) -> None:
    # On SQLite the service writes from one thread: a second writing thread (the
    # default executor) fails at once with "database is locked" when its transaction
    # read first, racing a rotation's step write.
    import threading
    from concurrent.futures import ThreadPoolExecutor

    with_log_channel(world, tmp_path)
    deps = world.deps()
    deps.db_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-db")
    threads: set[str] = set()
    alerts = deps.store.alerts
    for name in ("record", "claim", "mark_sent", "release", "mark_failed", "deliveries"):
        def spy(*args: object, _call: object = getattr(alerts, name), **kwargs: object) -> object:
            threads.add(threading.current_thread().name)
            return _call(*args, **kwargs)  # type: ignore[operator]
        setattr(alerts, name, spy)

    async def scan_then_alert() -> None:
        from rotator.engine.scan import scan

        await scan(deps)
        (job,) = extra_jobs(types.SimpleNamespace(deps=deps))  # type: ignore[arg-type]
        await job.run()

    try:
        asyncio.run(scan_then_alert())
    finally:
        deps.db_executor.shutdown()
    assert threads and all(t.startswith("engine-db") for t in threads), threads
