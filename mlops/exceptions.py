"""One exception hierarchy: every error body is {"message": ..., "extra": {...}} (see exception_handler)."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.http import JsonResponse
from rest_framework import status


class ApplicationError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class NotAuthenticated(ApplicationError):
    status_code = status.HTTP_401_UNAUTHORIZED


class AccessDenied(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN


class NotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND


@contextmanager
def referenced_by(field: str) -> Iterator[None]:
    """A NotFound inside is about an id the request's body or query string names: a 400 on `field`, since the URL
    was found and a bare 404 would read as a wrong URL. Ids in the path keep their 404."""
    try:
        yield
    except NotFound as error:
        raise ApplicationError(error.message, {"fields": {field: [error.message]}}) from error


class Conflict(ApplicationError):
    status_code = status.HTTP_409_CONFLICT


class PayloadTooLarge(ApplicationError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


class TooManyRequests(ApplicationError):
    """A share used up: the answer carries Retry-After (seconds)."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS

    def __init__(self, message: str, extra: dict | None = None, *, retry_after: int):
        super().__init__(message, {**(extra or {}), "retry_after": retry_after})
        self.retry_after = retry_after


class UnsupportedMediaType(ApplicationError):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE


class ServiceUnavailable(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE


class DatabaseBusy(ServiceUnavailable):
    """Every pooled connection of this process to a database stayed in use for the pool's whole wait: the request is
    shed (503 with Retry-After) instead of queueing without bound. Busy is not down: nothing is marked unreachable."""

    def __init__(self, detail: str):
        from django.conf import settings

        self.retry_after = settings.DATABASE_BUSY_RETRY_AFTER_SECONDS
        super().__init__(
            f"The database is busy ({detail}); retry in {self.retry_after} s.", {"retry_after": self.retry_after}
        )


def error_body(message: str, extra: dict | None = None) -> dict:
    return {"message": message, "extra": extra or {}}


def error_response(error: ApplicationError) -> JsonResponse:
    """For middleware, which answers before DRF is reached."""
    response = JsonResponse(error_body(error.message, error.extra), status=error.status_code)
    if error.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Bearer realm="mlops"'
    return response
