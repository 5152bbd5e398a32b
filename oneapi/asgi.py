"""ASGI entry point for Daphne (or uvicorn).

Relay paths (`/v1/...` and their bare twins) go to the relay's own async layer; everything
else to Django. Importing this module is what makes a process a server: it starts the relay
runtime (usage journal, write-back and cache-event threads).
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oneapi.settings")

django_application = get_asgi_application()

# These need Django set up first.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from dashboard.routing import websocket_urlpatterns  # noqa: E402
from relay import runtime  # noqa: E402
from relay.http import RelayApp  # noqa: E402
from relay.routes import error_shape, is_relay_path, resolve  # noqa: E402

relay_application = RelayApp(resolve, error_shape)


async def http_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if is_relay_path(scope["path"]):
        await relay_application(scope, receive, send)
    else:
        await django_application(scope, receive, send)


runtime.start()

application = ProtocolTypeRouter(
    {
        "http": http_application,
        # The console's live views; signed in by the session cookie, same-origin pages only.
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
