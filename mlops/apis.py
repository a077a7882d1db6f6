"""The base of every API: its query parameters are declared, checked and documented in one place, and every list
answers one page the same way."""

from django.db.models import QuerySet
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from mlops.pagination import CreatedCursorPagination
from mlops.serializers import NoQuerySerializer, StrictSerializer


class Api(APIView):
    """`query_serializers` maps a method ("get") to the serializer of its query; a method without one takes no
    query parameter. An unknown or invalid parameter is a 400 naming it, after authentication and permissions; the
    valid ones are `self.query`. The schema documents the same serializers (mlops.schema.AutoSchema)."""

    query_serializers: dict[str, type[StrictSerializer]] = {}

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        query = self.query_serializers.get(request.method.lower(), NoQuerySerializer)(data=request.query_params)
        query.is_valid(raise_exception=True)
        self.query = query.validated_data

    def page_response(
        self,
        queryset: QuerySet,
        serializer_class: type[Serializer],
        *,
        pagination: type[CreatedCursorPagination] = CreatedCursorPagination,
    ) -> Response:
        """One keyset page of `queryset` (its `cursor` and `page_size` from CursorPageQuerySerializer), answered as
        {results, next_cursor}; the schema's side is page_of(serializer_class)."""
        paginator = pagination()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)
