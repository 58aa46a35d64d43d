from django.urls import path

from runs import views

urlpatterns = [
    path("experiments/", views.experiment_list, name="experiment_list"),
    path("runs/", views.run_list, name="run_list"),
    path("environments/", views.environment_list, name="environment_list"),
]
