from django.urls import path

from runs import home, views
from runs.logs import views as log_views

urlpatterns = [
    path("", home.home, name="home"),
    path("experiments/", views.experiment_list, name="experiment_list"),
    path("runs/", views.run_list, name="run_list"),
    path("experiments/<str:name>/", views.experiment_detail, name="experiment_detail"),
    path("runs/submit/", views.run_submit, name="run_submit"),
    path("runs/submit/plan/", views.snapshot_plan, name="snapshot_plan"),
    path("runs/<int:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<int:run_id>/status/", views.run_status, name="run_status"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run_cancel"),
    path("runs/<int:run_id>/terminal/", views.run_terminal, name="run_terminal"),
    path("runs/<int:run_id>/files/<path:path>", views.run_file_download, name="run_file"),
    path("runs/<int:run_id>/snapshot.zip", views.run_snapshot_zip, name="run_snapshot_zip"),
    path(
        "runs/<int:run_id>/snapshot/<path:path>", views.run_snapshot_file, name="run_snapshot_file"
    ),
    path("environments/", views.environment_list, name="environment_list"),
    path("environments/new/", views.environment_create, name="environment_create"),
    path("runs/<int:run_id>/logs/", log_views.run_logs, name="run_logs"),
    path(
        "runs/<int:run_id>/logs/<str:stream>/download/",
        log_views.run_log_download,
        name="run_log_download",
    ),
]
