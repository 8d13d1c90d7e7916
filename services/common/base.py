"""What every Linli service has: request metrics, /health and /metrics."""
from werkzeug.wrappers import Response

from services.common.metrics import EntrypointMetrics, exposition
from services.common.web import api


class ServiceBase:
    """Mixin for service classes. Subclasses set ``name``."""

    name = None
    entrypoint_metrics = EntrypointMetrics()

    @api("GET", "/health")
    def health(self, request):
        return {"status": "ok", "service": self.name}

    @api("GET", "/metrics")
    def metrics(self, request):
        body, content_type = exposition()
        return Response(body, status=200, content_type=content_type)
