from django.urls import path

from runs import log_views, views

urlpatterns = [
    path("experiments/", views.experiment_list, name="experiment_list"),
    path("runs/", views.run_list, name="run_list"),
    path("environments/", views.environment_list, name="environment_list"),
    path("runs/<int:run_id>/logs/", log_views.run_logs, name="run_logs"),
    path(
        "runs/<int:run_id>/logs/<str:stream>/download/",
        log_views.run_log_download,
        name="run_log_download",
    ),
]
