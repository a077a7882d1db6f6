"""A development issuer and platform, built in for `make run`; settings refuse them in production.

The signing key lives under the data folder; the dev platform answers introspection from the local
tenants table and the claims the dev issuer put in the token.
"""

import functools
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings

from mlops.exceptions import NotAuthenticated
from tenancy.principal import Role

DEV_KID = "mlops-dev"
CLAIM_NAMESPACE = "https://mlops.local/"


class DevKeySource:
    def __init__(self, private_key):
        self.private_key = private_key

    def key_for(self, kid: str):
        if kid != DEV_KID:
            raise NotAuthenticated("The token is not signed by the development issuer.", {"kid": kid})
        return self.private_key.public_key()


@functools.cache
def _private_key():
    path = settings.DEV_JWT_KEY_PATH
    if path.exists():
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)
    return key


def dev_key_source() -> DevKeySource:
    return DevKeySource(_private_key())


def issue_dev_token(
    *, tenant: str, user: str, role: str = Role.ADMIN, workspace: str = "default", lifetime_seconds: int = 12 * 3600
) -> str:
    now = int(time.time())
    claims = {
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "sub": user,
        "iat": now,
        "exp": now + lifetime_seconds,
        "jti": uuid.uuid4().hex,
        CLAIM_NAMESPACE + "tenant": tenant,
        CLAIM_NAMESPACE + "workspace": workspace,
        CLAIM_NAMESPACE + "role": role,
    }
    return jwt.encode(claims, _private_key(), algorithm="RS256", headers={"kid": DEV_KID})


def dev_introspect(token: str) -> dict:
    from tenancy.models import Tenant

    claims = jwt.decode(token, options={"verify_signature": False})
    # A hand-made development token may lack a claim: that is a bad token (401), not a server error.
    missing = [name for name in ("tenant", "workspace", "role") if not claims.get(CLAIM_NAMESPACE + name)]
    if missing:
        raise NotAuthenticated(
            f"The development token lacks the claim '{CLAIM_NAMESPACE}{missing[0]}'.",
            {"missing_claims": [CLAIM_NAMESPACE + name for name in missing]},
        )
    tenant = Tenant.objects.using("default").filter(schema_name=claims[CLAIM_NAMESPACE + "tenant"]).first()
    if tenant is None:
        return {"active": False}
    return {
        "active": True,
        "sub": claims["sub"],
        "exp": claims["exp"],
        "user": {"id": claims["sub"], "email": claims["sub"]},
        "tenant": {"schema": tenant.schema_name},
        "workspace": {"id": claims[CLAIM_NAMESPACE + "workspace"], "role": claims[CLAIM_NAMESPACE + "role"]},
        "connection": {"database": tenant.database, "schema": tenant.schema_name},
    }
