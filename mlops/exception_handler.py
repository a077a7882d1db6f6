"""The one DRF exception handler: ApplicationError, DRF and Django errors all get the same body."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from mlops.db_routing import database_busy
from mlops.exceptions import ApplicationError, error_body


def api_exception_handler(exc, context):
    if isinstance(exc, OperationalError):
        # A full connection pool (the writer's, or a read given its alias) is load to shed, not a server error.
        exc = database_busy(exc) or exc
    if isinstance(exc, ApplicationError):
        response = Response(error_body(exc.message, exc.extra), status=exc.status_code)
        if exc.status_code == status.HTTP_401_UNAUTHORIZED:
            response["WWW-Authenticate"] = 'Bearer realm="mlops"'
        if getattr(exc, "retry_after_seconds", None):
            response["Retry-After"] = str(exc.retry_after_seconds)
        return response
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        # Unexpected: re-raised to Django, which logs it with the request id, tells Sentry and calls server_error.
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body("Validation error", {"fields": response.data})
    else:
        response.data = error_body(str(exc.detail) if hasattr(exc, "detail") else str(exc))
    return response


def server_error(request):
    """handler500: Django has logged the traceback with the request id and signalled Sentry; the client
    gets the usual error shape and the id to quote, never the trace. JSON on every path: this is an API."""
    return JsonResponse(error_body("Internal server error", {"request_id": getattr(request, "request_id", None)}),
                        status=500)
