from django.apps import AppConfig
from django.conf import settings


class ComputeConfig(AppConfig):
    name = "compute"
    verbose_name = "Compute"

    def ready(self) -> None:
        # Django loads an app's modules only once every app's models are: the signal
        # receivers and the SSH layer (which reads the user model) import models.
        import compute.signals  # noqa: F401
        from compute import ssh

        ssh.pool.idle_seconds = float(settings.COMPUTE_SSH_IDLE_SECONDS)

        # Registers the Celery tasks in every process (not only in workers), so a service
        # enqueues them by name and tests run them eagerly.
        from compute import tasks  # noqa: F401
