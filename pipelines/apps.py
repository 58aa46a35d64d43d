from django.apps import AppConfig


class PipelinesConfig(AppConfig):
    name = "pipelines"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the Celery tasks in every process (not only in workers), so a service
        # enqueues them by name and tests run them eagerly.
        from pipelines import tasks  # noqa: F401

        # Imported once the apps are ready: Django loads the models they import first.
        from pipelines.run_submit import single_step_submit
        from runs.services.submit import single_step_submit_register

        single_step_submit_register(single_step_submit)
