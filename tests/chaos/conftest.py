"""Breaking things on purpose: services as real processes that tests kill, stop and restart.

``make test-chaos`` runs these (they take minutes); ``make test`` does not.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pika
import pytest
import requests

from contracts import build_envelope
from tests.conftest import BIN, TEST_SECRET, free_port
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[2]


def wait_for(check, timeout_s=60, what="the condition", every_s=0.5):
    """``tests.waiting.until`` with the chaos tests' argument order and a slower pace."""
    return until(check, what, timeout_s, every_s)


class MongoServer:
    """A SecantusDB of the test's own, so the test can stop it and start it again on its data."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="linli-chaos-mongo-")
        self.port = free_port()
        self.process = None
        self.uri = f"mongodb://127.0.0.1:{self.port}/?replicaSet=secantus"

    def start(self):
        self.process = subprocess.Popen([str(BIN / "secantusd-py"), "--host", "127.0.0.1", "--port", str(self.port),
                                         "--storage-path", f"{self.dir}/db"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", self.port)) == 0, 60, "SecantusDB")

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


class ServiceProcess:
    """One service as `nameko run` runs it (the way `make run` does), which a test may kill."""

    def __init__(self, name, cls, env, log_dir):
        self.name, self.cls, self.env, self.log_dir = name, cls, env, log_dir
        self.address = f"127.0.0.1:{free_port()}"
        self.process = None
        self.starts = 0

    def start(self):
        self.starts += 1
        log = open(self.log_dir / f"{self.name}-{self.starts}.log", "wb")
        env = {**self.env, f"LINLI_{self.name.upper()}_HTTP": self.address}
        self.process = subprocess.Popen(
            [str(BIN / "nameko"), "run", "--config", f"services/{self.name}/config.yaml",
             f"services.{self.name}.service:{self.cls}"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self._healthy(), 60, f"{self.name} to start")

    def _healthy(self):
        assert self.process.poll() is None, (self.log_dir / f"{self.name}-{self.starts}.log").read_text()
        try:
            return requests.get(f"http://{self.address}/health", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def kill(self, sig=signal.SIGKILL):
        self.process.send_signal(sig)
        return self.process.wait(60)

    def get(self, path, **kwargs):
        from services.common.auth import issue_token

        token = issue_token(TEST_SECRET, subject="chaos", scopes=["reports:read", "reports:admin"], communities=["*"])
        return requests.get(f"http://{self.address}{path}", headers={"Authorization": f"Bearer {token}"},
                            timeout=30, **kwargs)


@pytest.fixture
def mongo():
    server = MongoServer()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def services(amqp_uri, mongo, db_prefix, tmp_path):
    started = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINLI_")}
    env.update(LINLI_AMQP_URI=amqp_uri, LINLI_MONGO_URI=mongo.uri, LINLI_DB_PREFIX=db_prefix,
               LINLI_JWT_SECRET=TEST_SECRET, LINLI_LOG_LEVEL="WARNING",
               # Long enough to ride out a database outage of ten seconds and more.
               LINLI_MESSAGE_RETRY_DELAYS_S="1,2,4,8,16")

    def make(name, cls):
        service = ServiceProcess(name, cls, env, tmp_path)
        started.append(service)
        return service

    yield make
    for service in started:
        if service.process and service.process.poll() is None:
            service.kill()


def registrations(community, count, start=0):
    """``count`` resident.registered envelopes for ``community`` (as the residents service sends them)."""
    return [build_envelope("resident.registered", {
        "resident_id": f"{community}-{n}", "community_id": community, "residence_type": "registered",
        "nationality": "CN", "preferred_language": "zh-CN", "birth_year": 1950 + n % 60},
        source="linli/residents").to_wire() for n in range(start, start + count)]


def publish(amqp_uri, envelopes, exchange="residents.events"):
    """Publish with confirms, as a producer that must not lose anything does."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    channel.confirm_delivery()
    properties = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    for envelope in envelopes:
        channel.basic_publish(exchange, envelope["type"], json.dumps(envelope).encode(), properties)
    connection.close()


def queue_depth(amqp_uri, queue):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()
