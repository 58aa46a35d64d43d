from django.apps import AppConfig


class SweepsConfig(AppConfig):
    name = "sweeps"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the Celery tasks in every process (not only in workers), so a service
        # enqueues them by name and tests run them eagerly.
        from sweeps import tasks  # noqa: F401
