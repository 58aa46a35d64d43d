from django.urls import path

from pipelines import views

urlpatterns = [
    path("", views.pipeline_list, name="pipeline_list"),
    path("submit/", views.pipeline_submit, name="pipeline_submit"),
    path("<int:run_id>/", views.pipeline_detail, name="pipeline_detail"),
    path("<int:run_id>/cancel/", views.pipeline_cancel, name="pipeline_cancel"),
]
