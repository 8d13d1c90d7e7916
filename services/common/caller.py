"""Who called: the ``service.method`` of the entrypoint whose call led here, for audit logs."""
from nameko.extensions import DependencyProvider


class Caller(DependencyProvider):
    def get_dependency(self, worker_ctx):
        parent = worker_ctx.immediate_parent_call_id  # "service.method.<uuid>", or None
        return parent.rsplit(".", 1)[0] if parent else "direct"
