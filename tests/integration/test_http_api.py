"""The skeleton's HTTP APIs in real containers: auth, validation, errors."""
import pytest
import requests
from nameko.testing.services import entrypoint_waiter

from services.notifications.service import NotificationsService
from services.reports.service import ReportsService
from services.residents.service import ResidentsService
from tests.conftest import free_port

pytestmark = pytest.mark.integration

MARIE = {
    "community_id": "tongzilin",
    "name": "Marie Dubois",
    "residence_type": "foreign",
    "nationality": "FR",
    "preferred_language": "en",
}


SKELETON = {"residents": ResidentsService, "notifications": NotificationsService, "reports": ReportsService}


@pytest.fixture
def platform(container_factory, config):
    """The skeleton's services, each in its own container on its own HTTP port."""
    return start_skeleton(container_factory, config)


def start_skeleton(container_factory, config):
    containers = {}
    for name, service_cls in SKELETON.items():
        containers[name] = container_factory(service_cls, {**config, "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}"})
        containers[name].start()
    return containers


class Urls:
    """Routes each path to the service that serves it, as a gateway would."""

    def __init__(self, containers):
        self.base = {name: f"http://{c.config['WEB_SERVER_ADDRESS']}" for name, c in containers.items()}

    def __add__(self, path):
        if path.startswith("/communities"):
            return self.base["reports"] + path
        if path.endswith("/inbox"):
            return self.base["notifications"] + path
        return self.base["residents"] + path

    def __format__(self, spec):
        return "<gateway>"


@pytest.fixture
def url(platform):
    return Urls(platform)


@pytest.fixture(scope="module")
def gateway(module_container_factory, module_config):
    """One skeleton for the tests whose requests are all refused: they change nothing."""
    return Urls(start_skeleton(module_container_factory, module_config))


@pytest.fixture
def writer(token):
    scopes = ["residents:read", "residents:write", "reports:read", "notifications:read"]
    return {"Authorization": f"Bearer {token(scopes)}"}


ROUTES = [
    ("POST", "/residents", "residents:write"),
    ("GET", "/residents/0123456789abcdef01234567", "residents:read"),
    ("GET", "/residents/0123456789abcdef01234567/inbox", "notifications:read"),
    ("GET", "/communities/tongzilin/summary", "reports:read"),
]


@pytest.mark.parametrize("method, path, scope", ROUTES)
def test_every_route_needs_a_token_with_its_scope(gateway, token, method, path, scope):
    assert requests.request(method, gateway + path, json=MARIE).status_code == 401
    response = requests.request(method, gateway + path, json=MARIE, headers={"Authorization": "Bearer nonsense"})
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    wrong_scope = {"Authorization": f"Bearer {token(['events:read'])}"}
    response = requests.request(method, gateway + path, json=MARIE, headers=wrong_scope)
    assert response.status_code == 403 and scope in response.json()["message"]


@pytest.mark.parametrize("path", ["/health", "/metrics"])
def test_health_and_metrics_need_no_token(gateway, path):
    for base in gateway.base.values():
        assert requests.get(base + path).status_code == 200


def test_another_communitys_token_is_forbidden(gateway, token):
    yulin = {"Authorization": f"Bearer {token(['residents:write', 'reports:read'], communities=['yulin'])}"}
    response = requests.post(gateway + "/residents", json=MARIE, headers=yulin)
    assert response.status_code == 403 and "tongzilin" in response.json()["message"]
    assert requests.get(gateway + "/communities/tongzilin/summary", headers=yulin).status_code == 403


def test_an_expired_token_is_refused(gateway, token):
    from datetime import timedelta

    expired = {"Authorization": f"Bearer {token(['residents:write'], ttl=timedelta(seconds=-5))}"}
    response = requests.post(gateway + "/residents", json=MARIE, headers=expired)
    assert response.status_code == 401 and "expired" in response.json()["message"]


def test_an_invalid_resident_gets_400_naming_each_bad_field(gateway, writer):
    body = {"community_id": "tongzilin", "residence_type": "tourist", "nationality": "XX", "preferred_language": "??"}
    response = requests.post(gateway + "/residents", json=body, headers=writer)
    assert response.status_code == 400
    error = response.json()
    assert error["error"] == "validation_failed"
    assert set(error["details"]["fields"]) == {"name", "residence_type", "nationality", "preferred_language"}


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", ""])
def test_a_body_that_is_not_a_json_object_gets_400(gateway, writer, body):
    response = requests.post(gateway + "/residents", data=body, headers=writer)
    assert response.status_code == 400 and response.json()["error"] == "invalid_json"


def test_a_body_over_the_limit_gets_413(gateway, writer):
    response = requests.post(gateway + "/residents", data=b"x" * (11 * 1024 * 1024), headers=writer)
    assert response.status_code == 413


def test_unknown_ids_get_404(gateway, writer, token):
    for path in ("/residents/0123456789abcdef01234567", "/residents/not-an-id"):
        response = requests.get(gateway + path, headers=writer)
        assert response.status_code == 404 and response.json()["error"] == "not_found"
    committee = {"Authorization": f"Bearer {token(['reports:read'], communities=['*'])}"}
    response = requests.get(gateway + "/communities/nowhere/summary", headers=committee)
    assert response.status_code == 404 and "nowhere" in response.json()["message"]


def test_a_registered_resident_is_counted_and_welcomed(platform, url, writer):
    with entrypoint_waiter(platform["reports"], "on_message", timeout=10), \
            entrypoint_waiter(platform["notifications"], "on_resident_registered", timeout=10):
        response = requests.post(url + "/residents", json=MARIE, headers=writer)
    assert response.status_code == 201
    resident_id = response.json()["id"]

    resident = requests.get(url + f"/residents/{resident_id}", headers=writer).json()
    assert resident["name"] == "Marie Dubois" and resident["nationality"] == "FR"

    summary = requests.get(url + "/communities/tongzilin/summary", headers=writer).json()
    assert (summary["community_id"], summary["residents_total"]) == ("tongzilin", 1)
    assert summary["residents_by_residence_type"] == {"foreign": 1} and summary["foreign_share"] == 1.0
    inbox = requests.get(url + f"/residents/{resident_id}/inbox", headers=writer).json()
    assert [(item["kind"], item["language"]) for item in inbox["items"]] == [("welcome", "en")]
    assert "Welcome" in inbox["items"][0]["title"]


def test_metrics_count_entrypoints_and_messages(platform, url, writer):
    with entrypoint_waiter(platform["reports"], "on_message", timeout=10):
        requests.post(url + "/residents", json=MARIE, headers=writer)
    text = requests.get(url.base["reports"] + "/metrics").text
    assert 'linli_messages_published_total{service="residents",type="resident.registered"}' in text
    assert 'linli_messages_consumed_total{outcome="processed",service="reports",type="resident.registered"}' in text
    assert 'linli_entrypoint_calls_total{entrypoint="register_over_http",outcome="success",service="residents"}' in text
    assert "linli_entrypoint_duration_seconds_bucket" in text
