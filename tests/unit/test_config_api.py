"""The policy file's [api] table: the HTTPS API's audience and app roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotator.config import ApiPolicy, load_policy
from tests.unit.policy_files import GOOD, policy_error, settings, write

API_ID = "0d3b3f6e-8f8a-4b0e-9a8e-2f1d7c9e4b21"


def test_no_api_table_leaves_the_api_off(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, GOOD), settings()).api is None


def test_api_table_with_its_defaults(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, GOOD + '\n[api]\naudience = "api://rotator"\n'),
                         settings())
    assert policy.api == ApiPolicy(audience="api://rotator")
    assert (policy.api.read_role, policy.api.admin_role) == ("ReadOnly", "Admin")
    assert policy.api.audiences == ("api://rotator",)


def test_audiences_include_the_client_id() -> None:
    assert ApiPolicy("api://rotator", client_id=API_ID).audiences == ("api://rotator", API_ID)
    # The portal's default App ID URI names the client id itself.
    assert ApiPolicy(f"api://{API_ID}").audiences == (f"api://{API_ID}", API_ID)


@pytest.mark.parametrize(("table", "needle"), [
    ("[api]\nread_role = \"ReadOnly\"\n", "needs audience"),
    ('[api]\naudience = ""\n', "App ID URI"),
    ('[api]\naudience = "api://rotator/.default"\n', "not a scope"),
    ('[api]\naudience = "api://rotator"\nclient_id = "rotator"\n', "client) id"),
    ('[api]\naudience = "api://rotator"\nadmin_role = "ReadOnly"\n', "a reader could then"),
    ('[api]\naudience = "api://rotator"\nread_role = "Read Only"\n', "no spaces"),
    ('[api]\naudience = "api://rotator"\nadmin_rol = "Admin"\n', "did you mean 'admin_role'"),
    ('api = "api://rotator"\n', "must be a table"),
])
def test_api_problems_name_line_key_and_fix(tmp_path: Path, table: str, needle: str) -> None:
    text = table + GOOD if not table.startswith("[") else GOOD + "\n" + table
    message = policy_error(tmp_path, text)
    assert needle in message
