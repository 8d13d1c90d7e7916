"""schemathesis against each running service's own ``/openapi.json`` (issue #8).

The document is generated from the code (``services.common.openapi``), so this
checks the code against its own description: requests that fit the schemas
(positive) and requests that break them (negative), with a token that has
every scope and every community. No answer may be a 5xx; every status must be
one the document lists, with its content type and (for JSON) its schema.
"""
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

from tests.integration.test_fuzz_http import platform  # noqa: F401 - the four services, a resident, an event

pytestmark = pytest.mark.integration
EXAMPLES = {"residents": 120, "events": 120, "notifications": 120, "reports": 100}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.parametrize("service", list(EXAMPLES))
def test_the_service_keeps_to_its_own_openapi_document(platform, service):  # noqa: F811
    urls, containers, session, ids = platform
    schema = schemathesis.openapi.from_url(f"{urls[service]}/openapi.json")
    strategy = st.one_of(schema.as_strategy(generation_mode=GenerationMode.POSITIVE),
                         schema.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    calls = []

    @settings(max_examples=EXAMPLES[service], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(case):
        response = case.call(base_url=urls[service], session=session, timeout=60)
        calls.append(response.status_code)
        case.validate_response(response, checks=CHECKS)  # a failure is shrunk and shown with a curl line

    run()
    print(f"\n{service}: {len(calls)} schemathesis calls, {sum(s >= 500 for s in calls)} 5xx")
    assert len(calls) >= EXAMPLES[service] // 2
    assert session.get(urls[service] + "/health", timeout=10).status_code == 200
