import base64

import orjson
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from datasets.serializers import DatarowOutputSerializer
from jobs.serializers import JobOutputSerializer
from mlops.apis import Api
from mlops.exception_handler import ErrorSerializer
from mlops.exceptions import ApplicationError, NotAuthenticated
from mlops.serializers import StrictSerializer
from projects.selectors import project_get
from search.engines.base import SortSpec
from search.engines.statistics import Statistic
from search.selectors import SearchCursor, search_datarows, search_statistics, statistics_count_check
from search.services import search_reindex_start

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_NAME = 1000
# bigint: a larger id is no datarow, and must be a 400 rather than an error in SQL.
MAX_ID = 2**63 - 1


class CanRead(BasePermission):
    """Searching is a read sent as POST (the query may be long): every role may search."""

    def has_permission(self, request, view):
        if request.user is None:
            raise NotAuthenticated("Authentication required: send 'Authorization: Bearer <token>'.")
        return True


@extend_schema_field(OpenApiTypes.STR)
class SearchCursorField(serializers.Field):
    """The opaque `cursor` of a search page: base64 of the sort, the last row's sort value and its id (and the
    model and class of a prediction.score sort). The engine checks the sort value against the sort's type."""

    default_error_messages = {"invalid": "Not a cursor from this API; pass next_cursor as it was given."}

    def to_internal_value(self, data) -> SearchCursor:
        text = str(data)
        try:
            decoded = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            sort, after_value, after_id, *score_of = decoded
        except (ValueError, TypeError):  # binascii.Error and orjson.JSONDecodeError are ValueErrors
            self.fail("invalid")
        scalar = after_value is None or isinstance(after_value, (str, int, float, bool))
        valid = (
            isinstance(sort, str)
            and scalar
            and type(after_id) is int
            and 0 <= after_id <= MAX_ID
            and len(score_of) in (0, 2)
            and all(name is None or isinstance(name, str) for name in score_of)
        )
        if not valid:
            self.fail("invalid")
        return SearchCursor(
            SortSpec.parse(sort, model=score_of[0] if score_of else None, class_name=score_of[1] if score_of else None),
            after_value,
            after_id,
        )

    def to_representation(self, cursor: SearchCursor) -> str:
        sort = cursor.sort
        score_of = [sort.model, sort.class_name] if sort.field == "prediction.score" else []
        data = orjson.dumps([sort.token, cursor.after_value, cursor.after_id, *score_of])
        return base64.urlsafe_b64encode(data).decode().rstrip("=")


class ProjectSearchApi(Api):
    permission_classes = [CanRead]

    @extend_schema_serializer(component_name="SearchInput")
    class InputSerializer(StrictSerializer):
        query = serializers.CharField(
            required=False,
            allow_blank=True,
            allow_null=True,
            default="",
            trim_whitespace=False,
            help_text="Empty, null or absent: every datarow.",
        )
        dataset = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
        page_size = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE)
        sort = serializers.CharField(
            default="id",
            max_length=MAX_NAME,
            help_text="id, created_at, metadata.<path> or prediction.score; a leading '-' "
            "sorts descending. Rows without a value come last either way.",
        )
        sort_model = serializers.CharField(
            required=False, max_length=MAX_NAME, help_text="prediction.score: the model version, 'name@version'."
        )
        sort_class = serializers.CharField(
            required=False, max_length=MAX_NAME, help_text="prediction.score: only predictions of this class count."
        )
        cursor = SearchCursorField(required=False)
        count = serializers.ChoiceField(choices=("exact", "estimate"), default="exact")
        facets = serializers.ListField(
            child=serializers.CharField(), default=list, help_text="At most SEARCH_MAX_FACETS (10 unless configured)."
        )

    @extend_schema_serializer(component_name="SearchOutput")
    class OutputSerializer(serializers.Serializer):
        class TotalSerializer(serializers.Serializer):
            value = serializers.IntegerField()
            relation = serializers.CharField()

        results = DatarowOutputSerializer(many=True)
        next_cursor = SearchCursorField(allow_null=True)
        total = TotalSerializer()

        class FacetBucketSerializer(serializers.Serializer):
            value = serializers.JSONField(help_text="The value counted (a string, number or boolean).")
            count = serializers.IntegerField()

        facets = serializers.DictField(
            child=FacetBucketSerializer(many=True),
            help_text="Per facet asked for, its values and their counts, most first.",
        )
        facets_sampled = serializers.BooleanField(
            help_text="true when count=estimate found more than 10,000 matches and the facets counted the first "
            "10,000 of them by id (PostgreSQL engine); false when they counted every match."
        )
        took_ms = serializers.IntegerField()

    @extend_schema(
        request=InputSerializer,
        examples=[
            OpenApiExample(
                "A query with facets",
                request_only=True,
                value={
                    "query": "label(class = 'vehicle/car') AND metadata.weather != 'rain'",
                    "page_size": 50,
                    "sort": "-created_at",
                    "count": "estimate",
                    "facets": ["label.class", "tags"],
                },
            ),
            OpenApiExample(
                "The next page",
                request_only=True,
                value={
                    "query": "label(class = 'vehicle/car')",
                    "page_size": 50,
                    "cursor": "<next_cursor of the page before>",
                },
            ),
        ],
        responses={
            200: OutputSerializer,
            400: OpenApiResponse(
                ErrorSerializer,
                description="A bad query, with its line and column, or a query over a "
                "size limit (extra.limit names its setting).",
            ),
            404: ErrorSerializer,
            422: OpenApiResponse(
                ErrorSerializer,
                description="The search ran longer than SEARCH_STATEMENT_TIMEOUT_MS and was stopped: narrow the query.",
            ),
            429: OpenApiResponse(
                ErrorSerializer,
                description="The tenant runs SEARCH_MAX_CONCURRENT_PER_TENANT searches "
                "already, or a rate limit is reached: see Retry-After.",
            ),
        },
    )
    def post(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        result = search_datarows(
            project=project,
            query_text=params["query"] or "",
            dataset_id=params.get("dataset"),
            limit=params["page_size"],
            sort=SortSpec.parse(params["sort"], model=params.get("sort_model"), class_name=params.get("sort_class")),
            cursor=params.get("cursor"),
            count=params["count"],
            facets=tuple(dict.fromkeys(params["facets"])),
        )  # each facet counted once
        return Response(self.OutputSerializer(result).data)


class ProjectSearchReindexApi(Api):
    @extend_schema(request=None, responses={202: JobOutputSerializer})
    def post(self, request, project_id: int):
        """202 with the reindex job (Elasticsearch engine): searches use the old index until the new one is ready."""
        job = search_reindex_start(
            principal=request.user, project=project_get(principal=request.user, project_id=project_id)
        )
        return Response(JobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_serializer(component_name="SearchStatisticInput")
class SearchStatisticInputSerializer(StrictSerializer):
    """One statistic asked for (search.engines.statistics.Statistic)."""

    name = serializers.CharField(
        required=False, max_length=200, help_text="Names the statistic in the answer; default: its field."
    )
    kind = serializers.ChoiceField(choices=("count", "histogram"))
    field = serializers.CharField(
        max_length=MAX_NAME,
        help_text="count: label.class, prediction.class, prediction.model, label.attributes.<path>, "
        "prediction.attributes.<path>; "
        "histogram: label.<x|y|w|h|area>, prediction.<x|y|w|h|area|score>, width, height, metadata.<number path>.",
    )
    count = serializers.ChoiceField(
        choices=("objects", "images"),
        default="objects",
        help_text="count: the objects holding each value, or the images (datarows) holding one.",
    )
    model = serializers.CharField(
        required=False, max_length=MAX_NAME, help_text="prediction fields: this model version only, 'name@version'."
    )
    limit = serializers.IntegerField(
        min_value=1,
        max_value=MAX_ID,
        default=100,
        help_text="count: values listed, most first (at most SEARCH_STATISTICS_MAX_VALUES); the rest are "
        "summed in `other`.",
    )
    bins = serializers.IntegerField(
        min_value=1, max_value=MAX_ID, default=20, help_text="histogram: at most SEARCH_STATISTICS_MAX_BINS."
    )
    range = serializers.ListField(
        child=serializers.FloatField(),
        min_length=2,
        max_length=2,
        required=False,
        help_text="histogram: [low, high], the last bin closed; absent: the values' minimum and maximum.",
    )
    slice_id = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_ID,
        help_text="Only this ids or frozen slice's matching members, counted per split "
        "(train, validation, test, unassigned).",
    )


@extend_schema_field(SearchStatisticInputSerializer(many=True))
class SearchStatisticsField(serializers.ListField):
    """The statistics, each checked on its own: a bad one is a 400 naming statistics[i].<key>, as the checks of
    their meaning (search.engines.statistics) name it."""

    child = serializers.JSONField()

    def to_internal_value(self, data) -> tuple[Statistic, ...]:
        items = super().to_internal_value(data)
        statistics_count_check(len(items))  # before checking each: a long list is no work
        statistics = []
        for index, item in enumerate(items):
            one = SearchStatisticInputSerializer(data=item)
            if not one.is_valid():
                fields = {f"statistics[{index}].{key}": errors for key, errors in one.errors.items()}
                raise ApplicationError(f"Invalid statistics[{index}]: see extra.fields.", {"fields": fields})
            given = one.validated_data
            statistics.append(
                Statistic(
                    name=given.get("name", given["field"]),
                    kind=given["kind"],
                    field=given["field"],
                    count=given["count"],
                    model=given.get("model"),
                    limit=given["limit"],
                    bins=given["bins"],
                    range=tuple(given["range"]) if "range" in given else None,
                    slice_id=given.get("slice_id"),
                )
            )
        return tuple(statistics)


class ProjectSearchStatisticsApi(Api):
    permission_classes = [CanRead]

    @extend_schema_serializer(component_name="SearchStatisticsInput")
    class InputSerializer(StrictSerializer):
        query = serializers.CharField(
            required=False,
            allow_blank=True,
            allow_null=True,
            default="",
            trim_whitespace=False,
            help_text="Empty, null or absent: every datarow.",
        )
        dataset = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
        statistics = SearchStatisticsField(
            min_length=1, help_text="At most SEARCH_MAX_STATISTICS (10 unless configured)."
        )

    @extend_schema_serializer(component_name="SearchStatisticsOutput")
    class OutputSerializer(serializers.Serializer):
        class StatisticSerializer(serializers.Serializer):
            class GroupSerializer(serializers.Serializer):
                class ValueSerializer(serializers.Serializer):
                    value = serializers.JSONField(
                        help_text="A class name, or an attribute's string, number or boolean."
                    )
                    count = serializers.IntegerField()

                class OtherSerializer(serializers.Serializer):
                    values = serializers.IntegerField(help_text="Values past the limit.")
                    count = serializers.IntegerField(help_text="The sum of their counts.")

                class BucketSerializer(serializers.Serializer):
                    low = serializers.FloatField()
                    high = serializers.FloatField(help_text="Excluded, except in the last bucket.")
                    count = serializers.IntegerField()

                split = serializers.ChoiceField(
                    choices=("all", "train", "validation", "test", "unassigned"),
                    help_text="all without slice_id; else each split of the slice, and its members without one.",
                )
                values = ValueSerializer(many=True, required=False, help_text="count: most first.")
                other = OtherSerializer(required=False, help_text="count")
                range = serializers.ListField(
                    child=serializers.FloatField(),
                    allow_null=True,
                    required=False,
                    help_text="histogram: [low, high]; null when no value was found (and no range given).",
                )
                buckets = BucketSerializer(many=True, required=False, help_text="histogram")
                below = serializers.IntegerField(required=False, help_text="histogram: values under low.")
                above = serializers.IntegerField(required=False, help_text="histogram: values over high.")

            name = serializers.CharField()
            kind = serializers.CharField()
            field = serializers.CharField()
            count = serializers.CharField(required=False, help_text="count: objects or images.")
            groups = GroupSerializer(many=True)

        statistics = StatisticSerializer(many=True)
        took_ms = serializers.IntegerField()

    @extend_schema(
        request=InputSerializer,
        examples=[
            OpenApiExample(
                "Objects per class and a histogram of box areas",
                request_only=True,
                value={
                    "query": "metadata.weather = 'rain'",
                    "statistics": [
                        {"kind": "count", "field": "label.class", "limit": 50},
                        {"kind": "count", "field": "prediction.class", "model": "yolo@2", "count": "images"},
                        {"kind": "histogram", "field": "label.area", "bins": 20, "range": [0, 100000]},
                        {"name": "score per split", "kind": "histogram", "field": "prediction.score", "slice_id": 7},
                    ],
                },
            )
        ],
        responses={
            200: OutputSerializer,
            400: OpenApiResponse(
                ErrorSerializer,
                description="A bad query, a field that cannot be counted or binned, options that do not go with "
                "it, or a limit passed (extra.limit names its setting); extra.fields names the statistic's key, "
                "e.g. statistics[1].field.",
            ),
            404: ErrorSerializer,
            422: OpenApiResponse(
                ErrorSerializer,
                description="A statement ran longer than SEARCH_STATEMENT_TIMEOUT_MS and was stopped: narrow the "
                "query.",
            ),
            429: OpenApiResponse(
                ErrorSerializer,
                description="The tenant runs SEARCH_MAX_CONCURRENT_PER_TENANT searches "
                "already, or a rate limit is reached: see Retry-After.",
            ),
        },
    )
    def post(self, request, project_id: int):
        """Statistics over the datarows a query matches: values counted per object class or attribute value, and
        histograms of numbers (docs/query-language.md, "Statistics")."""
        project = project_get(principal=request.user, project_id=project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        result = search_statistics(
            project=project,
            query_text=params["query"] or "",
            statistics=params["statistics"],
            dataset_id=params.get("dataset"),
        )
        return Response(self.OutputSerializer(result).data)
