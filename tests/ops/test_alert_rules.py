"""The alert rules are valid, and each alert is unit-tested both firing and not firing."""
import subprocess
from pathlib import Path

import yaml

from tests.ops import tools

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args):
    return subprocess.run([tools.require("promtool"), *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120)


def test_the_rules_and_the_scrape_config_are_valid():
    for args in (("check", "rules", "alerts.yml"), ("check", "config", "prometheus.yml")):
        result = promtool(*args)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_unit_tests_pass():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing():
    alerts = {rule["alert"] for group in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
              for rule in group["rules"] if "alert" in rule}
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    stays_quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert alerts - fires == set(), "alerts never tested firing"
    assert alerts - stays_quiet == set(), "alerts never tested not firing"
