"""The fast subset of the fault campaign (the full one: `python -m tests.campaign.run`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings

from rotator.domain.credentials import CredentialKind
from tests.campaign.scenario import (
    CampaignStats,
    Scenario,
    fresh_world,
    migrated_template,
    run_scenario,
    scenarios,
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_template(tmp_path_factory.mktemp("campaign"))


# Seeds the campaign once found interesting are kept here as explicit examples.
@example(Scenario(CredentialKind.SECRET, ("add_password", "set_secret:orders-secret"),
                  (("set_secret", "vault_500"), ("get", "graph_409")), 80, 0.0))
@example(Scenario(CredentialKind.CERTIFICATE, ("set_secret:orders-secret-next", "patch"),
                  (("patch", "graph_409"),), 3, 30.0))
@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios())
def test_random_fault_schedules_keep_the_invariants(template: Path, scenario: Scenario) -> None:
    stats = CampaignStats()
    with fresh_world(template) as world:
        asyncio.run(run_scenario(world, scenario, stats))
    assert stats.completed == 1
