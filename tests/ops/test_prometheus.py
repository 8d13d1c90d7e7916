"""A real Prometheus scraping the running platform after a small scenario: the series an
operator's dashboards and alerts read exist, with the values the scenario implies."""
import subprocess
import time

import pytest
import requests
import yaml

from tests.conftest import CONSUME_NOTHING, free_port
from tests.ops import tools
from tests.ops.conftest import COMMUNITY, ROOT, until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def prometheus(platform, tmp_path_factory):
    """``prometheus`` on a free port, with deploy/prometheus/prometheus.yml's jobs pointed at this platform."""
    binary = tools.require("prometheus")
    home = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ROOT / "deploy" / "prometheus" / "alerts.yml")]
    for job in config["scrape_configs"]:
        service = job["job_name"].removeprefix("linli-")
        job["static_configs"] = [{"targets": [platform.urls[service].removeprefix("http://")]}]
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(home / "prometheus.log", "wb")
    process = subprocess.Popen(
        [binary, f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        until(lambda: process.poll() is None and _ready(url), "prometheus to be ready", timeout_s=60)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _ready(url: str) -> bool:
    try:
        return requests.get(url + "/-/ready", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def query(prometheus: str, expr: str) -> dict[tuple, float]:
    """``{sorted label items: value}`` of an instant query."""
    body = requests.get(prometheus + "/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", body
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in body["data"]["result"]}


def value(prometheus: str, expr: str) -> float | None:
    found = query(prometheus, expr)
    assert len(found) <= 1, f"{expr}: {found}"
    return next(iter(found.values()), None)


def test_prometheus_sees_the_platform_as_the_scenario_left_it(platform, scenario, prometheus):
    residents = scenario["residents"]
    # Scrapes every second (each target from its own offset); wait until all are in, and have seen the scenario.
    until(lambda: len(query(prometheus, 'up{job=~"linli-.*"}')) == len(platform.urls), "a scrape of every target")
    until(lambda: (value(prometheus, 'sum(linli_messages_consumed_total{service="reports",'
                                     'type="resident.registered"})') or 0) >= residents,
          "reports' consumption of every resident.registered in Prometheus", timeout_s=60)

    up = query(prometheus, 'up{job=~"linli-.*"}')
    assert sorted(dict(k)["job"] for k in up) == [f"linli-{s}" for s in sorted(platform.urls)]
    assert set(up.values()) == {1.0}

    assert value(prometheus, 'sum(linli_messages_published_total{service="residents",type="resident.registered"})') \
        == residents
    # Each consumer of resident.registered handled each exactly once (reports, notifications' inbox, partner feeds).
    processed = 'sum(linli_messages_consumed_total{{service="{}",type="resident.registered",outcome="processed"}})'
    for service in ("reports", "notifications", "partners"):
        assert value(prometheus, processed.format(service)) == residents, service
    assert (value(prometheus, 'sum(linli_messages_consumed_total{outcome="duplicate"})') or 0) == 0

    consumers = query(prometheus, 'linli_queue_consumers{kind=~"main|rpc"}')
    assert {dict(k)["service"] for k in consumers} == set(platform.urls) - CONSUME_NOTHING
    assert min(consumers.values()) >= 1, {dict(k)["queue"]: v for k, v in consumers.items() if v < 1}
    dead = query(prometheus, "linli_dead_letter_messages")
    assert dead and set(dead.values()) == {0.0}
    assert (value(prometheus, "sum(linli_messages_dead_lettered_total)") or 0) == 0  # no series: none ever
    assert set(query(prometheus, "linli_broker_reachable").values()) == {1.0}
    assert value(prometheus, 'linli_outbox_pending{service="residents"}') == 0

    assert value(prometheus, f'linli_community_residents{{community="{COMMUNITY}"}}') == residents
    assert value(prometheus, f'linli_community_foreign_residents{{community="{COMMUNITY}"}}') == scenario["foreign"]
    # Every email the SMTP server received, and no other, was counted as sent (more may still go out).
    sent = 'sum(linli_notification_deliveries_total{channel="email",outcome="sent"})'
    until(lambda: value(prometheus, sent) == len(platform.smtp.messages()), "the email count to match", 30)
    assert value(prometheus, sent) >= scenario["emails"] >= 2 * residents
    assert value(prometheus, 'sum(linli_notification_deliveries_total{outcome="failed"})') == 0
    # The rule that is the alert's numerator is computable (every series exists from the start) once
    # Prometheus holds two samples of it, and it is 0.
    failed_rate = 'sum(rate(linli_notification_deliveries_total{outcome="failed"}[1m]))'
    until(lambda: value(prometheus, failed_rate) is not None, "two samples of the failure counter", 30)
    assert value(prometheus, failed_rate) == 0

    # The entrypoint histogram yields the dashboard's latency quantiles (calls while Prometheus watches:
    # those of the scenario came before its first scrape, and a rate of 0 gives no quantile).
    for _ in range(20):
        requests.get(platform.urls["residents"] + "/health", timeout=5)
    time.sleep(3)
    p99 = value(prometheus, 'histogram_quantile(0.99, sum by (le) '
                            '(rate(linli_entrypoint_duration_seconds_bucket{service="residents"}[5m])))')
    assert p99 is not None and 0 < p99 <= 10

    # The alert rules load and, on a healthy platform, none of the operational ones fires.
    time.sleep(2)
    rules = requests.get(prometheus + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    states = {rule["name"]: rule["state"] for group in rules for rule in group["rules"]}
    assert len(states) >= 9
    quiet = {"LinliDeadLettersGrowing", "LinliDeadLetterQueueNotEmpty", "LinliServiceDown", "LinliConsumerDown",
             "LinliWebhookFailing", "LinliNotificationFailureRateHigh", "LinliOutboxBacklog"}
    assert {name: states[name] for name in quiet if states[name] != "inactive"} == {}
