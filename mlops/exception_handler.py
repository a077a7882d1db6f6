"""The one DRF exception handler: ApplicationError, DRF and Django errors all get the same body."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from mlops.db_routing import database_busy
from mlops.exceptions import ApplicationError, error_body
from mlops.metrics import count_statement_timeout
from mlops.statements import statement_canceled


class ErrorSerializer(serializers.Serializer):
    """The body of every error, for the API schema."""

    message = serializers.CharField()
    extra = serializers.DictField(
        help_text="Details: fields (per field errors), line and column (queries), limit "
        "(the setting of a limit reached), retry_after (seconds, with a 429 or 503)."
    )


def api_exception_handler(exc, context):
    if isinstance(exc, OperationalError):
        # A full connection pool (the writer's, or a read given its alias) is load to shed, not a server error.
        exc = database_busy(exc) or exc
    if isinstance(exc, ApplicationError):
        response = Response(error_body(exc.message, exc.extra), status=exc.status_code)
        if exc.status_code == status.HTTP_401_UNAUTHORIZED:
            response["WWW-Authenticate"] = 'Bearer realm="mlops"'
        # A share used up (429) or a busy database (503): the client is told when to come back.
        if getattr(exc, "retry_after", None):
            response["Retry-After"] = str(exc.retry_after)
        return response
    if statement_canceled(exc):
        # A statement ran into REQUEST_STATEMENT_TIMEOUT_MS (or its client left): bounded work, not a server fault.
        count_statement_timeout("request")
        return Response(
            error_body(
                "The request took longer than the server allows; try again with less work "
                "(a smaller page, a narrower filter).",
                {"limit": "REQUEST_STATEMENT_TIMEOUT_MS"},
            ),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
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
    return JsonResponse(
        error_body("Internal server error", {"request_id": getattr(request, "request_id", None)}), status=500
    )


def not_found(request, exception):
    """handler404: an unknown path (or a Django view's Http404) answers the API's error shape, not an HTML page."""
    return JsonResponse(
        error_body(f"Not found: nothing answers {request.method} {request.path}.", {"path": request.path}), status=404
    )
