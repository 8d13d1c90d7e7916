"""The Grafana dashboard loads, every panel queries something, and every metric it queries is catalogued."""
import json
import re
from pathlib import Path

import yaml

from tests.ops.conftest import catalogue

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
FUNCTIONS_AND_KEYWORDS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "irate", "histogram_quantile", "time", "by", "without",
    "on", "ignoring", "and", "or", "unless", "le", "offset", "abs", "absent", "clamp_min", "topk", "bottomk",
}


def panels(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def metric_names(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that are metric names: not in {...} or [...], not a
    function or keyword, not a label in by (...); histogram suffixes mapped to the family."""
    stripped = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expr)
    stripped = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", stripped)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped)) - FUNCTIONS_AND_KEYWORDS
    return {re.sub(r"_(bucket|count|sum)$", "", name) if name.endswith(("_bucket", "_count", "_sum"))
            and not name.endswith("_total") else name for name in names}


def test_the_dashboard_loads_and_every_panel_queries_a_catalogued_metric():
    dashboard = json.loads((GRAFANA / "linli-overview.json").read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    listed = set(catalogue())
    graphs = [p for p in panels(dashboard) if p["type"] != "row"]
    assert len(graphs) >= 10
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in graphs:
        exprs = [target.get("expr", "").strip() for target in panel.get("targets", [])]
        assert exprs and all(exprs), f"panel {panel['title']!r} has no query"
        for expr in exprs:
            used = metric_names(expr)
            assert used, f"panel {panel['title']!r}: {expr} names no metric"
            assert used <= listed, f"panel {panel['title']!r} uses {sorted(used - listed)}, not in METRICS.md"


def test_the_provisioning_points_the_dashboard_at_the_provisioned_datasource():
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "linli.yml").read_text())["datasources"]
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "linli.yml").read_text())["providers"]
    assert providers and all(p["type"] == "file" and p["options"]["path"] for p in providers)
    uids = {d["uid"] for d in datasources if d["type"] == "prometheus"}
    dashboard = json.loads((GRAFANA / "linli-overview.json").read_text())
    used = {target["datasource"]["uid"] for panel in panels(dashboard) for target in panel.get("targets", [])}
    assert used and used <= uids


def test_the_metric_name_parser_sees_through_promql():
    expr = 'histogram_quantile(0.99, sum by (service, le) (rate(linli_entrypoint_duration_seconds_bucket{x="a_b"}[5m])))'
    assert metric_names(expr) == {"linli_entrypoint_duration_seconds"}
    assert metric_names("time() - max(linli_x_timestamp_seconds) / on () up") == {"linli_x_timestamp_seconds", "up"}
