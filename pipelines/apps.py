from django.apps import AppConfig


class PipelinesConfig(AppConfig):
    name = "pipelines"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported once the apps are ready: Django loads the models they import first.
        from pipelines.run_submit import single_step_submit
        from runs.services.submit import single_step_submit_register

        single_step_submit_register(single_step_submit)
