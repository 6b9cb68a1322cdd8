"""The fast subset of the fault campaign (the whole of it: `python -m tests.campaign.run`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import structlog
from hypothesis import HealthCheck, example, given, settings

from rotator.domain.credentials import CredentialKind
from tests.campaign.scenario import (
    CampaignStats,
    Scenario,
    fresh_world,
    leaked_in,
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
# Lost answers to each write of a secret, and a database outage right after creation.
@example(Scenario(CredentialKind.SECRET, (), (), 0, 0.0,
                  lost=("add_password", "set_secret:orders-secret-next"), db_outage=(6, 3)))
@example(Scenario(CredentialKind.SECRET, ("remove_password",), (), 2, 0.0,
                  lost=("set_secret:orders-secret", "disable_version"), db_outage=(12, 2)))
@example(Scenario(CredentialKind.CERTIFICATE, (), (), 0, 1.0,
                  lost=("patch", "remove_key"), db_outage=(9, 5)))
# A hook that fails every way and dies right after the send that got through, with the
# report refused (403); a command hook exiting non-zero with the report answering 503s.
@example(Scenario(CredentialKind.SECRET, ("hook_send",), (), 0, 0.0, hook=True,
                  hook_faults=("hook_down", "hook_500", "hook_timeout", "hook_bad_status",
                               "hook_exit_1", "hook_down"), report="report_403"))
@example(Scenario(CredentialKind.CERTIFICATE, (), (), 0, 0.0, hook=True,
                  hook_faults=("hook_exit_1",), report="report_5xx"))
# Certificate objects: Key Vault makes the key and both imports crash right after their
# write; rotator makes it and the staging import's and removeKey's answers are lost.
@example(Scenario(CredentialKind.CERTIFICATE,
                  ("set_secret:orders-secret-next", "set_secret:orders-secret"),
                  (("set_secret", "vault_500"),), 2, 0.0, objects="keyvault"))
@example(Scenario(CredentialKind.CERTIFICATE, (), (), 0, 1.0,
                  lost=("set_secret:orders-secret-next", "remove_key"), db_outage=(9, 5),
                  objects="rotator"))
# The database failing on the first call after a rotation completed (the 35th call
# once verify renewed its lease only when low): the rerun finds it done.
@example(Scenario(CredentialKind.CERTIFICATE,
                  ("set_secret:orders-secret-next", "patch", "set_secret:orders-secret"),
                  (("get", "graph_503"), ("get", "graph_503"), ("get", "graph_503"),
                   ("remove_key", "graph_503"), ("patch", "graph_503"),
                   ("set_secret", "vault_500")),
                  0, 0.0, db_outage=(35, 1), report="report_5xx"))
@example(Scenario(CredentialKind.SECRET, (), (), 0, 0.0, report="report_404"))
@example(Scenario(CredentialKind.SECRET, (), (), 0, 0.0, hook=True, report="report_shape"))
@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios())
def test_random_fault_schedules_keep_the_invariants(template: Path, scenario: Scenario) -> None:
    stats = CampaignStats()
    with structlog.testing.capture_logs() as logs, fresh_world(template) as world:
        asyncio.run(run_scenario(world, scenario, stats))
        assert not leaked_in(json.dumps(logs, default=str), world)
    assert stats.completed == 1


KEPT_ON_POSTGRES = [
    Scenario(CredentialKind.SECRET, ("add_password",), (("set_secret", "vault_500"),), 3, 0.0,
             lost=("remove_password",), db_outage=(7, 4)),
    Scenario(CredentialKind.CERTIFICATE, ("set_secret:orders-secret",), (), 0, 30.0,
             lost=("add_key", "patch"), db_outage=(15, 3)),
    Scenario(CredentialKind.SECRET, ("hook_send",), (), 0, 0.0, db_outage=(20, 3), hook=True,
             hook_faults=("hook_500", "hook_exit_1"), report="report_403"),
]


@pytest.mark.postgres
@pytest.mark.parametrize("scenario", KEPT_ON_POSTGRES,
                         ids=["secret", "certificate", "hook-and-report"])
def test_kept_scenarios_on_postgresql(template: Path, pg_database: str,
                                      scenario: Scenario) -> None:
    stats = CampaignStats()
    with fresh_world(template, pg_database) as world:
        asyncio.run(run_scenario(world, scenario, stats))
    assert stats.completed == 1 and stats.faults["db_call_failed"] == scenario.db_outage[1]


def test_the_leak_grep_finds_what_it_looks_for(template: Path) -> None:
    with fresh_world(template) as world:
        assert leaked_in("token CANARY-0f3a in a message")
        assert leaked_in("-----BEGIN " "PRIVATE KEY-----")
        assert not leaked_in("secret 5c7e... (hint 5c7)", world)
