"""main.bicep and the Graph permission script, checked statically."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from rotator.config import SETTINGS_ENV
from tests.support.deploy import DEPLOY, METRICS_PORT
from tests.support.tools import require_tool

BICEP = DEPLOY / "azure" / "main.bicep"
SCRIPT = DEPLOY / "azure" / "grant-graph-permissions.sh"

OWNED_BY = "18a4783c-866b-4cc7-a460-3d5e5662c884"  # Application.ReadWrite.OwnedBy
READ_ALL = "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30"  # Application.Read.All
READWRITE_ALL = "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9"  # Application.ReadWrite.All
SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"


def _bicep() -> str:
    # Without // comments, so prose cannot satisfy a check.
    return "\n".join(
        line for line in BICEP.read_text(encoding="utf-8").splitlines()
        if not line.strip().startswith("//")
    )


def test_resource_types() -> None:
    types = set(re.findall(r"^resource \w+ '([^@']+)@[^']+'", _bicep(), re.MULTILINE))
    assert types >= {
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        "Microsoft.OperationalInsights/workspaces",
        "Microsoft.App/managedEnvironments",
        "Microsoft.App/containerApps",
        "Microsoft.DBforPostgreSQL/flexibleServers",
        "Microsoft.DBforPostgreSQL/flexibleServers/databases",
        "Microsoft.KeyVault/vaults",
        "Microsoft.Authorization/roleAssignments",
    }


def test_wiring() -> None:
    text = _bicep()
    # The environment sends logs to the workspace.
    assert "destination: 'log-analytics'" in text and "workspace.properties.customerId" in text
    # The app runs as the user-assigned identity, and DefaultAzureCredential is told which one.
    assert "type: 'UserAssigned'" in text and "'${identity.id}': {}" in text
    assert "identity.properties.clientId" in text
    # Key Vault Secrets Officer, scoped to the vault, for that identity.
    role = text[text.index("resource vaultRole") :]
    role = role[: role.index("\n}\n")]
    assert SECRETS_OFFICER in text and "keyVaultSecretsOfficerRoleId" in role
    assert "scope: vault" in role and "identity.properties.principalId" in role
    # Probes and port.
    assert f"var metricsPort = {METRICS_PORT}" in text
    for kind, path in (("Startup", "/healthz"), ("Liveness", "/healthz"), ("Readiness", "/readyz")):
        assert re.search(rf"type: '{kind}'\s+httpGet: {{\s+path: '{path}'", text), kind
    assert "minReplicas: replicas" in text and "param replicas int = 2" in text


def test_env_names_are_the_settings_the_code_reads() -> None:
    names = set(re.findall(r"name: '([A-Z][A-Z0-9_]+)'", _bicep()))
    assert names, "the container sets environment variables"
    assert names <= set(SETTINGS_ENV.values()), names - set(SETTINGS_ENV.values())
    assert SETTINGS_ENV["client_secret"] not in names
    assert re.search(r"name: 'ROTATOR_DATABASE_URL'\s+secretRef: 'database-url'", _bicep())


def test_no_secret_literals() -> None:
    text = _bicep()
    secure = re.findall(r"@secure\(\)\s*(?:@\w+\([^)]*\)\s*)*param (\w+)", text)
    assert "postgresAdminPassword" in secure
    for match in re.finditer(r"param (\w+) string = '([^']*)'", text):
        name, default = match.groups()
        assert not re.search(r"password|secret|key", name, re.IGNORECASE) or not default, name
    assert re.search(r"administratorLoginPassword: useEntra \? null : postgresAdminPassword\b",
                     text)
    # No property named like a password or secret holds a string literal
    # (passwordAuth is a switch; secretRef names a secret, it holds none).
    for key, _ in re.findall(r"(\w*(?:password|secret)\w*): '([^']+)'", text, re.IGNORECASE):
        assert key in ("passwordAuth", "secretRef"), key
    # Secure values never leave the deployment as outputs.
    for line in text.splitlines():
        if line.startswith("output "):
            assert not re.search(r"password|databaseUrl|policyToml", line, re.IGNORECASE), line


def test_script_grants_least_privilege() -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    code = "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    )
    assert OWNED_BY in code and READ_ALL in code
    assert READWRITE_ALL not in code, "Application.ReadWrite.All must not be granted"
    assert "appRoleAssignments" in code and "az rest" in code
    assert "az ad app owner add" in code
    assert "Application.ReadWrite.All" in text  # the header says when and why not


def test_script_syntax() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True, timeout=10)


def test_shellcheck() -> None:
    shellcheck = require_tool("shellcheck", package="shellcheck")
    subprocess.run(
        [shellcheck, str(SCRIPT), str(DEPLOY / "container" / "entrypoint.sh")],
        check=True,
        timeout=30,
    )


AUDIT_LOG = "b0afded3-3588-46d8-8b3d-9842eff778da"  # AuditLog.Read.All

FAKE_AZ = """#!/bin/sh
# Stands in for the Azure CLI: logs each call, answers "nothing granted yet".
echo "$*" >> "$AZ_LOG"
case "$*" in
    "ad sp show"*) echo 99999999-9999-9999-9999-999999999999 ;;
    *"--method GET"*|"ad app owner list"*) echo 0 ;;
esac
"""


def _grants(tmp_path: Path, *args: str) -> list[str]:
    """The app role ids the script assigns, run against a fake ``az``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    az = bin_dir / "az"
    az.write_text(FAKE_AZ, encoding="utf-8")
    az.chmod(0o755)
    log = tmp_path / "az.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "AZ_LOG": str(log)}
    subprocess.run(["bash", str(SCRIPT), "--principal-id", "p-1", *args], check=True,
                   env=env, capture_output=True, timeout=30)
    posts = [line for line in log.read_text(encoding="utf-8").splitlines()
             if "--method POST" in line]
    return [m for line in posts for m in re.findall(r'appRoleId\\?":\\?"([0-9a-f-]+)', line)]


def test_script_grants_audit_log_only_when_asked(tmp_path: Path) -> None:
    # Least privilege by default: OwnedBy and nothing else.
    assert _grants(tmp_path) == [OWNED_BY]
    # retire_when = "unused" needs the usage report: --audit-log adds AuditLog.Read.All.
    assert _grants(tmp_path, "--audit-log") == [OWNED_BY, AUDIT_LOG]
    assert READWRITE_ALL not in _grants(tmp_path, "--audit-log", "--read-all")
    header = SCRIPT.read_text(encoding="utf-8").split("set -euo pipefail")[0]
    assert 'retire_when = "unused"' in header and "AuditLog.Read.All" in header


def test_bicep_grants_audit_log_only_on_opt_in() -> None:
    text = _bicep()
    # An opt-in parameter, off by default; the grant command adds --audit-log only with it.
    assert re.search(r"^param usageReport bool = false$", text, re.MULTILINE)
    [output] = [line for line in text.splitlines()
                if line.startswith("output grantGraphPermissions string")]
    assert "grant-graph-permissions.sh --principal-id ${identity.properties.principalId}" in output
    assert "${usageReport ? ' --audit-log' : ''}" in output
    assert AUDIT_LOG not in text and READWRITE_ALL not in text  # Entra grants are the script's


def test_entra_database_login_is_the_default_and_stores_no_password() -> None:
    text = _bicep()
    assert "param databaseAuth string = 'entra'" in text
    assert "param postgresAdminPassword string = ''" in text  # not needed for entra
    # The server takes Entra logins (and no passwords) and the identity is its admin.
    assert "passwordAuth: useEntra ? 'Disabled' : 'Enabled'" in text
    assert "activeDirectoryAuth: useEntra ? 'Enabled' : 'Disabled'" in text
    admin = text[text.index("resource entraAdmin") :]
    admin = admin[: admin.index("\n}\n")]
    assert "if (useEntra)" in admin and "identity.properties.principalId" in admin
    assert "principalType: 'ServicePrincipal'" in admin
    # The URL names the identity's role and carries no password; the app is told to
    # log in with a token.
    entra_url = re.search(r"var databaseUrl = useEntra \? '([^']*)'", text)
    assert entra_url is not None and entra_url.group(1).startswith(
        "postgresql+psycopg://${identity.name}@"), entra_url
    assert "assword" not in entra_url.group(1)
    assert re.search(r"name: 'ROTATOR_DATABASE_AUTH'\s+value: databaseAuth", text)


CERTIFICATES_OFFICER = "a4417e6f-fecd-4de8-b567-7b0420556985"  # Key Vault Certificates Officer


def test_bicep_grants_certificate_objects_only_on_opt_in() -> None:
    # key_vault_format = "certificate" imports, creates and updates certificate objects:
    # Secrets Officer does not cover them, so the deployment offers the role, off by default.
    text = _bicep()
    assert re.search(r"^param keyVaultCertificates bool = false$", text, re.MULTILINE)
    role = text[text.index("resource vaultCertificatesRole") :]
    role = role[: role.index("\n}\n")]
    assert "if (keyVaultCertificates)" in role
    assert "keyVaultCertificatesOfficerRoleId" in role and CERTIFICATES_OFFICER in text
    assert "scope: vault" in role and "identity.properties.principalId" in role
    assert "principalType: 'ServicePrincipal'" in role
