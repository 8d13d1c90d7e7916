"""A nameko timer whose interval comes from the service's config, not from the code."""
from nameko.timer import Timer


class ConfiguredTimer(Timer):
    """``@configured_timer("FEED_POLL_SECONDS", default=2)``: fires every that many seconds."""

    def __init__(self, config_key: str, default: float, **kwargs):
        self.config_key = config_key
        self.default = default
        super().__init__(interval=default, **kwargs)

    def setup(self):
        self.interval = float(self.container.config.get(self.config_key) or self.default)
        super().setup()


configured_timer = ConfiguredTimer.decorator
