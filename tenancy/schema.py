"""The bearer scheme of the API schema (loaded by TenancyConfig.ready), so Swagger UI offers Authorize."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object


class PlatformPrincipalAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "tenancy.authentication.PlatformPrincipalAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix="Bearer", bearer_format="JWT"
        )
