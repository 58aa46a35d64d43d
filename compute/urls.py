from django.urls import path

from compute import views

urlpatterns = [
    path("", views.compute_list, name="compute_list"),
    path("<str:name>/", views.compute_detail, name="compute_detail"),
]
