"""``api(..., request_schema=X, body="the thing")``: the body's schema named once, loaded by the entrypoint
(and the same for ``query_schema`` / ``query``); no broker, the worker runs in the test's thread."""
import json

import pytest
from marshmallow import Schema, fields, validate
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from services.common.auth import Forbidden, issue_token
from services.common.web import ApiEndpoint, api

SECRET = "a-test-secret-of-at-least-32-bytes-long"


class Greeting(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=10))


class Page(Schema):
    size = fields.Integer(load_default=10)
    tags = fields.List(fields.String())


class Greeter:
    name = "greeter"

    @api("POST", "/greetings", request_schema=Greeting, body="the greeting")
    def greet(self, request):
        return 201, {"hello": request.body["name"]}

    @api("POST", "/rooms/<room>/greetings", scope="greet", request_schema=Greeting, body="the greeting")
    def greet_in(self, request, room):
        """Checks access first, then reads the body: a 403 comes before a 400, as the route orders them."""
        if room != "open":
            raise Forbidden(f"room {room} is closed")
        return {"hello": request.body["name"], "room": room}

    @api("GET", "/greetings", query_schema=Page, query="the listing")
    def listing(self, request):
        return request.query

    @api("POST", "/described", request_schema=Greeting)
    def described(self, request):
        return {"read": json.loads(request.get_data())}


class _Container:
    """Just enough of nameko's container: config, the service class, a worker run at once."""

    service_name = "greeter"
    service_cls = Greeter
    config = {"JWT_SECRET": SECRET}

    def __init__(self):
        self.shared_extensions = {}

    def spawn_worker(self, entrypoint, args, kwargs, context_data, handle_result):
        try:
            result, exc_info = getattr(Greeter(), entrypoint.method_name)(*args, **kwargs), None
        except Exception as exc:  # noqa: BLE001 - handed on, as nameko does
            result, exc_info = None, (type(exc), exc, exc.__traceback__)
        handle_result(None, result, exc_info)


CONTAINER = _Container()  # nameko keeps only a weak reference to it


def endpoint(method_name: str) -> ApiEndpoint:
    (found,) = getattr(Greeter, method_name).nameko_entrypoints
    return found.bind(CONTAINER, method_name)


def call(method_name, path, *, body=None, raw=None, query=None, headers=None, path_values=None):
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    environ = EnvironBuilder(path=path, method=endpoint(method_name).method, data=data, query_string=query,
                             headers=headers or {}).get_environ()
    request = Request(environ, shallow=True)
    request.path_values = path_values or {}
    response = endpoint(method_name).handle_request(request)
    return response.status_code, json.loads(response.get_data())


def test_the_route_gets_the_body_loaded_through_the_schema_it_names_once():
    assert call("greet", "/greetings", body={"name": "Marie"}) == (201, {"hello": "Marie"})


def test_a_bad_body_is_the_400_load_gives_naming_the_body_and_every_field():
    status, answer = call("greet", "/greetings", body={"name": ""})
    assert status == 400
    assert answer == {"error": "validation_failed", "message": "the greeting is not valid",
                      "details": {"fields": {"name": ["Length must be between 1 and 10."]}}}
    assert call("greet", "/greetings", raw="{not json")[1]["error"] == "invalid_json"
    assert call("greet", "/greetings", raw="[1]")[1]["message"] == "the body must be a JSON object"
    assert call("greet", "/greetings", raw='{"name": "\\ud800"}')[1]["error"] == "invalid_text"


def test_a_route_that_checks_access_first_answers_its_403_before_the_body_is_read():
    token = issue_token(SECRET, subject="someone", scopes=["greet"], communities=["*"])
    headers = {"Authorization": f"Bearer {token}"}
    closed = call("greet_in", "/rooms/shut/greetings", body={"name": ""}, headers=headers,
                  path_values={"room": "shut"})
    assert closed[0] == 403
    bad = call("greet_in", "/rooms/open/greetings", body={"name": ""}, headers=headers, path_values={"room": "open"})
    assert bad == (400, {"error": "validation_failed", "message": "the greeting is not valid",
                         "details": {"fields": {"name": ["Length must be between 1 and 10."]}}})


def test_the_query_string_is_loaded_as_load_query_does_lists_included():
    assert call("listing", "/greetings", query="size=3&tags=a&tags=b") == (200, {"size": 3, "tags": ["a", "b"]})
    status, answer = call("listing", "/greetings", query="size=many")
    assert status == 400 and answer["message"] == "the listing is not valid"
    assert answer["details"]["fields"] == {"size": ["Not a valid integer."]}


def test_a_schema_without_a_noun_only_describes_the_route():
    assert call("described", "/described", body={"name": ""}) == (200, {"read": {"name": ""}})


def test_a_noun_needs_a_schema_class_to_load_with():
    with pytest.raises(TypeError, match="request_schema class"):
        ApiEndpoint("POST", "/x", request_schema={"text/csv": {}}, body="the upload")
    with pytest.raises(TypeError, match="query_schema class"):
        ApiEndpoint("GET", "/x", query="the listing")
