import base64
from datetime import datetime

import orjson
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets.apis.datarows import DatarowOutputSerializer
from mlops.exceptions import NotAuthenticated
from search.selectors import SORTS, SearchCursor, search_datarows

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_FACETS = 10
# bigint: a larger id is no datarow, and must be a 400 rather than an error in SQL.
MAX_ID = 2 ** 63 - 1


class CanRead(BasePermission):
    """Searching is a read sent as POST (the query may be long): every role may search."""

    def has_permission(self, request, view):
        if request.user is None:
            raise NotAuthenticated("Authentication required: send 'Authorization: Bearer <token>'.")
        return True


class SearchCursorField(serializers.Field):
    """The opaque `cursor` of a search page: base64 of the sort, the last row's sort key and its id."""

    default_error_messages = {"invalid": "Not a cursor from this API; pass next_cursor as it was given."}

    def to_internal_value(self, data) -> SearchCursor:
        text = str(data)
        try:
            sort, after_value, after_id = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            valid = sort in SORTS and type(after_id) is int and 0 <= after_id <= MAX_ID
            after_moment = datetime.fromisoformat(after_value) if valid and sort.removeprefix("-") == "created_at" \
                else None
        except (ValueError, TypeError):  # binascii.Error and orjson.JSONDecodeError are ValueErrors
            self.fail("invalid")
        if not valid:
            self.fail("invalid")
        return SearchCursor(sort, after_moment, after_id)

    def to_representation(self, cursor: SearchCursor) -> str:
        after_value = cursor.after_value.isoformat() if cursor.after_value is not None else None
        data = orjson.dumps([cursor.sort, after_value, cursor.after_id])
        return base64.urlsafe_b64encode(data).decode().rstrip("=")


class ProjectSearchApi(APIView):
    permission_classes = [CanRead]

    class InputSerializer(serializers.Serializer):
        query = serializers.CharField(required=False, allow_blank=True, allow_null=True, default="",
                                      trim_whitespace=False, help_text="Empty, null or absent: every datarow.")
        dataset = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
        limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT)
        sort = serializers.ChoiceField(choices=SORTS, default="id",
                                       help_text="id or created_at; a leading '-' sorts descending.")
        cursor = SearchCursorField(required=False)
        count = serializers.ChoiceField(choices=("exact", "estimate"), default="exact")
        facets = serializers.ListField(child=serializers.CharField(), default=list, max_length=MAX_FACETS)

    class OutputSerializer(serializers.Serializer):
        class TotalSerializer(serializers.Serializer):
            value = serializers.IntegerField()
            relation = serializers.CharField()

        results = DatarowOutputSerializer(many=True)
        next_cursor = SearchCursorField(allow_null=True)
        total = TotalSerializer()
        facets = serializers.DictField(child=serializers.ListField(child=serializers.DictField()))
        took_ms = serializers.IntegerField()

    def post(self, request, project_id: int):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        result = search_datarows(principal=request.user, project_id=project_id, query_text=params["query"] or "",
                                 dataset_id=params.get("dataset"), limit=params["limit"], sort=params["sort"],
                                 cursor=params.get("cursor"), count=params["count"],
                                 facets=tuple(dict.fromkeys(params["facets"])))  # each facet counted once
        return Response(self.OutputSerializer(result).data)
