"""Policy files and settings for the config tests of this directory."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rotator.config import ConfigError, Settings, load_policy, load_settings

APP1 = "11111111-2222-3333-4444-555555555555"
APP2 = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
VAULT = "https://127.0.0.1:8443"

GOOD = f"""
# rotator policy
[defaults]
vault_url = "{VAULT}"
renew_before_days = 30
lifetime_days = 180
grace_hours = 24
verify_scope = "https://graph.microsoft.com/.default"
verify_successes = 3
verify_timeout_seconds = 600
key_type = "RSA3072"
certificate_subject = "CN=rotator"
key_vault_format = "pkcs12"
scan_interval_minutes = 15
reconcile_interval_seconds = 30
max_concurrent_rotations = 4

[[app]]
app_id = "{APP1.upper()}"
secret_name = "orders-client-secret"
verify_scope = "api://myapis/mywebapi/.default"
expected_roles = ["ReadOnly"]

[[app]]
app_id = "{APP2}"
credential = "certificate"
lifetime_days = 90
renew_before_days = 10.5
vault_url = "https://other.vault.azure.net/"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def settings(**env: str) -> Settings:
    return load_settings(env)


def policy_error(tmp_path: Path, text: str, **env: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_policy(path, settings(**env))
    message = str(info.value)
    assert str(path) in message
    return message


TENANT = "11111111-1111-1111-1111-111111111111"
CLIENT = "22222222-2222-2222-2222-222222222222"


def env(tmp_path: Path, defaults: str) -> dict[str, str]:
    policy = tmp_path / "policy.toml"
    policy.write_text(f"[defaults]\n{defaults}\n", encoding="utf-8")
    return {
        "ROTATOR_CONFIG": str(policy),
        "ROTATOR_VAULT_URL": "https://kv.vault.azure.net",
        "AZURE_TENANT_ID": TENANT,
        "AZURE_CLIENT_ID": CLIENT,
        "AZURE_CLIENT_SECRET": "not-used-offline",
        "ROTATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'rotator.db'}",
    }
