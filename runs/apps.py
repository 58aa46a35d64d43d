from pathlib import Path

from django.apps import AppConfig

from runs.logs import store


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Runs"

    def ready(self) -> None:
        # Django loads an app's modules once every app's models are. The signals module
        # connects the receivers; the tasks module registers the Celery tasks in every
        # process (not only in workers), so a service enqueues them by name and tests run
        # them eagerly.
        from runs import signals, tasks  # noqa: F401

    def backup_log_folder(self, run_id: int, into: Path) -> None:
        """How a backup (studio.backup, a layer below) copies a run's logs consistently."""
        store.folder_copy(run_id, into)
