"""The key under which a worker carries its correlation id (nameko's context data), shared by the
HTTP and message entrypoints that set it and the outbox and logs that read it."""

CORRELATION_KEY = "correlation_id"
