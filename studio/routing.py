from django.urls import path

from compute.consumers import TerminalConsumer
from runs.logs.consumer import RunLogConsumer
from runs.terminal import RunTerminalConsumer

websocket_urlpatterns: list = [
    path("ws/runs/<int:run_id>/logs/", RunLogConsumer.as_asgi()),
    path("ws/w/<slug:slug>/compute/<str:name>/terminal/", TerminalConsumer.as_asgi()),
    path("ws/w/<slug:slug>/runs/<int:run_id>/terminal/", RunTerminalConsumer.as_asgi()),
]
