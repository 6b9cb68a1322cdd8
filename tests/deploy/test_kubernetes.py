"""The Kustomize base matches what the code reads: env names, port, paths, policy keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rotator.config import KEYS, SETTINGS_ENV, Settings, load_policy
from tests.support.deploy import DEPLOY, METRICS_PORT, walk

BASE = DEPLOY / "kubernetes" / "base"
OVERLAY = DEPLOY / "kubernetes" / "overlays" / "example"
DAEMON_KEYS = ("scan_interval_minutes", "reconcile_interval_seconds", "max_concurrent_rotations")


@pytest.fixture(scope="module")
def kustomization(yaml_module: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml_module.safe_load((BASE / "kustomization.yaml").read_text())
    return data


@pytest.fixture(scope="module")
def objects(yaml_module: Any, kustomization: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for doc in yaml_module.safe_load_all((BASE / name).read_text()):
            if doc:
                found[doc["kind"]] = doc
    return found


@pytest.fixture(scope="module")
def container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def test_every_listed_resource_exists(kustomization: dict[str, Any]) -> None:
    for name in kustomization["resources"]:
        assert (BASE / name).is_file(), name
    listed = set(kustomization["resources"]) | {"kustomization.yaml"}
    generated = {f for g in kustomization["configMapGenerator"] for f in g["files"]}
    on_disk = {p.name for p in BASE.iterdir()}
    assert on_disk == listed | generated, "every file in the base is used"


def test_kinds(objects: dict[str, dict[str, Any]]) -> None:
    assert set(objects) >= {
        "Deployment", "ServiceAccount", "Service", "PodDisruptionBudget", "NetworkPolicy"
    }


def test_two_replicas_and_a_disruption_budget(objects: dict[str, dict[str, Any]]) -> None:
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pdb = objects["PodDisruptionBudget"]["spec"]
    assert pdb["minAvailable"] == 1
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (pdb["selector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()


def test_workload_identity_without_a_secret(
    objects: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    sa = objects["ServiceAccount"]
    assert "azure.workload.identity/client-id" in sa["metadata"]["annotations"]
    pod = objects["Deployment"]["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert SETTINGS_ENV["client_secret"] not in _env(container)


def test_env_names_are_the_settings_the_code_reads(container: dict[str, Any]) -> None:
    env = _env(container)
    known = set(SETTINGS_ENV.values())
    assert set(env) <= known, set(env) - known
    assert env[SETTINGS_ENV["http_port"]]["value"] == str(METRICS_PORT)
    assert Settings.model_fields["http_port"].default == METRICS_PORT
    url = env[SETTINGS_ENV["database_url"]]
    assert "value" not in url
    assert url["valueFrom"]["secretKeyRef"]["name"] == "rotator-database"
    assert env[SETTINGS_ENV["log_format"]]["value"] in ("auto", "json", "console")
    # The settings these values go through accept them.
    Settings.model_validate(
        {
            SETTINGS_ENV["http_port"]: env[SETTINGS_ENV["http_port"]]["value"],
            SETTINGS_ENV["log_format"]: env[SETTINGS_ENV["log_format"]]["value"],
            SETTINGS_ENV["log_level"]: env[SETTINGS_ENV["log_level"]]["value"],
        }
    )


def test_ports_and_probes(objects: dict[str, dict[str, Any]], container: dict[str, Any]) -> None:
    (port,) = container["ports"]
    assert port["containerPort"] == METRICS_PORT
    name = port["name"]

    def probe_port(probe: dict[str, Any]) -> object:
        return probe["httpGet"]["port"]

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert probe_port(container[kind]) in (name, METRICS_PORT)
    service_port = objects["Service"]["spec"]["ports"][0]
    assert service_port["port"] == METRICS_PORT and service_port["targetPort"] in (name, 9464)
    annotations = objects["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_restricted_security_context(
    objects: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_policy_configmap_is_mounted_where_rotator_config_points(
    kustomization: dict[str, Any], objects: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    config_path = Path(_env(container)[SETTINGS_ENV["config_path"]]["value"])
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    mount = mounts[str(config_path.parent)]
    assert mount.get("readOnly") is True
    volumes = {v["name"]: v for v in objects["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    cm_name = volumes[mount["name"]]["configMap"]["name"]
    (generator,) = [g for g in kustomization["configMapGenerator"] if g["name"] == cm_name]
    assert config_path.name in [Path(f).name for f in generator["files"]]


@pytest.mark.parametrize(
    "policy_file", [BASE / "policy.toml", DEPLOY / "azure" / "policy.toml"], ids=["k8s", "azure"]
)
def test_policy_file_validates(policy_file: Path) -> None:
    settings = Settings.model_validate(
        {SETTINGS_ENV["vault_url"]: "https://contoso-rotator.vault.azure.net"}
    )
    policy = load_policy(policy_file, settings)
    assert policy.apps
    text = policy_file.read_text(encoding="utf-8")
    for key in DAEMON_KEYS:
        assert key in KEYS and not KEYS[key].in_app
        assert f"\n{key} = " in text, f"{policy_file.name} should show {key}"
    assert policy.daemon.max_concurrent_rotations >= 1


def test_network_policy(objects: dict[str, dict[str, Any]]) -> None:
    spec = objects["NetworkPolicy"]["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = {p["port"] for rule in spec["ingress"] for p in rule["ports"]}
    assert ingress_ports == {METRICS_PORT}
    egress_ports = {(p["protocol"], p["port"]) for rule in spec["egress"] for p in rule["ports"]}
    assert {("TCP", 443), ("TCP", 5432), ("UDP", 53)} <= egress_ports
    assert all(rule.get("ports") for rule in spec["egress"]), "no rule opens every port"


def test_overlay_refers_to_the_base_and_patches_existing_paths(yaml_module: Any) -> None:
    overlay = yaml_module.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../../base"]
    assert overlay["components"] == ["../../components/entra-database"]
    for patch in overlay["patches"]:
        ops = yaml_module.safe_load(patch["patch"])
        assert all(op["op"] == "replace" for op in ops)
    assert any(
        "azure.workload.identity~1client-id" in op["path"]
        for patch in overlay["patches"]
        for op in yaml_module.safe_load(patch["patch"])
    )


def test_no_literal_values_for_secret_settings(objects: dict[str, dict[str, Any]]) -> None:
    for node in walk(objects):
        if isinstance(node, dict) and node.get("name") in (
            SETTINGS_ENV["client_secret"],
            SETTINGS_ENV["database_url"],
        ):
            assert "value" not in node


def _apply(doc: Any, ops: list[dict[str, Any]]) -> None:
    """The JSON patch operations the component uses (test, replace, add), as kustomize
    applies them; a path that is not there fails like it would."""
    for op in ops:
        *parents, last = [p.replace("~1", "/") for p in op["path"].split("/")[1:]]
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = last if isinstance(node, dict) else (len(node) if last == "-" else int(last))
        if op["op"] == "test":
            assert node[key] == op["value"], op
        elif op["op"] == "replace":
            node[key] = op["value"]
        else:
            assert op["op"] == "add", op
            if isinstance(node, list):
                node.insert(key, op["value"])
            else:
                node[key] = op["value"]


def test_the_example_overlay_logs_in_with_entra_and_stores_no_database_password(
    yaml_module: Any, objects: dict[str, dict[str, Any]],
) -> None:
    overlay = yaml_module.safe_load((OVERLAY / "kustomization.yaml").read_text())
    component_dir = (OVERLAY / overlay["components"][0]).resolve()
    component = yaml_module.safe_load((component_dir / "kustomization.yaml").read_text())
    deployment = yaml_module.safe_load(yaml_module.safe_dump(objects["Deployment"]))
    (patch,) = component["patches"]
    assert patch["target"] == {"kind": "Deployment", "name": "rotator"}
    _apply(deployment, yaml_module.safe_load(patch["patch"]))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = _env(container)
    assert env["ROTATOR_DATABASE_AUTH"]["value"] == "entra"
    url_ref = env["ROTATOR_DATABASE_URL"]["valueFrom"]
    assert set(url_ref) == {"configMapKeyRef"}, url_ref
    (generated,) = [g for g in overlay["configMapGenerator"]
                    if g["name"] == url_ref["configMapKeyRef"]["name"]]
    (literal,) = generated["literals"]
    url = literal.removeprefix("url=")
    assert url.startswith("postgresql+psycopg://")
    userinfo = url.removeprefix("postgresql+psycopg://").split("@")[0]
    assert ":" not in userinfo, "the URL must not carry a password"
    assert "secretKeyRef" not in yaml_module.safe_dump(deployment)
