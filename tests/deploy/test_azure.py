"""main.bicep and the Graph permission script, checked statically."""

from __future__ import annotations

import re
import subprocess

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
    assert re.search(r"administratorLoginPassword: postgresAdminPassword\b", text)
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
