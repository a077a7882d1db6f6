"""How the OpenAPI schema is derived from the APIs: one tag per domain app, operation ids from the API classes,
the declared query serializers as parameters, and the error component on every error status an API can answer."""

import re

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse

from mlops.exception_handler import ErrorSerializer

# The tag of each app's APIs; the platform's provisioning lives in tenancy.
TAGS = {"tenancy": "platform"}

ERRORS = {
    "400": "Bad input: unknown or invalid fields and query parameters, all of them, under extra.fields.",
    "401": "No valid bearer token.",
    "403": "The token's role or tenant may not do this.",
    "404": "Not found, or not this tenant's.",
    "409": "The current state forbids it: a name already taken, an object busy or not ready (message says which).",
    "429": "A rate limit or a share is used up; Retry-After says when to come back.",
    "503": "The database is busy or a statement ran out of time; Retry-After says when to come back.",
}


class AutoSchema(SpectacularAutoSchema):
    def get_tags(self) -> list[str]:
        app = type(self.view).__module__.split(".")[0]
        return [TAGS.get(app, app)]

    def get_operation_id(self) -> str:
        # Stable: named after the API class (one per route) and the method, e.g. dataset_detail_patch.
        name = type(self.view).__name__.removesuffix("Api")
        return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() + "_" + self.method.lower()

    def get_serializer_name(self, serializer, direction) -> str:
        # A serializer nested in its API (DatasetDetailApi.UpdateInputSerializer) is named with its API, so the
        # components of two APIs never collide: DatasetDetailUpdateInput.
        parts = type(serializer).__qualname__.split(".")
        return "".join(part.removesuffix("Api").removesuffix("Serializer") for part in parts)

    def get_override_parameters(self):
        query = getattr(self.view, "query_serializers", {}).get(self.method.lower())
        return ([query] if query else []) + super().get_override_parameters()

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, description in ERRORS.items():
            if code == "404" and "{" not in self.path:
                continue
            if code == "409" and self.method not in ("POST", "PUT", "PATCH", "DELETE"):
                continue  # only a write meets a conflicting state (an unfinished export's download says so itself)
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=description), code, direction=direction
                )
        return responses
