"""The platform as `make run` starts it (`linli up`), for e2e tests."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.common.auth import dev_secret, issue_token

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


