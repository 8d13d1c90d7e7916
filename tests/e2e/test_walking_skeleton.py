"""The walking skeleton end to end: the four service processes started the way
`make run` starts them (`linli up`), driven over HTTP."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from services.common.auth import dev_secret, issue_token

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
LINLI = Path(sys.executable).parent / "linli"
SERVICES = ("residents", "events", "notifications", "reports")


class RunningPlatform:
    def __init__(self, env, var_dir):
        self.env = env
        self.var_dir = var_dir
        self.urls = {name: f"http://{env[f'LINLI_{name.upper()}_HTTP']}" for name in SERVICES}
        self.process = None
        self.starts = 0

    def up(self):
        self.starts += 1
        out_path = self.var_dir / f"linli-up-{self.starts}.out"
        self.output = open(out_path, "wb")
        self.process = subprocess.Popen(
            [str(LINLI), "up"], cwd=ROOT, env=self.env, stdout=self.output, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 120
        while b"Linli is up" not in out_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(out_path.read_text())
            time.sleep(0.2)

    def down(self):
        result = subprocess.run([str(LINLI), "down"], cwd=ROOT, env=self.env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert self.process.wait(30) == 0
        self.output.close()

    def headers(self, scopes, communities=("tongzilin",)):
        secret = dev_secret(self.var_dir)  # the one `linli up` generated into var/
        token = issue_token(secret, subject="e2e", scopes=list(scopes), communities=list(communities))
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def linli(tmp_path, amqp_uri, free_port):
    env = {key: value for key, value in os.environ.items() if not key.startswith("LINLI_")}
    env.update(
        LINLI_VAR_DIR=str(tmp_path),
        LINLI_AMQP_URI=amqp_uri,
        LINLI_MONGO_PORT=str(free_port()),  # linli up starts its own SecantusDB under var/
        **{f"LINLI_{name.upper()}_HTTP": f"127.0.0.1:{free_port()}" for name in SERVICES},
    )
    platform = RunningPlatform(env, tmp_path)
    yield platform
    if platform.process and platform.process.poll() is None:
        platform.process.send_signal(signal.SIGTERM)
        platform.process.wait(60)


def poll(fetch, until, timeout_s=15):
    deadline = time.monotonic() + timeout_s
    while True:
        response = fetch()
        if until(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_register_count_welcome_stop_and_start_again(linli):
    linli.up()
    for name, url in linli.urls.items():
        assert requests.get(url + "/health").json() == {"status": "ok", "service": name}

    worker = linli.headers(["residents:read", "residents:write", "reports:read", "notifications:read"])
    residents = {
        "zh-CN": {"community_id": "tongzilin", "name": "王秀英", "residence_type": "registered",
                  "nationality": "CN", "preferred_language": "zh-CN", "tags": ["elderly"]},
        "en": {"community_id": "tongzilin", "name": "James O'Neill", "residence_type": "foreign",
               "nationality": "IE", "preferred_language": "en"},
    }
    ids = {}
    for language, body in residents.items():
        response = requests.post(linli.urls["residents"] + "/residents", json=body, headers=worker)
        assert response.status_code == 201, response.text
        ids[language] = response.json()["id"]

    summary_url = linli.urls["reports"] + "/communities/tongzilin/summary"
    summary = poll(lambda: requests.get(summary_url, headers=worker),
                   lambda r: r.status_code == 200 and r.json()["residents_total"] == 2)
    assert summary.json()["residents_by_residence_type"] == {"registered": 1, "foreign": 1}

    for language, needle in (("zh-CN", "欢迎"), ("en", "Welcome")):
        inbox_url = f"{linli.urls['notifications']}/residents/{ids[language]}/inbox"
        inbox = poll(lambda: requests.get(inbox_url, headers=worker), lambda r: r.json()["items"]).json()
        assert [(i["kind"], i["language"]) for i in inbox["items"]] == [("welcome", language)]
        assert needle in inbox["items"][0]["title"]

    linli.down()
    with pytest.raises(requests.ConnectionError):
        requests.get(linli.urls["residents"] + "/health", timeout=2)

    linli.up()  # a second start finds the data the first one left under var/
    resident = requests.get(f"{linli.urls['residents']}/residents/{ids['zh-CN']}", headers=worker)
    assert resident.status_code == 200 and resident.json()["name"] == "王秀英"
    assert requests.get(summary_url, headers=worker).json()["residents_total"] == 2
    linli.down()
