from django.urls import path

from runs.consumers import RunLogConsumer

websocket_urlpatterns: list = [
    path("ws/runs/<int:run_id>/logs/", RunLogConsumer.as_asgi()),
]
