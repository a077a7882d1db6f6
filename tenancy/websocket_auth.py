"""Websockets authenticate with the same bearer token as HTTP: `?token=` or the `bearer, <token>` subprotocol."""

from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings

from mlops.exceptions import ApplicationError, NotAuthenticated, TooManyRequests
from mlops.slots import slot_acquire, slot_release
from tenancy.authentication import authenticate_bearer_token

BEARER_SUBPROTOCOL = "bearer"
# Close codes in the application range, mirroring HTTP 401 / 403 / 404 / 429 / 503. 4429: the user has
# WEBSOCKET_MAX_CONNECTIONS_PER_USER sockets open already.
CLOSE_CODES = {401: 4401, 403: 4403, 404: 4404, 429: 4429, 503: 4503}


def _token_from_scope(scope) -> str:
    query = parse_qs(scope.get("query_string", b"").decode())
    if query.get("token"):
        return query["token"][0]
    protocols = scope.get("subprotocols") or []
    if len(protocols) == 2 and protocols[0] == BEARER_SUBPROTOCOL:
        return protocols[1]
    raise NotAuthenticated("Websockets need a token: '?token=<JWT>' or the subprotocols 'bearer, <JWT>'.")


class TokenAuthMiddleware:
    """Puts `principal` and `tenant_schema` in the scope, or refuses the handshake with an explanatory close."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        try:
            principal, tenant = await database_sync_to_async(authenticate_bearer_token)(_token_from_scope(scope))
        except ApplicationError as error:
            await self._refuse(receive, send, error)
            return
        scope = {**scope, "principal": principal, "tenant_schema": tenant.schema_name}
        # Each open socket holds a leased slot of its user's share until it ends, however it ends.
        key = f"websockets:{tenant.schema_name}:{principal.user_id}"
        limit = settings.WEBSOCKET_MAX_CONNECTIONS_PER_USER
        token = await sync_to_async(slot_acquire, thread_sensitive=False)(
            key=key, limit=limit, lease_seconds=settings.WEBSOCKET_SLOT_LEASE_SECONDS
        )
        if token is None:
            await self._refuse(
                receive,
                send,
                TooManyRequests(
                    f"At most {limit} open websockets per user (WEBSOCKET_MAX_CONNECTIONS_PER_USER).", retry_after=1
                ),
            )
            return
        try:
            return await self.inner(scope, receive, send)
        finally:
            await sync_to_async(slot_release, thread_sensitive=False)(key=key, token=token)

    @staticmethod
    async def _refuse(receive, send, error: ApplicationError) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        # Accept then close, so the client sees why (a rejected handshake carries no reason).
        await send({"type": "websocket.accept"})
        await send(
            {"type": "websocket.close", "code": CLOSE_CODES.get(error.status_code, 4400), "reason": error.message[:120]}
        )
