from rest_framework.pagination import CursorPagination


class CreatedCursorPagination(CursorPagination):
    """Keyset pagination, newest first; `id` breaks ties so no row is skipped or repeated."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
