"""The shipped operations files: alert rules (promtool), the Grafana dashboard, the systemd units.

promtool comes with Debian's prometheus package and systemd-analyze with systemd; without
them these tests skip, except in CI (.ci/run installs both), where they must run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.metrics import (
    CampaignMetrics,
    CodeIndexMetrics,
    CommandMetrics,
    EventStoreMetrics,
    ProjectionMetrics,
    UpdateMetrics,
    new_registry,
)
from tests.tools import tool

OPS = Path(__file__).resolve().parents[2] / "ops"


def exported_names() -> set[str]:
    """Every series name the services export, with the suffixes Prometheus gives counters and histograms."""
    registry = new_registry(process_metrics=False)
    for group in (
        EventStoreMetrics,
        ProjectionMetrics,
        CodeIndexMetrics,
        CommandMetrics,
        CampaignMetrics,
        UpdateMetrics,
    ):
        group(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names = {family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]}
    return names | {"mahavishnu_ready"}  # core.probes adds it to every /metrics at scrape time


def rules() -> list[dict[str, str]]:
    document = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The names of ours (and `up`, process_*) that a PromQL expression reads; label values are ignored."""
    without_strings = re.sub(r'"[^"]*"', "", expr)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?=\s*[\[{)\s]|$)", without_strings))
    return {w for w in words if w.startswith(("mahavishnu", "process_")) or w == "up"}


def test_the_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", "alerts.yml"], cwd=OPS / "prometheus", capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"], cwd=OPS / "prometheus", capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_the_issue_asks_for_is_there() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert {
        "MahavishnuIndexStale",
        "MahavishnuProjectionLagging",
        "MahavishnuPollsFailing",
        "MahavishnuAvailabilityBudgetBurnFast",
        "MahavishnuCampaignAborted",
    } <= alerts
    assert any("Burn" in name for name in alerts)


def test_rules_and_dashboard_read_only_metrics_the_services_export() -> None:
    exported = exported_names()
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    dashboard = json.loads((OPS / "grafana" / "mahavishnu.json").read_text())
    expressions = [rule["expr"] for rule in rules()] + [
        target["expr"] for panel in dashboard["panels"] for target in panel["targets"]
    ]
    for expr in expressions:
        unknown = {n for n in metric_names(expr) if n not in exported and n not in recorded and n != "up"}
        unknown = {n for n in unknown if not n.startswith("process_")}  # prometheus-client's process collector
        assert not unknown, f"{expr!r} reads {sorted(unknown)}, which no service exports"
    assert len(dashboard["panels"]) >= 10 and dashboard["uid"] == "mahavishnu"


@pytest.mark.parametrize("unit", ["mahavishnu.service", "mahavishnu-agent@.service"])
def test_the_systemd_units_are_hardened_and_pass_systemd_analyze(unit: str, tmp_path: Path) -> None:
    text = (OPS / "systemd" / unit).read_text()
    for setting in ("Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes"):
        assert setting in text.splitlines(), f"{unit} lacks {setting}"
    assert re.search(r"^ReadWritePaths=/var/lib/mahavishnu", text, re.M), f"{unit} lacks ReadWritePaths"
    analyze = tool("systemd-analyze")
    # verify wants ExecStart's program to exist: point it at this venv's mahavishnu.
    here = Path(sys.executable).parent / "mahavishnu"
    (tmp_path / unit).write_text(text.replace("/opt/mahavishnu/bin/mahavishnu", str(here)))
    instance = unit.replace("@.service", "@dev-a.service")
    verified = subprocess.run([analyze, "verify", f"./{instance}"], cwd=tmp_path, capture_output=True, text=True)
    assert verified.returncode == 0 and not verified.stderr.strip() and not verified.stdout.strip(), (
        verified.stdout + verified.stderr
    )
