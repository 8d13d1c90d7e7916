"""What every Linli service has: request metrics, a log line per entrypoint call,
/health (the process answers), /ready (it can do its work) and /metrics."""
from werkzeug.wrappers import Response

from services.common.logs import EntrypointLog
from services.common.metrics import EntrypointMetrics, exposition
from services.common.openapi import cached_document
from services.common.readiness import Readiness
from services.common.web import api, error_response


class ServiceBase:
    """Mixin for service classes. Subclasses set ``name``."""

    name = None
    entrypoint_metrics = EntrypointMetrics()
    entrypoint_log = EntrypointLog()
    readiness = Readiness()

    @api("GET", "/health")
    def health(self, request):
        return {"status": "ok", "service": self.name}

    @api("GET", "/ready")
    def ready(self, request):
        """200 when the broker and database answer and this instance's consumers are attached;
        else 503 naming what is not ready. Cached for a second; no token needed."""
        ready, checks = self.readiness()
        if ready:
            return {"status": "ready", "service": self.name, "checks": checks}
        not_ready = sorted(name for name, state in checks.items() if state != "ok")
        return error_response(503, "not_ready", f"{self.name} is not ready: {', '.join(not_ready)}",
                              {"service": self.name, "not_ready": not_ready, "checks": checks})

    @api("GET", "/metrics")
    def metrics(self, request):
        body, content_type = exposition()
        return Response(body, status=200, content_type=content_type)

    @api("GET", "/openapi.json")
    def openapi(self, request):
        """This service's HTTP API as OpenAPI 3, generated from its entrypoints; no token needed."""
        return cached_document(type(self))
