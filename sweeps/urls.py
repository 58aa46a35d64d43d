from django.urls import path

from sweeps import views

urlpatterns = [
    path("", views.sweep_list, name="sweep_list"),
    path("submit/", views.sweep_submit, name="sweep_submit"),
    path("<int:run_id>/", views.sweep_detail, name="sweep_detail"),
    path("<int:run_id>/cancel/", views.sweep_cancel, name="sweep_cancel"),
]
