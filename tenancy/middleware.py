from django.db import connections

from mlops.db_routing import WRITER
from mlops.exceptions import ApplicationError, error_response
from mlops.observability import bind_log_context
from tenancy.authentication import authenticate_bearer_token, bearer_token_from_header

# Paths that carry tenant data; everything under them needs a token. The platform's own endpoints
# authenticate with the platform service key instead.
TENANT_API_PREFIX = "/api/v1/"
PLATFORM_API_PREFIX = "/api/v1/platform/"


class TenantFromTokenMiddleware:
    """Authenticates the bearer token and points both database aliases at the caller's tenant schema.

    The tenant never comes from the hostname; no valid token, no tenant, no data (fail closed).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(TENANT_API_PREFIX) or request.path.startswith(PLATFORM_API_PREFIX):
            return self.get_response(request)
        try:
            token = bearer_token_from_header(request.headers.get("Authorization"))
            principal, tenant = authenticate_bearer_token(token)
        except ApplicationError as error:
            return error_response(error)
        request.principal = principal
        request.tenant = tenant
        bind_log_context(tenant=tenant.schema_name, user=principal.user_id)
        connections[WRITER].set_tenant(tenant)
        try:
            return self.get_response(request)
        finally:
            # A pooled connection must not carry this tenant into the next request.
            for alias in connections:
                connections[alias].set_schema_to_public()
