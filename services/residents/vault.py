"""The residents service's privacy dependency: a ``Vault`` made from config in ``setup()``."""
from nameko.extensions import DependencyProvider

from services.residents.privacy import Vault


class ResidentsVault(DependencyProvider):
    def setup(self):
        self.vault = Vault(self.container.config.get("RESIDENTS_DATA_KEY", ""))

    def get_dependency(self, worker_ctx):
        return self.vault
