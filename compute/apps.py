from django.apps import AppConfig


class ComputeConfig(AppConfig):
    name = "compute"
    verbose_name = "Compute"

    def ready(self) -> None:
        from django.conf import settings

        import compute.signals  # noqa: F401 - connects its receivers (once models are loaded)
        from compute import ssh

        ssh.pool.idle_seconds = float(settings.COMPUTE_SSH_IDLE_SECONDS)
