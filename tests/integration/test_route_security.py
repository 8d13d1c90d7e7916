"""Every HTTP route of every service, found by introspection, walked with bad credentials (issue #8).

The routes come from the service classes themselves (each ``ApiEndpoint`` of
every entrypoint, mixins included), so a new route is walked without anyone
adding it here. A route without a scope must be named in ``PUBLIC`` with the
reason; a route that needs more than an empty JSON body to reach its
community check gets its request in ``requests_for``.
"""
import inspect
import json
import re
import time
import uuid
from datetime import datetime, timedelta, timezone

import jwt
import pytest
import requests

from platform_tools.contract_docs import service_classes
from services.common.web import MAX_BODY_BYTES, ApiEndpoint
from services.partners import feed_store
from services.notifications.service import UNSUBSCRIBE_AUDIENCE
from tests.data.sample_form import form_csv

pytestmark = pytest.mark.integration
SERVICES = service_classes()  # every service the platform discovers
OTHER_SCOPES = {"residents:pii", "feeds:read", "ingest:write"}  # scopes no route requires by itself alone
HOME, OTHER = "tongzilin", "yulin"
# Path parameters whose value belongs to a community: the route must refuse another community's token.
# The walk uses ids that exist, so every such route must answer 403. A 404 would be acceptable only where
# the route cannot know the community without revealing existence: an unknown resident, event or import id,
# and notifications' /residents/<resident_id>/... before notifications has heard of the resident (the
# fixture waits for the welcome, so the walk does not rely on that).
COMMUNITY_PARAMS = {"community_id", "resident_id", "event_id", "household_id", "import_id", "partner_id", "case_id"}
# Routes that act on every community at once: a token of one community must get a 403.
CITY_WIDE = {("POST", "/projections/rebuild")}

PUBLIC = {  # (method, url) -> (how the caller is checked, why no scope)
    ("GET", "/health"): ("none", "a liveness probe; says only that the service is up"),
    ("GET", "/ready"): ("none", "a readiness probe; names what is not ready (broker, database, consumers), no data"),
    ("GET", "/metrics"): ("none", "Prometheus scrape; counters by service and type, no personal data"),
    ("GET", "/openapi.json"): ("none", "the API's description, generated from the code; no data"),
    ("POST", "/unsubscribe"): ("query", "RFC 8058 one-click link: the signed token in ?token= is the authority"),
    ("GET", "/feeds/<partner_id>"): ("bearer", "checks its own bearer token: feeds:read for its partner, or admin"),
}


def discover_routes():
    """(service, method, url, scope) of every ``ApiEndpoint`` on every service class."""
    found = set()
    for service, cls in SERVICES.items():
        for _, function in inspect.getmembers(cls, inspect.isfunction):
            for entrypoint in getattr(function, "nameko_entrypoints", ()):
                if isinstance(entrypoint, ApiEndpoint):
                    found.add((service, entrypoint.method, entrypoint.url, entrypoint.scope))
    return sorted(found, key=lambda r: (r[0], r[2], r[1]))


ROUTES = discover_routes()
ALL_SCOPES = {scope for *_, scope in ROUTES if scope} | OTHER_SCOPES


def fill(url, values):
    """The URL with every ``<param>`` replaced; a parameter without a value here fails the test loudly."""
    def value(match):
        name = match.group(1)
        assert name in values, f"{url}: give the path parameter <{name}> a plausible value in path_values()"
        return values[name]

    return re.sub(r"<(?:\w+:)?(\w+)>", value, url)


def path_values(ids):
    return {"community_id": HOME, "resident_id": ids["resident"], "event_id": ids["event"],
            "household_id": ids["household"], "import_id": ids["import"], "notification_id": "0" * 24,
            "partner_id": "security-walk", "subscription_id": ids["subscription"], "delivery_id": "0" * 24, "fmt": "csv", "month": "2026-11",
            "name": "population", "action": "schedule", "case_id": ids["case"], "type_code": "streetlight"}


def resident_body():
    return {"community_id": HOME, "name": "Walk Tester", "residence_type": "registered", "nationality": "CN",
            "household_id": "tongzilin-h-walk"}


def event_body():
    starts = datetime.now(timezone.utc) + timedelta(days=10)
    return {"community_id": HOME, "organiser": "foreign_resident_service_centre", "category": "food",
            "title": {"zh-CN": "安全巡检", "en": "Security walk"}, "venue": "桐梓林社区广场",
            "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=2)).isoformat(), "capacity": 5}


def case_body():
    return {"community_id": HOME, "type_code": "streetlight", "description": "路灯不亮", "language": "zh-CN",
            "grid_id": "tongzilin-g01", "attributes": {"fault": "not_lit"}}


def ingest_body():
    """An envelope as an outside system writes it (no Linli code builds it)."""
    return json.dumps({
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": "grid-system/tongzilin",
        "type": "resident.form_submitted", "time": datetime.now(timezone.utc).isoformat(),
        "dataschema": "urn:linli:contracts:resident.form_submitted:v1", "datacontenttype": "application/json",
        "community": HOME, "data": {"community_id": HOME, "form_reference": "grid:walk",
                                    "row": {"姓名": "巡检居民", "性别": "女", "居住类型": "户籍", "国籍": "CN"}}})


def requests_for(method, url, ids):
    """What a route needs besides the URL to get past validation to its community check (default: ``{}``)."""
    resident = {"resident_id": ids["resident"]}
    special = {
        ("POST", "/residents"): {"json": resident_body()},
        ("GET", "/residents"): {"params": {"community_id": HOME}},
        # The form the fixture imported: a repeat must not bypass the community check.
        ("POST", "/residents/imports"): {"data": form_csv(1, seed=7), "params": {"filename": "form.csv"}},
        ("POST", "/residents/<resident_id>/departure"): {"json": {"reason": "moved_away"}},
        ("POST", "/residents/<resident_id>/move"): {"json": {"community_id": HOME}},
        ("POST", "/events"): {"json": event_body()},
        ("GET", "/events"): {"params": {"community_id": HOME}},
        ("POST", "/events/<event_id>/registrations"): {"json": resident},
        ("POST", "/events/<event_id>/check-ins"): {"json": resident},
        ("POST", "/events/<event_id>/feedback"): {"json": {**resident, "rating": 5}},
        ("POST", "/cases"): {"json": case_body()},
        ("POST", "/ingest"): {"data": ingest_body(), "headers": {"Content-Type": "application/json"}},
    }
    return special.get((method, url), {"json": {}})


def names_a_community(url, extra):
    """A community in the path, or the home community named in the body or query."""
    if set(re.findall(r"<(?:\w+:)?(\w+)>", url)) & COMMUNITY_PARAMS:
        return True
    payload = json.dumps(extra.get("json")) + str(extra.get("params")) + str(extra.get("data"))
    return HOME in payload


def test_every_route_without_a_scope_is_known_public_or_self_authenticating():
    scopeless = {(method, url) for _, method, url, scope in ROUTES if scope is None}
    assert scopeless == set(PUBLIC), (
        f"new scope-less routes {sorted(scopeless - set(PUBLIC))}: give them a scope or list them in PUBLIC "
        f"with the reason; stale PUBLIC entries {sorted(set(PUBLIC) - scopeless)}")
    assert len(ROUTES) > 40  # the introspection found the mixins' routes too


@pytest.fixture
def platform(container_factory, config, free_port, token, mongo_client):
    bases = {}
    for name, cls in SERVICES.items():
        address = f"127.0.0.1:{free_port()}"
        container_factory(cls, {**config, "WEB_SERVER_ADDRESS": address}).start()
        bases[name] = f"http://{address}"
    admin = {"Authorization": f"Bearer {token(ALL_SCOPES, communities=['*'])}"}
    created = requests.post(bases["residents"] + "/residents", json=resident_body(), headers=admin)
    [event_id] = requests.post(bases["events"] + "/events", json=event_body(), headers=admin).json()["ids"]
    imported = requests.post(bases["residents"] + "/residents/imports", data=form_csv(1, seed=7),
                             params={"filename": "form.csv"}, headers=admin)
    case = requests.post(bases["cases"] + "/cases", json=case_body(), headers=admin)
    assert (created.status_code, imported.status_code, case.status_code) == (201, 202, 201), \
        created.text + imported.text + case.text
    # A partner of the home community, written straight to the database (no broker user to clean up).
    partners_db = mongo_client[config["MONGO_DB_PREFIX"] + "partners"]
    feed_store.insert_partner(partners_db, {"_id": "security-walk", "name": "walk", "scopes": {
        "types": ["event.scheduled"], "communities": [HOME], "personal_fields": [], "personal_residence_types": []}})
    subscription = feed_store.insert_subscription(partners_db, {
        "partner_id": "security-walk", "types": ["event.scheduled"], "communities": [HOME], "method": "pull",
        "url": None, "secret": None})
    ids = {"resident": created.json()["id"], "event": event_id, "import": imported.json()["id"],
           "household": "tongzilin-h-walk", "subscription": subscription["_id"], "case": case.json()["id"]}
    # notifications learns the resident's community from resident.registered; until then it cannot tell.
    inbox = f"{bases['notifications']}/residents/{ids['resident']}/inbox"
    deadline = time.monotonic() + 30
    while not requests.get(inbox, headers=admin).json().get("items"):
        assert time.monotonic() < deadline, "notifications never welcomed the walk's resident"
        time.sleep(0.2)
    return bases, ids, admin


def test_every_route_refuses_missing_bad_expired_unscoped_and_foreign_tokens(platform, token):
    bases, ids, admin = platform
    values, failures, walked = path_values(ids), [], 0

    def expect(route, label, wanted, response):
        if response.status_code not in wanted or response.status_code >= 500:
            failures.append(f"{route[1]} {route[2]} ({route[0]}) {label}: wanted {sorted(wanted)}, "
                            f"got {response.status_code} {response.text[:160]}")

    def bearer(value):
        return {"Authorization": f"Bearer {value}"}

    for route in ROUTES:
        service, method, url, scope = route
        address, extra = bases[service] + fill(url, values), requests_for(method, url, ids)

        def send(headers=None, **overrides):
            kwargs = {**extra, **overrides}
            return requests.request(method, address, headers={**kwargs.pop("headers", {}), **(headers or {})},
                                    timeout=30, **kwargs)

        walked += 1
        expired = token(ALL_SCOPES, communities=["*"], ttl=timedelta(seconds=-5))
        style = PUBLIC.get((method, url), ("bearer",))[0] if scope is None else "bearer"
        if style == "none":
            expect(route, "public, no token", {200}, send())
            continue
        if style == "query":  # the API's bearer tokens are no unsubscribe links (they lack the audience)
            forged = jwt.encode({"sub": ids["resident"], "category": "events", "channel": "email",
                                 "aud": UNSUBSCRIBE_AUDIENCE}, "another-secret", algorithm="HS256")
            for label, value in (("no token", ""), ("garbage", "nonsense"), ("an expired API token", expired),
                                 ("an API token", token(ALL_SCOPES, communities=["*"])), ("forged", forged)):
                expect(route, f"?token= {label}", {401}, send(params={"token": value}))
            continue
        expect(route, "no token", {401}, send())
        expect(route, "garbage token", {401}, send(bearer("nonsense.not.a-jwt")))
        expect(route, "expired token", {401}, send(bearer(expired)))
        if scope is None:
            expect(route, "no feeds:read scope", {403}, send(bearer(token(ALL_SCOPES - {"feeds:read",
                                                                                       "partners:admin"}))))
            expect(route, f"admin of only {OTHER}", {403}, send(bearer(token(["partners:admin"], [OTHER]))))
            continue
        unscoped = send(bearer(token(ALL_SCOPES - {scope}, communities=["*"])))
        expect(route, "every scope but its own", {403}, unscoped)
        if unscoped.status_code == 403 and scope not in unscoped.json()["message"]:
            failures.append(f"{method} {url}: the 403 does not name the missing scope {scope}")
        if names_a_community(url, extra):
            expect(route, f"only community {OTHER}", {403}, send(bearer(token([scope], communities=[OTHER]))))
        if (method, url) in CITY_WIDE:
            expect(route, f"only community {HOME}", {403}, send(bearer(token([scope], communities=[HOME]))))
    assert walked == len(ROUTES) and not failures, "\n".join(failures)


def test_no_route_answers_500_to_its_own_scope_or_an_oversized_body(platform):
    """With every scope and every community: any answer but a 5xx; a body over the limit is a 413."""
    bases, ids, admin = platform
    values, failures = path_values(ids), []
    oversized = b"x" * (MAX_BODY_BYTES + 1024)
    for service, method, url, scope in ROUTES:
        address, extra = bases[service] + fill(url, values), requests_for(method, url, ids)
        if method in ("POST", "PUT", "PATCH"):
            big = requests.request(method, address, data=oversized, timeout=60,
                                   headers={**admin, "Content-Type": "application/json"})
            if big.status_code != 413:
                failures.append(f"{method} {url}: a body over the limit got {big.status_code}, not 413")
        answer = requests.request(method, address, timeout=60, **{**extra, "headers": {
            **extra.get("headers", {}), **admin}})
        if answer.status_code >= 500:
            failures.append(f"{method} {url}: {answer.status_code} {answer.text[:160]}")
    assert not failures, "\n".join(failures)
