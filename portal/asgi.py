import gc
import os
from importlib import import_module

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from portal.api_handler import ApiASGIHandler, is_api_scope  # noqa: E402
from portal.body_limit import BodyLimitMiddleware  # noqa: E402
from portal.channels_auth import BrowserOriginValidator, PrincipalMiddlewareStack  # noqa: E402
from portal.routing import websocket_urlpatterns  # noqa: E402
from portal.stream_handler import StreamASGIHandler, is_stream_scope  # noqa: E402

api_asgi_app = ApiASGIHandler()
stream_asgi_app = StreamASGIHandler()


async def http_app(scope: dict, receive, send) -> None:
    """/v1/ to the API's lean handler, the prediction event stream to its own (no thread
    per open stream), everything else to the site's."""
    if is_api_scope(scope):
        app = api_asgi_app
    elif is_stream_scope(scope):
        app = stream_asgi_app
    else:
        app = django_asgi_app
    await app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        # Outside Django: its handler reads the whole body before any middleware runs.
        "http": BodyLimitMiddleware(http_app),
        "websocket": BrowserOriginValidator(
            PrincipalMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

# The views and what they import load now, not on the first request.
import_module(settings.ROOT_URLCONF)
# Everything loaded so far (Django, the apps, the views, their libraries) lives as long as
# the process: out of the collector's reach, a full collection no longer walks it. With
# thousands of open streams a full collection over it paused every stream for a second.
gc.freeze()
# Young collections after every 50,000 new container objects instead of 700. Writing one
# event to 5000 open streams makes tens of thousands (a wake-up and a message per
# stream); at Django's default the collector ran dozens of times meanwhile and, every
# hundredth time, walked every open stream's objects: 10 to 50 ms of the event's delivery
# (bench/streams.py). Garbage in cycles waits longer for its collection, no more.
gc.set_threshold(50_000, *gc.get_threshold()[1:])
