"""Prometheus fit: the alert rules pass `promtool test rules`, /metrics passes `promtool check
metrics`, and every metric an alert or the Grafana dashboard reads is one the hub exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest

from hub.mosquitto import PrivateBroker, free_port
from tests.support import RunningHub

PROMETHEUS_DIR = Path(__file__).resolve().parent.parent / "firmware_config" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
DASHBOARD = PROMETHEUS_DIR / "grafana-dashboard.json"
# A name in a PromQL expression: ours, the process collector's, or Prometheus's own `up`.
METRIC_NAME = re.compile(r"\b((?:shelfsignal|process|python)_[a-z0-9_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian package prometheus; ./scripts/test installs it)")
    return found


def names_in(expression: str) -> set[str]:
    return set(METRIC_NAME.findall(expression))


def alert_expressions() -> list[str]:
    import yaml

    doc = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in doc["panels"] for target in panel["targets"]]


def exported_names(metrics_text: str) -> set[str]:
    """Every family the exposition declares, with the sample names a histogram or counter implies."""
    names: set[str] = set()
    for match in re.finditer(r"^# TYPE (\S+) (\S+)$", metrics_text, re.M):
        name, kind = match.groups()
        names.add(name)
        if kind == "histogram":
            names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
        if kind == "counter" and not name.endswith("_total"):
            names.add(name + "_total")
    names.update(m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", metrics_text, re.M))
    return names


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    tool = promtool()
    checked = subprocess.run([tool, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([tool, "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS_DIR, capture_output=True,
                            text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_test_case() -> None:
    import yaml

    rules = {rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert rules - fired == set(), "alerts with no test case that makes them fire"


def test_grafana_dashboard_is_well_formed() -> None:
    """Grafana cannot be installed here, so check what it needs to import the JSON."""
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["title"] and isinstance(doc["schemaVersion"], int)
    assert [v["name"] for v in doc["templating"]["list"] if v["type"] == "datasource"] == ["datasource"]
    ids = [panel["id"] for panel in doc["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in doc["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, f"panel {panel['title']} is wider than the grid"
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], f"panel {panel['title']} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))


async def test_metrics_pass_promtool_and_cover_every_name_the_rules_and_dashboard_use(
        broker: PrivateBroker, tmp_path: Path) -> None:
    tool = promtool()
    # Central configured (nothing listens there), so the purchasing metrics are exported too.
    central = {"base_url": f"http://127.0.0.1:{free_port()}", "retry_base_s": 0.1}
    async with (RunningHub(broker, tmp_path, central=central) as hub, aiohttp.ClientSession() as http,
                http.get(f"{hub.base_url}/metrics") as resp):
        assert resp.status == 200
        text = await resp.text()
    checked = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    exported = exported_names(text)
    assert "shelfsignal_build_info" in exported and "process_resident_memory_bytes" in exported
    assert re.search(r'^shelfsignal_build_info\{python_version="[0-9.]+",version="[^"]+"\} 1\.0$', text, re.M)
    assert re.search(r'^shelfsignal_purchasing_outbox_items\{status="pending"\} 0\.0$', text, re.M)
    used = set().union(*(names_in(e) for e in alert_expressions() + dashboard_expressions()))
    assert used - exported == set(), "names an alert or the dashboard reads that the hub does not export"
