"""The pinned stack works together on Python 3.11 — each trap named in the
foundation issue, shown not to bite."""
import sys
from importlib.metadata import version

import eventlet.patcher
import pymongo
import pytest
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy

from services.common.mongo import Database, MongoDatabase

pytestmark = pytest.mark.integration


def test_python_and_pins():
    assert sys.version_info[:2] == (3, 11)
    assert version("nameko") == "2.14.1"
    assert version("eventlet").startswith("0.33.")
    assert int(version("werkzeug").split(".")[0]) < 3
    assert int(version("setuptools").split(".")[0]) < 81


def test_nameko_can_import_pkg_resources():
    import pkg_resources  # noqa: F401  (nameko's CLI does this)
    from nameko.cli import main  # noqa: F401


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_pymongo_talks_to_secantusdb_under_eventlet(mongo_uri, host):
    # pymongo >= 4.11 calls getaddrinfo(type=...), which eventlet 0.33's green
    # resolver rejects; this fails on such a pin, for an IP and for a name.
    assert eventlet.patcher.is_monkey_patched("socket")
    uri = mongo_uri.replace("127.0.0.1", host)
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        assert client.admin.command("ping")["ok"] == 1
        with client.start_session() as session:
            with session.start_transaction():
                client["linli_stack_check"]["t"].insert_one({"_id": 1}, session=session)
                session.abort_transaction()
        assert client["linli_stack_check"]["t"].count_documents({}) == 0
    finally:
        client.drop_database("linli_stack_check")
        client.close()


class Pinger:
    name = "pinger"
    db = MongoDatabase("pinger")

    @rpc
    def ping(self):
        assert isinstance(self.db, Database)
        self.db["pings"].insert_one({"ok": True})
        return self.db["pings"].count_documents({})


def test_the_mongo_provider_connects_in_setup_and_closes_in_stop(container_factory, config):
    container = container_factory(Pinger, config)
    provider = next(d for d in container.dependencies if isinstance(d, MongoDatabase))
    assert provider.client is None  # nothing is connected by construction
    container.start()
    client = provider.client
    assert client is not None and provider.database_name == config["MONGO_DB_PREFIX"] + "pinger"
    with ServiceRpcProxy("pinger", config) as pinger:
        assert pinger.ping() == 1
        assert pinger.ping() == 2
    container.stop()
    assert provider.client is None
    with pytest.raises(pymongo.errors.InvalidOperation):
        client.admin.command("ping")  # the container's client was closed
