"""The `linli` command against the running platform, as a community worker uses it."""
import json
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import LINLI, ROOT

pytestmark = pytest.mark.e2e
SAMPLE = Path(__file__).parents[1] / "data" / "tongzilin-collection-form.csv"


def test_import_a_form_then_run_an_event_at_the_door(linli):
    linli.up()
    result = subprocess.run([str(LINLI), "residents", "import", str(SAMPLE)], cwd=ROOT, env=linli.env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "completed: 200 registered, 0 already registered, 0 rejected" in result.stdout
    assert "200/200" in result.stderr  # the progress bar reached the end

    headers = linli.headers(["reports:read"])
    # A bound on waiting, not a timing claim: at LINLI_SCALE=3 on two cores (twelve services, one
    # SecantusDB) the three reports instances take far longer than one alone.
    deadline = time.monotonic() + 180
    while True:
        summary = requests.get(linli.urls["reports"] + "/communities/tongzilin/summary", headers=headers)
        if summary.status_code == 200 and summary.json()["residents_total"] == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert summary.json()["residents_total"] == 200

    profile = requests.get(linli.urls["reports"] + "/communities/tongzilin/profile", headers=headers).json()
    rebuilt = subprocess.run([str(LINLI), "reports", "rebuild"], cwd=ROOT, env=linli.env,
                             capture_output=True, text=True, timeout=300)
    assert rebuilt.returncode == 0 and "rebuilt from" in rebuilt.stdout, rebuilt.stderr
    assert requests.get(linli.urls["reports"] + "/communities/tongzilin/profile", headers=headers).json() == profile

    again = subprocess.run([str(LINLI), "residents", "import", str(SAMPLE)], cwd=ROOT, env=linli.env,
                           capture_output=True, text=True, timeout=300)
    assert "imported before" in again.stdout

    # The events a worker runs at the door.
    worker = linli.headers(["residents:read", "events:read", "events:write"])
    resident_id = requests.get(linli.urls["residents"] + "/residents", headers=worker,
                               params={"community_id": "tongzilin", "page_size": 1}).json()["items"][0]["id"]
    starts = datetime.now(timezone.utc) + timedelta(hours=1)
    event = {"community_id": "tongzilin", "organiser": "neighbourhood_centre", "category": "banquet",
             "title": {"zh-CN": "坝坝宴"}, "venue": "社区院坝", "starts_at": starts.isoformat(),
             "ends_at": (starts + timedelta(hours=3)).isoformat(), "capacity": 80, "audience": "community"}
    [event_id] = requests.post(linli.urls["events"] + "/events", json=event, headers=worker).json()["ids"]

    def linli_events(*args):
        result = subprocess.run([str(LINLI), "events", *args], cwd=ROOT, env=linli.env, capture_output=True,
                                text=True, timeout=60)
        return result.returncode, result.stdout, result.stderr

    assert linli_events("schedule", event_id)[0] == 0
    status, out, _ = linli_events("register", event_id, resident_id)
    assert status == 0 and json.loads(out)["status"] == "confirmed"
    code = json.loads(out)["code"]
    status, out, _ = linli_events("check-in", event_id, "--code", code)
    assert status == 0 and json.loads(out)["attended"]
    status, _, err = linli_events("register", event_id, resident_id)
    assert status == 1 and "already_registered" in err
    status, out, _ = linli_events("list", "--community", "tongzilin")
    assert [e["display_title"] for e in json.loads(out)["items"]] == ["坝坝宴"]
    linli.down()
