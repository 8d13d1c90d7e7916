"""Test fixtures: a RabbitMQ vhost and MongoDB-wire server of the run's own.

Integration and e2e tests talk to the real RabbitMQ on localhost (each test
in a vhost created for it alone, named after this run, made and deleted in
batches by tests/vhost_pool.py) and
to a real SecantusDB started for this run in a temporary data directory.
"""
import eventlet

eventlet.monkey_patch()  # before anything imports socket or threading

import contextlib  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RUN_ID = uuid.uuid4().hex[:8]
_vhost_numbers = itertools.count(1)
TEST_SECRET = f"test-secret-{RUN_ID}-not-for-production"
TEST_DATA_KEY = "bGlubGktdGVzdC1kYXRhLWtleS1ub3QtZm9yLXByb2Q="  # a Fernet key for tests only
# the readers' key pair for the personal fields residents seals in RPC replies (tests only)
TEST_READER_PRIVATE_KEY = "bGlubGktdGVzdC1yZWFkZXIta2V5LW5vdC1wcm9kISE="
TEST_READER_PUBLIC_KEY = "FStBDthmXzzzqMs/1rPl7wrCY1JgBt8oc+xGZSchK0g="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rabbitmqctl(*args: str) -> str:
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free ports (``make run`` gives each service's SecantusDB the next)."""
    for _ in range(100):
        first = free_port()
        try:
            with contextlib.ExitStack() as held:
                for port in range(first, first + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports found")


@pytest.fixture(name="free_port")
def free_port_fixture():
    return free_port


@contextlib.contextmanager
def own_vhost(name: str):
    """The vhost ``name``, created for guest and deleted on leaving."""
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


@pytest.fixture(scope="session")
def vhost_pool():
    """This run's vhosts, made and deleted in batches (tests/vhost_pool.py); all gone when the run ends."""
    from tests.vhost_pool import VhostPool

    pool = VhostPool(lambda: f"linli-test-{RUN_ID}-{next(_vhost_numbers)}")
    yield pool
    pool.close()


@pytest.fixture
def vhost(vhost_pool):
    """A RabbitMQ vhost for this test alone, never used before; deleted with its batch."""
    name = vhost_pool.take()
    yield name
    vhost_pool.give_back(name)


@pytest.fixture
def amqp_uri(vhost):
    return amqp_uri_of(vhost)


@pytest.fixture(scope="session")
def mongo_uri():
    """A SecantusDB for this run, in its own data directory (or $LINLI_TEST_MONGO_URI)."""
    if os.environ.get("LINLI_TEST_MONGO_URI"):
        yield os.environ["LINLI_TEST_MONGO_URI"]
        return
    data_dir = tempfile.mkdtemp(prefix=f"linli-test-{RUN_ID}-mongo-")
    port = free_port()
    log = open(Path(data_dir) / "secantusdb.log", "wb")
    server = subprocess.Popen(
        [str(BIN / "secantusd-py"), "--host", "127.0.0.1", "--port", str(port), "--storage-path", f"{data_dir}/db"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"SecantusDB did not start; see {data_dir}/secantusdb.log")
        time.sleep(0.2)
    yield f"mongodb://127.0.0.1:{port}/?replicaSet=secantus"
    server.terminate()
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()  # never leave a server of ours behind
        server.wait()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def db_prefix(request):
    """Database names of this test alone: linli_test_<run>_<n>_<service>."""
    return f"linli_test_{RUN_ID}_{next(_vhost_numbers)}_"


def amqp_uri_of(vhost: str) -> str:
    host = os.environ.get("LINLI_RABBITMQ_HOST", "127.0.0.1")
    return f"amqp://guest:guest@{host}:5672/{vhost}"


@pytest.fixture
def config(amqp_uri, mongo_uri, db_prefix):
    """nameko config for a service container under test."""
    return service_config(amqp_uri, mongo_uri, db_prefix)


def service_config(amqp_uri, mongo_uri, db_prefix):
    return {
        "AMQP_URI": amqp_uri,
        "MONGO_URI": mongo_uri,
        "MONGO_DB_PREFIX": db_prefix,
        "JWT_SECRET": TEST_SECRET,
        "RESIDENTS_DATA_KEY": TEST_DATA_KEY,
        # Both readers (notifications, partners) hold the one test key pair.
        "READER_PUBLIC_KEYS": {"notifications": TEST_READER_PUBLIC_KEY, "partners": TEST_READER_PUBLIC_KEY},
        "PERSONAL_DATA_READERS": {"notify": "notifications", "partner_feed": "partners"},
        "PERSONAL_DATA_PRIVATE_KEY": TEST_READER_PRIVATE_KEY,
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
        "serializer": "json",
        "max_workers": 10,
        # Failed messages are retried twice, quickly, before they are parked.
        "MESSAGE_RETRY_DELAYS_S": "0.05,0.1",
    }


# Services with no queue of their own (no message handler, no RPC): cases, until issue #17's ingest door.
CONSUME_NOTHING = frozenset({"cases"})


def make_token(scopes, communities=("tongzilin",), **kwargs):
    """A bearer token signed with the test secret."""
    from services.common.auth import issue_token

    return issue_token(TEST_SECRET, subject="test", scopes=list(scopes), communities=list(communities), **kwargs)


@pytest.fixture
def token():
    """Make a bearer token signed with the test secret."""
    return make_token


def _kill(container_or_runner):
    # As nameko's own fixtures do: a graceful stop() from a fixture's teardown
    # can wait forever on the consumer thread here; tests of graceful
    # shutdown call stop() in the test body.
    try:
        container_or_runner.kill()
    except Exception:  # noqa: BLE001 - teardown must go on
        pass


@pytest.fixture
def container_factory(config):
    """nameko's container_factory, but killed before this test's vhost is deleted."""
    yield from _containers(config)


@pytest.fixture(scope="module")
def module_config(vhost_pool, mongo_uri):
    """nameko config shared by one module's tests: its own vhost and databases, for tests that only read
    what they made themselves (a fresh platform per test costs seconds; tests that count or stop things
    keep ``config``)."""
    vhost = vhost_pool.take()
    yield service_config(amqp_uri_of(vhost), mongo_uri, f"linli_test_{RUN_ID}_{next(_vhost_numbers)}_")
    vhost_pool.give_back(vhost)


@pytest.fixture(scope="module")
def module_container_factory(module_config):
    """``container_factory`` for one module's shared platform, killed after its last test."""
    yield from _containers(module_config)


def _containers(config):
    from nameko.containers import ServiceContainer

    containers = []

    def make(service_cls, container_config=None):
        container = ServiceContainer(service_cls, container_config or config)
        containers.append(container)
        return container

    yield make
    for container in containers:
        _kill(container)


@pytest.fixture
def runner_factory(config):
    """nameko's runner_factory, but killed before this test's vhost is deleted."""
    from nameko.runners import ServiceRunner

    runners = []

    def make(runner_config, *service_classes):
        runner = ServiceRunner(runner_config or config)
        for service_cls in service_classes:
            runner.add_service(service_cls)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        _kill(runner)


@pytest.fixture
def mongo_client(mongo_uri):
    import pymongo

    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    yield client
    client.close()


@pytest.fixture
def bus_tap(amqp_uri):
    """Every message a service publishes, read back from its events exchange.

    ``tap = bus_tap("residents")`` binds a queue now; ``tap.messages()`` drains
    it and returns the envelopes, in order; ``tap.messages(until=check)`` drains
    until ``check(envelopes)`` holds instead of waiting ``wait_s``.
    """
    from kombu import Connection, Exchange, Queue

    connection = Connection(amqp_uri)

    class Tap:
        def __init__(self, service):
            exchange = Exchange(f"{service}.events", type="topic", durable=True)
            self.queue = Queue(f"test-tap-{service}", exchange=exchange, routing_key="#", auto_delete=False)
            self.queue(connection.default_channel).declare()

        def messages(self, wait_s=0.5, until=None):
            import eventlet

            from tests.waiting import until as wait_until

            if until is None:
                eventlet.sleep(wait_s)  # let in-flight publishes land
                return self.drain()
            found = []
            return wait_until(lambda: until(found.extend(self.drain()) or found) and found, "the tapped messages")

        def drain(self):
            import json

            bound = self.queue(connection.default_channel)
            found = []
            while (message := bound.get(no_ack=True)) is not None:
                found.append(json.loads(message.body))
            return found

    yield Tap
    connection.release()
