"""deploy/prometheus/METRICS.md is the truth about what the running services expose:
every metric on each service's /metrics is catalogued with its type and labels, every
catalogued metric is exposed somewhere, and no label names a person."""
import re

import pytest
import requests

from tests.ops.conftest import catalogue

pytestmark = pytest.mark.e2e
PERSONAL_LABEL = re.compile(r"(resident|person|people|user|citizen|member|subject|registrant|recipient|email|phone)",
                            re.IGNORECASE)


def exposed(url: str) -> dict[str, dict]:
    """``{family name: {"type", "labels"}}`` from one /metrics (TYPE lines, and the samples' label names)."""
    families: dict[str, dict] = {}
    text = requests.get(url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if match := re.fullmatch(r"# TYPE (\S+) (\S+)", line):
            families[match.group(1)] = {"type": match.group(2), "labels": set()}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
        family = next((f for f in (name, re.sub(r"_(bucket|count|sum)$", "", name)) if f in families), None)
        assert family is not None, f"a sample without a TYPE line: {line}"
        families[family]["labels"] |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", line)) - {"le", "quantile"}
    return families


def test_every_exposed_metric_is_catalogued_and_every_catalogued_one_exposed(platform, scenario):
    listed = catalogue()
    seen: dict[str, dict] = {}
    for service, url in platform.urls.items():
        for name, family in exposed(url).items():
            assert name in listed, f"{service} exposes {name}, which deploy/prometheus/METRICS.md does not list"
            assert family["type"] == listed[name]["type"], f"{name}: {family['type']} exposed, catalogued otherwise"
            assert family["labels"] <= set(listed[name]["labels"]), \
                f"{name} on {service} has labels {sorted(family['labels'])}, the catalogue {listed[name]['labels']}"
            seen.setdefault(name, family)
    synthetic = {name for name, entry in listed.items() if entry["type"] == "synthetic"}
    assert set(listed) - synthetic - set(seen) == set(), "catalogued but exposed by no service"


def test_no_label_names_a_person():
    for name, entry in catalogue().items():
        for label in entry["labels"]:
            assert not PERSONAL_LABEL.search(label) and not label.endswith("_id"), f"{name} has label {label}"


def test_metric_names_follow_the_conventions():
    for name, entry in catalogue().items():
        if entry["type"] == "synthetic" or not name.startswith("linli_"):
            continue
        assert (entry["type"] == "counter") == name.endswith("_total"), f"{name}: _total is for counters only"
        assert not re.search(r"_(ms|milliseconds|minutes|hours|kb|mb)(_|$)", name), f"{name}: use base units"
