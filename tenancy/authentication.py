"""From a bearer token to a Principal and its Tenant, the same way for HTTP, websockets and DRF."""

from django.conf import settings
from rest_framework.authentication import BaseAuthentication

from mlops.exceptions import AccessDenied, NotAuthenticated, ServiceUnavailable
from tenancy.jwt_verification import verify_jwt
from tenancy.models import Tenant
from tenancy.platform_client import introspect
from tenancy.principal import Principal, Role


def bearer_token_from_header(header: str | None) -> str:
    if not header:
        raise NotAuthenticated("Authentication required: send 'Authorization: Bearer <token>'.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


def _principal_from_introspection(answer: dict, claims: dict) -> Principal:
    try:
        principal = Principal(
            user_id=str(answer["user"]["id"]),
            email=str(answer["user"].get("email", "")),
            tenant_schema=str(answer["tenant"]["schema"]),
            workspace_id=str(answer["workspace"]["id"]),
            role=str(answer["workspace"]["role"]),
            database=str(answer["connection"]["database"]),
            expires_at=int(claims["exp"]),
            scopes=tuple(str(answer.get("scope", "")).split()),
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise ServiceUnavailable("The platform's answer lacks user, tenant, workspace or connection info.") from error
    if answer.get("sub", claims["sub"]) != claims["sub"]:
        raise NotAuthenticated("The platform vouches for a different subject than the token names.")
    if principal.role not in Role.ALL:
        raise AccessDenied(f"Unknown workspace role '{principal.role}'.")
    return principal


def resolve_tenant(principal: Principal) -> Tenant:
    """The tenant the principal belongs to, only if it is provisioned and lives where this deployment serves."""
    tenant = Tenant.objects.using("default").filter(schema_name=principal.tenant_schema).first()
    if tenant is None:
        raise AccessDenied(f"Tenant '{principal.tenant_schema}' is not provisioned on this platform.")
    if tenant.status == Tenant.Status.PROVISIONING:
        raise ServiceUnavailable(f"Tenant '{tenant.schema_name}' is still being provisioned; try again shortly.")
    if tenant.status == Tenant.Status.SUSPENDED:
        raise AccessDenied(f"Tenant '{tenant.schema_name}' is suspended.")
    if principal.database != tenant.database:
        raise AccessDenied(
            "The platform's connection info does not match where this tenant's data lives.",
            {"platform_database": principal.database, "tenant_database": tenant.database},
        )
    if tenant.database != settings.DATABASE_CLUSTER:
        # Silo tenants (a database of their own) are not served yet: refuse rather than read the wrong place.
        raise AccessDenied(
            f"Tenant '{tenant.schema_name}' lives on database '{tenant.database}', "
            f"which this deployment does not serve."
        )
    return tenant


def authenticate_bearer_token(token: str) -> tuple[Principal, Tenant]:
    claims = verify_jwt(token)
    answer = introspect(token, expires_at=int(claims["exp"]))
    if not answer.get("active"):
        raise NotAuthenticated("The token is not active: the platform has revoked it or does not know it.")
    principal = _principal_from_introspection(answer, claims)
    return principal, resolve_tenant(principal)


class PlatformPrincipalAuthentication(BaseAuthentication):
    """DRF sees the principal that TenantFromTokenMiddleware already authenticated."""

    def authenticate(self, request):
        principal = getattr(request._request, "principal", None)
        return (principal, None) if principal else None

    def authenticate_header(self, request):
        return 'Bearer realm="mlops"'
