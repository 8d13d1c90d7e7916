"""HTTP entrypoints: bearer-token auth, JSON bodies and specific JSON errors.

``api(method, url, scope=...)`` is nameko's ``http`` entrypoint plus:
the token is checked (401/403) before a worker is spawned, a handler returns
a dict (or ``(status, dict)``) that is sent as JSON, and an ``ApiError`` is
turned into ``{"error": code, "message": text, "details": {...}}``.
``api(..., request_schema=X, body="the partner")`` names the body's schema once: the route reads
``request.body``, the JSON body loaded through ``X`` (a 400 saying "the partner is not valid" and every
bad field, raised where the route first reads it, so a route that checks access first still does);
``query_schema=Q, query="the listing"`` does the same for ``request.query``.
Anything unexpected is a 500 whose body says nothing internal. Every response
carries ``X-Correlation-Id``: the caller's, or one made up for the request (see
``services.common.logs``), which the request's worker passes on.
"""
from __future__ import annotations

import json
import logging
import time
from functools import cached_property, partial

from eventlet.event import Event
from marshmallow import Schema, ValidationError, fields
from nameko.web.handlers import HttpRequestHandler
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from services.common.auth import AuthError, principal_from_header
from services.common.inputs import paths, unstorable_text
from services.common.logs import CORRELATION_HEADER, correlation_id_from, http_outcome, log_call
from services.common.correlation import CORRELATION_KEY

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 10 * 1024 * 1024


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: dict | None = None, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code


class ValidationFailed(ApiError):
    status = 400
    code = "validation_failed"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


def json_response(status: int, payload) -> Response:
    return Response(
        json.dumps(payload, ensure_ascii=False, default=str) + "\n",  # a shell prompt starts on its own line
        status=status,
        mimetype="application/json",
    )


def error_response(status: int, code: str, message: str, details: dict | None = None) -> Response:
    return json_response(status, {"error": code, "message": message, "details": details or {}})


def read_json(request) -> dict:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    try:  # strictly UTF-8 (RFC 8259): bytes that are not must not be stored as U+FFFD
        body = json.loads(request.get_data().decode("utf-8") or "null")
    except (ValueError, RecursionError) as exc:  # RecursionError: arrays or objects nested too deep
        # ValueError includes UnicodeDecodeError
        raise ApiError(f"the body is not valid UTF-8 JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError("the body must be a JSON object", code="invalid_json")
    if problems := unstorable_text(body):
        raise ApiError(f"not text: {', '.join(paths(problems))}"[:2000], {"fields": problems}, code="invalid_text")
    return body


def load(schema, data, what: str = "the request") -> dict:
    """``schema.load(data)``, or a 400 that names every bad field and its rule."""
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ValidationFailed(f"{what} is not valid", {"fields": exc.normalized_messages()}) from None


def load_query(schema, request, what: str = "the query") -> dict:
    """The query string through ``schema`` (a list field takes every value of its name, any other the
    first), or a 400 that names every bad parameter."""
    lists = {field.data_key or name for name, field in schema.load_fields.items() if isinstance(field, fields.List)}
    args = {key: request.args.getlist(key) if key in lists else value for key, value in request.args.items()}
    return load(schema, args, what)


class ApiRequest(Request):
    """The request a route is handed: ``body`` and ``query`` are loaded through the schemas its ``api``
    names, when the route first reads them (in the worker, so a 400 is logged and counted as the route's)."""

    api_endpoint: "ApiEndpoint"

    @cached_property
    def body(self) -> dict:
        endpoint = self.api_endpoint
        if endpoint.body is None:
            raise TypeError(f"{endpoint.method_name}: request.body needs api(..., request_schema=..., body=...)")
        return load(endpoint.request_schema(), read_json(self), endpoint.body)

    @cached_property
    def query(self) -> dict:
        endpoint = self.api_endpoint
        if endpoint.query is None:
            raise TypeError(f"{endpoint.method_name}: request.query needs api(..., query_schema=..., query=...)")
        return load_query(endpoint.query_schema(), self, endpoint.query)


class ApiEndpoint(HttpRequestHandler):
    def __init__(self, method, url, scope: str | None = None, *, request_schema=None, query_schema=None,
                 body: str | None = None, query: str | None = None, **kwargs):
        """``body`` / ``query``: what the loaded input is called in its 400 ("the partner"); given, the
        route reads ``request.body`` / ``request.query``. Without them the schemas only describe the route
        (services.common.openapi), e.g. a body that is not JSON or one another door loads."""
        for noun, schema, what in ((body, request_schema, "request_schema"), (query, query_schema, "query_schema")):
            if noun is not None and not (isinstance(schema, type) and issubclass(schema, Schema)):
                raise TypeError(f"api({method!r}, {url!r}): a {what} class is needed to load the input")
        self.scope = scope
        self.request_schema, self.query_schema = request_schema, query_schema
        self.body, self.query = body, query
        # The caller's mistakes are logged as warnings, not as our errors.
        kwargs.setdefault("expected_exceptions", (ApiError, AuthError, HTTPException))
        super().__init__(method, url, **kwargs)

    def setup(self):
        if self.scope is not None and not self.container.config.get("JWT_SECRET"):
            raise RuntimeError(
                f"{self.container.service_name}: JWT_SECRET is empty; set LINLI_JWT_SECRET"
            )
        super().setup()

    def handle_request(self, request):
        started = time.monotonic()
        correlation_id = correlation_id_from(request.headers.get(CORRELATION_HEADER))
        response, worker_ran = self._respond(request, correlation_id)
        if not worker_ran:  # refused before a worker was spawned: EntrypointLog never saw it
            service = self.container.service_name
            log_call(service=service, entrypoint=f"{service}.{self.method_name}", kind="http",
                     correlation_id=correlation_id, outcome=http_outcome(response.status_code),
                     duration_s=time.monotonic() - started, method=request.method, route=self.url,
                     status=response.status_code)
        response.headers[CORRELATION_HEADER] = correlation_id
        return response

    def _respond(self, request, correlation_id: str) -> tuple[Response, bool]:
        """The response, and whether a worker made it. nameko's ``handle_request`` with the correlation
        id in the worker's context data, whence RPC calls, envelopes and the outbox take it."""
        # nameko's WsgiApp makes a plain werkzeug Request; the route's is one that loads its inputs.
        request.__class__, request.api_endpoint = ApiRequest, self
        request.max_content_length = MAX_BODY_BYTES
        # max_content_length bites only when a handler reads the body; a route that
        # ignores its body must refuse an oversized one too.
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return error_response(413, "request_entity_too_large",
                                  f"the body is {request.content_length} bytes; the limit is {MAX_BODY_BYTES}"), False
        request.principal = None
        if self.scope is not None:
            try:
                secret = self.container.config["JWT_SECRET"]
                request.principal = principal_from_header(secret, request.headers.get("Authorization"))
                request.principal.require_scope(self.scope)
            except AuthError as exc:
                return error_response(exc.status, exc.code, str(exc)), False
        request.shallow = False
        try:
            args, kwargs = self.get_entrypoint_parameters(request)
            self.check_signature(args, kwargs)
            event = Event()
            self.container.spawn_worker(self, args, kwargs, context_data={CORRELATION_KEY: correlation_id},
                                        handle_result=partial(self.handle_result, event))
        except Exception as exc:  # noqa: BLE001 - a bad signature, a container being killed
            return self.response_from_exception(exc), False
        return event.wait(), True

    def handle_result(self, event, worker_ctx, result, exc_info):
        """The response is made in the worker, so that the worker's log line has its status."""
        try:
            if exc_info is None:
                response = self.response_from_result(result)
            else:
                response = self.response_from_exception(exc_info[1])
        except Exception as exc:  # noqa: BLE001 - e.g. a result that is not JSON
            response = self.response_from_exception(exc)
        event.send(response)
        return response, exc_info

    def response_from_result(self, result):
        if isinstance(result, Response):
            return result
        status, payload = result if isinstance(result, tuple) else (200, result)
        return json_response(status, payload)

    def response_from_exception(self, exc):
        if isinstance(exc, (ApiError, AuthError)):
            return error_response(exc.status, exc.code, str(exc), getattr(exc, "details", None))
        if isinstance(exc, HTTPException):  # e.g. 413 body too large, 400 bad form
            return error_response(exc.code or 400, exc.name.lower().replace(" ", "_"), exc.description)
        if isinstance(exc, (ServerSelectionTimeoutError, AutoReconnect)):
            return error_response(503, "database_unavailable", "the database cannot be reached; try again shortly")
        log.error("unhandled error in %s: %s", self.method_name, type(exc).__name__, exc_info=exc)
        return error_response(500, "internal_error", "an unexpected error occurred")


api = ApiEndpoint.decorator
