"""The shipped Prometheus rules and Grafana dashboard, as files: they use only metrics the agent exports, and
every alert has a promtool unit test where it fires and one where it must not."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, Set

import pytest
import yaml

from agent.ops.fleet_metrics import FLEET_FAMILIES
from agent.ops.metrics_model import FAMILIES
from tests.support.prometheus import PROMTOOL

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "hume-edge.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "hume-edge.rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "hume-edge-fleet.json"
EXPORTED = {f.name for f in (*FAMILIES, *FLEET_FAMILIES)}


def rules() -> Dict[str, Any]:
    loaded: Dict[str, Any] = yaml.safe_load(RULES.read_text())
    return loaded


def recorded() -> Set[str]:
    return {r["record"] for g in rules()["groups"] for r in g["rules"] if "record" in r}


def names_in(expr: str) -> Set[str]:
    return set(re.findall(r"\b(?:device:)?hume_edge[_:][a-z0-9_:]+", expr))


def test_every_alert_is_tested_firing_and_not() -> None:
    alerts = {r["alert"] for g in rules()["groups"] for r in g["rules"] if "alert" in r}
    cases = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert len(alerts) >= 10
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested quiet"


def test_rules_and_dashboard_use_only_exported_or_recorded_metrics() -> None:
    known = EXPORTED | recorded()
    exprs = [r["expr"] for g in rules()["groups"] for r in g["rules"]]
    dash = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    used = set().union(*(names_in(e) for e in exprs))
    # Counters are exported as <name>_total: the family name carries it already.
    assert used - known == set()
    assert len(used & EXPORTED) >= 25


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (scripts/setup --dev)")
def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    assert PROMTOOL is not None
    check = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
