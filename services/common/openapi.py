"""An OpenAPI 3 document of a service's HTTP API, read from its ``api`` entrypoints (issue #8).

Every ``ApiEndpoint`` of the service class (mixins included) becomes an
operation: its path parameters, its request body from the marshmallow schema
it names with ``request_schema=`` (or an OpenAPI ``content`` mapping for a
body that is not JSON), its query string from ``query_schema=``, bearer
security with the scope it needs, and the error shape of every 4xx/5xx.
Served at ``GET /openapi.json`` by ``ServiceBase``; schemathesis reads it.
"""
from __future__ import annotations

import inspect
import re
from functools import lru_cache

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from services.common.web import ApiEndpoint

OPENAPI_VERSION = "3.0.3"
API_VERSION = "1.0.0"
PATH_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")
ERROR = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message", "details"],
    "properties": {
        "error": {"type": "string", "description": "a machine-readable code, e.g. validation_failed"},
        "message": {"type": "string", "description": "what is wrong, for a person"},
        "details": {"type": "object", "description": "e.g. {\"fields\": {name: [rules broken]}}"},
    },
}
ERROR_STATUSES = {
    "400": "the request is not valid (the body, a field or a query parameter)",
    "401": "no bearer token, or one that is not valid or has expired",
    "403": "the token lacks the scope, or does not cover the community",
    "404": "no such resource (or action, format, chart)",
    "409": "the request conflicts with the resource's state",
    "413": "the body is over the size limit",
    "415": "the body's content type is not accepted",
    "422": "a domain rule refuses the request",
    "503": "the database cannot be reached; try again shortly",
}
FILE_TYPES = {  # what a route answers by the end of its URL, when it is not JSON
    ".png": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    ".html": {"text/html": {"schema": {"type": "string"}}},
    ".<fmt>": {"text/csv": {"schema": {"type": "string"}},
               "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
                   {"schema": {"type": "string", "format": "binary"}}},
    "/metrics": {"text/plain": {"schema": {"type": "string"}}},
}


def endpoints(service_cls) -> list[tuple[str, ApiEndpoint]]:
    """``(method name, ApiEndpoint)`` of every HTTP entrypoint of a service class, in URL order."""
    found = []
    for name, function in inspect.getmembers(service_cls, inspect.isfunction):
        found += [(name, e) for e in getattr(function, "nameko_entrypoints", ()) if isinstance(e, ApiEndpoint)]
    return sorted(found, key=lambda pair: (pair[1].url, pair[1].method))


def openapi_path(url: str) -> str:
    """A werkzeug rule (``/residents/<resident_id>``) as an OpenAPI path template."""
    return PATH_PARAMETER.sub(r"{\1}", url)


def _success_content(url: str) -> dict:
    for ending, content in FILE_TYPES.items():
        if url.endswith(ending):
            return content
    return {"application/json": {"schema": {"type": "object"}}}


def _operation(method_name: str, endpoint: ApiEndpoint, service: str) -> dict:
    # A path parameter is one URL segment: a "/" in it would be another route.
    parameters = [{"name": name, "in": "path", "required": True,
                   "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}}
                  for name in PATH_PARAMETER.findall(endpoint.url)]
    if endpoint.query_schema is not None:
        parameters.append({"in": "query", "schema": endpoint.query_schema})
    responses = {"2XX": {"description": "done", "content": _success_content(endpoint.url)}}
    responses.update({status: {"description": text, "content": {"application/json": {"schema": ERROR}}}
                      for status, text in ERROR_STATUSES.items()})
    operation = {
        "operationId": method_name, "tags": [service], "parameters": parameters, "responses": responses,
        "security": [{"bearer": []}] if endpoint.scope else [],
    }
    if endpoint.scope:
        operation["description"] = f"Needs a bearer token with the scope `{endpoint.scope}`."
        operation["x-linli-scope"] = endpoint.scope
    schema = endpoint.request_schema
    if isinstance(schema, dict):  # a body that is not JSON: its OpenAPI content mapping as given
        operation["requestBody"] = {"required": True, "content": schema}
    elif schema is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return operation


def document(service_cls) -> dict:
    """The OpenAPI document of one service class, as a plain dict."""
    spec = APISpec(title=f"Linli {service_cls.name}", version=API_VERSION, openapi_version=OPENAPI_VERSION,
                   plugins=[MarshmallowPlugin()])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    spec.components.schema("Error", ERROR_SCHEMA)
    paths: dict[str, dict] = {}
    for method_name, endpoint in endpoints(service_cls):
        operations = paths.setdefault(openapi_path(endpoint.url), {})
        operations[endpoint.method.lower()] = _operation(method_name, endpoint, service_cls.name)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


@lru_cache(maxsize=None)
def cached_document(service_cls) -> dict:
    return document(service_cls)
