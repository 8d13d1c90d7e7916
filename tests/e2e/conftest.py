"""The platform as `make run` starts it (`linli up`), for e2e tests.

``LINLI_SCALE=3 pytest tests/e2e`` runs every e2e test against three instances of each
service (``make run SCALE=3``); ``linli.urls`` are the first instances', ``linli.instance_urls``
all of them. ``linli_scaled`` is at least three instances whatever ``LINLI_SCALE`` says."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.common.auth import dev_secret, issue_token
from platform_tools.platform import instance_address, scale
from tests.conftest import free_port_run

ROOT = Path(__file__).resolve().parents[2]
LINLI = Path(sys.executable).parent / "linli"
SERVICES = ("residents", "events", "notifications", "reports", "partners")
SCALE = scale(os.environ)

class RunningPlatform:
    def __init__(self, env, var_dir, instances=1):
        self.env = env
        self.var_dir = var_dir
        self.instances = instances
        self.instance_urls = {name: [f"http://{instance_address(env[f'LINLI_{name.upper()}_HTTP'], n)}"
                                     for n in range(1, instances + 1)] for name in SERVICES}
        self.urls = {name: urls[0] for name, urls in self.instance_urls.items()}
        self.process = None
        self.starts = 0

    def up(self):
        self.starts += 1
        out_path = self.var_dir / f"linli-up-{self.starts}.out"
        self.output = open(out_path, "wb")
        self.process = subprocess.Popen(
            [str(LINLI), "up"], cwd=ROOT, env=self.env, stdout=self.output, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 120 + 60 * (self.instances - 1)
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


def _free_address(free_port, instances) -> str:
    """An address whose port is free for every instance (port + 100 × n, as `linli up` assigns them)."""
    while True:
        address = f"127.0.0.1:{free_port()}"
        ports = [int(instance_address(address, n).rsplit(":", 1)[1]) for n in range(1, instances + 1)]
        if all(_free(port) for port in ports):
            return address


def _free(port) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _platform(tmp_path, amqp_uri, free_port, instances):
    env = {key: value for key, value in os.environ.items() if not key.startswith("LINLI_")}
    env.update(
        LINLI_VAR_DIR=str(tmp_path),
        LINLI_AMQP_URI=amqp_uri,
        LINLI_MONGO_PORT=str(free_port_run(len(SERVICES))),  # one SecantusDB per service  # linli up starts its own SecantusDB under var/
        LINLI_SCALE=str(instances),
        **{f"LINLI_{name.upper()}_HTTP": _free_address(free_port, instances) for name in SERVICES},
    )
    platform = RunningPlatform(env, tmp_path, instances)
    yield platform
    if platform.process and platform.process.poll() is None:
        platform.process.send_signal(signal.SIGTERM)
        platform.process.wait(60)


@pytest.fixture
def linli(tmp_path, amqp_uri, free_port):
    yield from _platform(tmp_path, amqp_uri, free_port, SCALE)


@pytest.fixture
def linli_scaled(tmp_path, amqp_uri, free_port):
    yield from _platform(tmp_path, amqp_uri, free_port, max(3, SCALE))


