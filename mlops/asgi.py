"""HTTP through Django, websockets through Channels; both authenticate the same bearer token."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops.settings")
# A thread per request here: database connections come from a pool (see DATABASE_POOL in mlops/settings.py).
os.environ.setdefault("DATABASE_POOL", "1")
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up first)
from django.urls import get_resolver  # noqa: E402

from jobs.routing import websocket_urlpatterns  # noqa: E402
from mlops.metrics_server import serve_web_in_process  # noqa: E402
from mlops.statements import CancelStatementsOnDisconnect  # noqa: E402
from mlops.uploads import body_size_limited  # noqa: E402
from tenancy.websocket_auth import TokenAuthMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": body_size_limited(CancelStatementsOnDisconnect(django_application)),
        "websocket": TokenAuthMiddleware(URLRouter(websocket_urlpatterns)),
    }
)
serve_web_in_process()

# What is loaded by now lives as long as the process: every view and what it imports (the URLconf, loaded here rather
# than on the first request), then gc.freeze() moves it out of the collector's way, so full collections no longer
# stall requests walking it (measured: docs/design/search-postgres.md, "Measured figures behind code choices").
get_resolver().url_patterns
gc.freeze()
