"""HTTP through Django, websockets through Channels; both authenticate the same bearer token."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")
# A thread per request here: database connections come from a pool (see DATABASE_POOL in mlops/settings.py).
os.environ.setdefault("DATABASE_POOL", "1")
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up first)

from jobs.routing import websocket_urlpatterns  # noqa: E402
from tenancy.websocket_auth import TokenAuthMiddleware  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_application,
    "websocket": TokenAuthMiddleware(URLRouter(websocket_urlpatterns)),
})
