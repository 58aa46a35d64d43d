from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from studio import views
from studio.api import api

handler400 = "studio.errors.bad_request"
handler500 = "studio.errors.server_error"

urlpatterns = [
    path("", views.root, name="root"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("workspaces/new/", views.workspace_new, name="workspace_new"),
    path("settings/tokens/", views.token_list, name="token_list"),
    path("settings/tokens/<int:token_id>/revoke/", views.token_revoke, name="token_revoke"),
    path("w/<slug:slug>/settings/", views.workspace_settings, name="workspace_settings"),
    path(
        "w/<slug:slug>/settings/members/<int:user_id>/",
        views.member_update,
        name="member_update",
    ),
    path("w/<slug:slug>/compute/", include("compute.urls")),
    path("w/<slug:slug>/pipelines/", include("pipelines.urls")),
    path("w/<slug:slug>/sweeps/", include("sweeps.urls")),
    path("w/<slug:slug>/", include("runs.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
]
