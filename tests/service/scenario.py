"""One due app under a fresh `rotator serve`: the service tests' scenario (this
directory's own helper)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rotator.adapters.db import SqlStore
from rotator.config import Policy, load_policy, load_settings
from rotator.domain.rotation import Rotation
from rotator.domain.states import RotationState
from rotator.emulator.invariants import check_tenant, managed_apps
from rotator.emulator.model import Application
from rotator.emulator.runner import RunningEmulator
from tests.support.serve import (
    CredentialWatch,
    Served,
    gets_token,
    latest_rotation,
    make_due_apps,
    open_store,
    seed_consumer_secret,
    serving,
    wait_for,
    write_policy,
)


class Scenario:
    """One due app (consumer secret seeded with its current secret) under a fresh service."""

    def __init__(self, emu: RunningEmulator, pg_url: str, tmp_path: Path, prefix: str,
                 **daemon: object) -> None:
        ((app, value),) = make_due_apps(emu, 1, prefix)
        self.emu = emu
        self.app: Application = app
        self.app_id = app.app_id
        self.old_value = value
        self.old_key_id = emu.tenant.passwords(app.app_id)[0].key_id
        self.secret_name = seed_consumer_secret(emu, app, value)
        self.policy_path = write_policy(tmp_path / "policy.toml", emu.base_url, [app.app_id],
                                        **daemon)
        self.policy: Policy = load_policy(self.policy_path, load_settings(dict(emu.env)))
        self.pg_url = pg_url
        self.log_path = tmp_path / "serve.log"
        self.store: SqlStore = open_store(pg_url)

    @contextmanager
    def serve(self) -> Iterator[Served]:
        with serving(self.emu, self.pg_url, self.policy_path, self.log_path) as served:
            wait_for(lambda: served.get("/readyz").status_code == 200, 30, "ready")
            yield served

    def rotation(self) -> Rotation | None:
        return latest_rotation(self.store, self.app_id)

    def wait_state(self, states: set[RotationState], timeout: float, what: str) -> Rotation:
        wait_for(lambda: (r := self.rotation()) is not None and r.state in states, timeout, what)
        found = self.rotation()
        assert found is not None
        return found

    def wait_error(self, needle: str, timeout: float, attempts: int = 1) -> Rotation:
        """The rotation has recorded ``attempts`` failed tries whose error names ``needle``."""
        def recorded() -> bool:
            r = self.rotation()
            return (r is not None and r.attempts >= attempts
                    and needle in (r.last_error or ""))

        wait_for(recorded, timeout, f"a recorded error mentioning {needle!r}")
        found = self.rotation()
        assert found is not None
        return found

    def key_ids(self) -> set[str]:
        return {c.key_id for c in self.emu.tenant.passwords(self.app_id)}

    def consumer_key_id(self) -> str | None:
        return self.emu.tenant.vault.get(self.secret_name).tags.get("key_id")

    def consumers_still_served(self) -> None:
        """Mid-outage: the consumer secret still holds the old secret, and it still works."""
        assert self.consumer_key_id() == self.old_key_id
        assert gets_token(self.emu, self.app_id, self.old_value)

    def finish(self, served: Served, watch: CredentialWatch) -> Rotation:
        """The end state every outage must come to, checked the same way each time."""
        rotations = self.store.list_rotations(app_id=self.app_id)
        assert len(rotations) == 1, [(r.id, r.state) for r in rotations]
        (rotation,) = rotations
        assert rotation.state is RotationState.COMPLETED, rotation
        assert rotation.new_key_id is not None
        # the consumer secret holds the new credential, which works; the old one is gone
        consumer = self.emu.tenant.vault.get(self.secret_name)
        held = self.emu.tenant.match_secret(self.app, consumer.value)
        assert held is not None and held.key_id == rotation.new_key_id
        assert consumer.tags["rotation_id"] == rotation.id
        assert gets_token(self.emu, self.app_id, consumer.value)
        assert self.key_ids() == {rotation.new_key_id}
        steps = [e.step for e in self.store.history(rotation_id=rotation.id)
                 if e.outcome == "ok"]
        assert steps.index("verify") < steps.index("promote") < steps.index("retire"), steps
        assert watch.gaps == []
        assert check_tenant(self.emu.tenant, self.store, managed_apps(self.policy)) == []
        assert served.proc.returncode == 0  # stopped cleanly by the test, never crashed
        log = served.log()
        leaked = [v for v in watch.values | {self.old_value} if v in log]
        assert leaked == [], "a secret value is in the service log"
        return rotation

    def close(self) -> None:
        self.store.close()
