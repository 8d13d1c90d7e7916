"""/ready follows the database: 503 naming it while it is down, 200 again once it is back;
/health (the process is alive) stays 200 throughout."""
import time

import pytest
import requests

from tests.chaos.conftest import wait_for

pytestmark = pytest.mark.chaos


def test_ready_names_the_database_while_it_is_down(services, mongo):
    reports = services("reports", "ReportsService")
    reports.start()
    url = f"http://{reports.address}"
    ready = requests.get(url + "/ready", timeout=5)
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok", ready.text

    mongo.stop()
    started = time.monotonic()
    [down] = wait_for(lambda: [r for r in [requests.get(url + "/ready", timeout=5)] if r.status_code == 503], 20,
                      "/ready to say 503")
    assert time.monotonic() - started < 5, "the database check must be quick, and cached only for a second"
    body = down.json()
    assert body["error"] == "not_ready" and body["details"]["not_ready"] == ["database"], body
    assert "reports" in body["details"]["checks"]["database"] and "database" in body["message"]
    assert requests.get(url + "/health", timeout=5).status_code == 200

    mongo.start()
    wait_for(lambda: requests.get(url + "/ready", timeout=5).status_code == 200, 60, "/ready to say 200 again")
