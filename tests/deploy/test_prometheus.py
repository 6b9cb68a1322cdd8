"""The alert rules, the PrometheusRule and ServiceMonitor components and the Grafana
dashboard: valid for promtool, unit-tested, and naming only what /metrics exports."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rotator.domain.credentials import CredentialKind
from rotator.domain.records import InventoryRow
from rotator.metrics import Metrics
from tests.support.deploy import DEPLOY, METRICS_PORT, OPERATIONS
from tests.support.tools import require_tool

RULES = DEPLOY / "prometheus" / "rotator-rules.yaml"
RULE_TESTS = Path(__file__).parent / "prometheus" / "rotator-rules.test.yaml"
COMPONENTS = DEPLOY / "kubernetes" / "components"
DASHBOARD = DEPLOY / "grafana" / "rotator-dashboard.json"
# Labels Prometheus itself puts on every scraped series (job, instance) and those the
# Prometheus Operator adds (namespace, pod, container, endpoint): the rules may group by them.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "endpoint"}
# Series Prometheus makes itself for every target.
SYNTHETIC = {"up": TARGET_LABELS}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset", "inf", "nan"}


def promtool() -> str:
    return require_tool("promtool", package="prometheus")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, check=False)


def test_rules_are_valid() -> None:
    done = run("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_unit_tests_pass() -> None:
    # Series in, alerts out, for every rule, with the cases where it must stay silent.
    done = run("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested == {r["alert"] for r in rules(RULES)}


def rules(path: Path) -> list[dict[str, Any]]:
    import yaml

    data = yaml.safe_load(path.read_text())
    groups = data["spec"]["groups"] if data.get("kind") == "PrometheusRule" else data["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_prometheus_rule_component_holds_the_same_rules(yaml_module: Any) -> None:
    component = yaml_module.safe_load((COMPONENTS / "prometheus-rule" / "kustomization.yaml")
                                      .read_text())
    assert component["kind"] == "Component"
    (resource,) = component["resources"]
    rule = yaml_module.safe_load((COMPONENTS / "prometheus-rule" / resource).read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml_module.safe_load(RULES.read_text())


def test_service_monitor_scrapes_the_metrics_port_of_the_service(yaml_module: Any) -> None:
    component = yaml_module.safe_load((COMPONENTS / "service-monitor" / "kustomization.yaml")
                                      .read_text())
    assert component["kind"] == "Component"
    (resource,) = component["resources"]
    monitor = yaml_module.safe_load((COMPONENTS / "service-monitor" / resource).read_text())
    service = yaml_module.safe_load((DEPLOY / "kubernetes" / "base" / "service.yaml").read_text())
    assert monitor["kind"] == "ServiceMonitor"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= {
        # The base's kustomization puts this label on every object.
        "app.kubernetes.io/name": "rotator", **service["metadata"].get("labels", {})}.items()
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = service["spec"]["ports"]
    assert endpoint["port"] == port["name"] and port["port"] == METRICS_PORT
    assert endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True  # keeps rotator's own "service" label


def test_every_runbook_link_points_to_an_anchor_of_the_guide() -> None:
    guide = OPERATIONS.read_text(encoding="utf-8")
    anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", guide, re.M)}
    for rule in rules(RULES):
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page.endswith("docs/operations.md"), url
        assert anchor in anchors, f"{rule['alert']}: no anchor {anchor!r} in the guide"
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


def slug(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub's) gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


# ------------------------------------------------------------ names against a scrape


def exported() -> dict[str, set[str]]:
    """Every metric name (samples' names: _bucket, _count, ...) and its labels, from the
    page of a process that has seen an inventory, requests, rotations, scans and jobs."""
    metrics = Metrics()
    now = datetime.now(UTC)
    rows = [InventoryRow(
        app_id="00000000-0000-0000-0000-000000000001", key_id=f"10000000-0000-0000-0000-{n:012d}",
        object_id="20000000-0000-0000-0000-000000000001", app_display_name="app", kind=kind,
        display_name=None, start_at=now, end_at=now + timedelta(days=days), managed=managed,
    ) for n, (kind, days, managed) in enumerate([
        (CredentialKind.SECRET, 3, True), (CredentialKind.CERTIFICATE, -1, False)])]
    metrics.record_inventory(rows, now=now, horizon_days=30)
    metrics.record_request("graph", "list_apps", "ok")
    metrics.record_request("token", "token", "429")
    metrics.jobs.labels("scan", "ok").inc()
    metrics.rotation_duration.observe(1)
    metrics.verify_duration.observe(1)
    metrics.scan_duration.observe(1)
    found: dict[str, set[str]] = {k: set(v) for k, v in SYNTHETIC.items()}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
            found[sample.name] |= TARGET_LABELS
    return found


def selectors(expr: str) -> Iterator[tuple[str | None, set[str]]]:
    """(metric name or None, labels it names) for each part of a PromQL expression:
    selectors with their matchers, and the labels of by/without/on/ignoring clauses."""
    expr = re.sub(r"\$\w+", "1m", expr)  # Grafana's $__rate_interval and variables
    for match in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)",
                             expr):
        yield None, {x.strip() for x in match.group(1).split(",") if x.strip()}
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    for match in re.finditer(r"([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}", expr):
        labels = set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*\"", match.group(2)))
        yield match.group(1), labels
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr):
        name = match.group(1)
        if name.lower() not in KEYWORDS:
            yield name, set()


def expressions() -> list[tuple[str, str, str | None]]:
    """(where, PromQL, a template naming labels) of every rule and dashboard query."""
    out: list[tuple[str, str, str | None]] = []
    for rule in rules(RULES):
        template = " ".join(rule["annotations"].values())
        out.append((f"rule {rule['alert']}", rule["expr"], template))
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            out.append((f"panel {panel['title']!r}", target["expr"], target.get("legendFormat")))
    return out


@pytest.mark.parametrize("where, expr, template", expressions(), ids=lambda v: str(v)[:40])
def test_expression_names_only_exported_metrics_and_labels(
    where: str, expr: str, template: str | None
) -> None:
    found = exported()
    named: set[str] = set()
    for name, labels in selectors(expr):
        if name is not None:
            assert name in found, f"{where}: {name} is not on /metrics"
            missing = labels - found[name]
            assert not missing, f"{where}: {name} has no label {missing}"
            named.add(name)
        else:
            everywhere = set().union(*found.values())
            assert labels <= everywhere, f"{where}: no series has {labels - everywhere}"
    assert named, f"{where}: names no metric"
    # Labels the summary or the legend shows come from the series the expression names.
    shown = set(re.findall(r"\$labels\.(\w+)", template or ""))
    shown |= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", template or ""))
    available = set().union(*(found[n] for n in named))
    assert shown <= available, f"{where}: shows {shown - available}, not a label of its series"


def test_promql_reader_sees_names_and_labels() -> None:
    parts = list(selectors(
        'sum by (service) (rate(rotator_requests_total{status=~"5..|429"}[$__rate_interval]))'
        ' / on (job) group_left up{job="x"} > bool 2 * time()'))
    assert (None, {"service"}) in parts and (None, {"job"}) in parts
    assert ("rotator_requests_total", {"status"}) in parts and ("up", {"job"}) in parts
    assert {n for n, _ in parts if n} == {"rotator_requests_total", "up"}
