from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from mlops.serializers import MAX_PAGE_SIZE, cursor_of


class CreatedCursorPagination(CursorPagination):
    """Keyset pagination, newest first; `id` breaks ties so no row is skipped or repeated."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except NotFound as error:  # a bad parameter, as the other lists answer it, not a missing resource
            raise ValidationError(
                {"cursor": ["Not a cursor from this API; pass next_cursor as it was given."]}
            ) from error

    def get_paginated_response(self, data):
        # Every list answers {results, next_cursor}: the same page shape as datarows, slice members and search.
        return Response({"results": data, "next_cursor": cursor_of(self.get_next_link())})
