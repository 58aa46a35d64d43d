import os
from typing import Any
from urllib.parse import urlparse

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator, WebsocketDenier  # noqa: E402
from django.conf import settings  # noqa: E402

from studio.routing import websocket_urlpatterns  # noqa: E402


class LayerlessDenier(WebsocketDenier):
    """Refuses a websocket waiting on nothing but its client: channels' own denier opens a
    channel-layer receive (a blocking Redis read) for every refused connection, which
    a flood of refused connections would multiply."""

    channel_layer_alias = "refused connections use no channel layer"


class SameHostOriginValidator(OriginValidator):
    """channels' AllowedHostsOriginValidator, refusing with LayerlessDenier."""

    def __init__(self, application: Any) -> None:
        super().__init__(application, settings.ALLOWED_HOSTS)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        origin = next((v for k, v in scope.get("headers", []) if k == b"origin"), None)
        parsed = urlparse(origin.decode("latin1")) if origin is not None else None
        if self.valid_origin(parsed):
            return await self.application(scope, receive, send)
        return await LayerlessDenier()(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SameHostOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
