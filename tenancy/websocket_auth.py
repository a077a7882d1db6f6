"""Websockets authenticate with the same bearer token as HTTP: `?token=` or the `bearer, <token>` subprotocol."""

from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from mlops.exceptions import ApplicationError, NotAuthenticated
from tenancy.authentication import authenticate_bearer_token

BEARER_SUBPROTOCOL = "bearer"
# Close codes in the application range, mirroring HTTP 401 / 403 / 503.
CLOSE_CODES = {401: 4401, 403: 4403, 404: 4404, 503: 4503}


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
        return await self.inner(scope, receive, send)

    @staticmethod
    async def _refuse(receive, send, error: ApplicationError) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        # Accept then close, so the client sees why (a rejected handshake carries no reason).
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": CLOSE_CODES.get(error.status_code, 4400),
                    "reason": error.message[:120]})
