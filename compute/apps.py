from django.apps import AppConfig
from django.conf import settings

from compute import ssh


class ComputeConfig(AppConfig):
    name = "compute"
    verbose_name = "Compute"

    def ready(self) -> None:
        ssh.pool.idle_seconds = float(settings.COMPUTE_SSH_IDLE_SECONDS)
