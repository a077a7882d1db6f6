from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from datasets.importers.records import MAX_STRING, MAX_TAGS
from datasets.models import DataRow
from datasets.selectors import (
    DatarowFilters,
    datarow_get,
    datarow_image,
    datarow_image_link,
    datarow_labels,
    datarow_list,
    datarow_page,
    datarow_predictions_by_model_version,
    dataset_get_for_caller,
)
from datasets.serializers import (
    BoxField,
    ClassNamedSerializer,
    DatarowCursorField,
    DatarowOutputSerializer,
    LabelOutputSerializer,
    PolygonField,
)
from datasets.services.datarows import MAX_DATAROW_IDS, datarow_bulk_delete, datarow_tags_update
from mlops.apis import Api
from mlops.exception_handler import ErrorSerializer
from mlops.serializers import ObjectIdField, StrictSerializer

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class DatarowListApi(Api):
    class FilterSerializer(StrictSerializer):
        cursor = DatarowCursorField(required=False)
        page_size = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE)
        external_id = serializers.CharField(required=False, trim_whitespace=False)
        external_id_prefix = serializers.CharField(required=False, trim_whitespace=False)
        uri_prefix = serializers.CharField(required=False, trim_whitespace=False)
        width_min = serializers.IntegerField(required=False, min_value=0)
        width_max = serializers.IntegerField(required=False, min_value=0)
        height_min = serializers.IntegerField(required=False, min_value=0)
        height_max = serializers.IntegerField(required=False, min_value=0)
        media_type = serializers.ChoiceField(choices=DataRow.MediaType.choices, required=False)
        created_after = serializers.DateTimeField(required=False, help_text="Created at or after (inclusive).")
        created_before = serializers.DateTimeField(required=False, help_text="Created before (exclusive).")
        tag = serializers.ListField(
            child=serializers.CharField(trim_whitespace=False),
            required=False,
            help_text="Repeat for several: rows having every one of them.",
        )

    query_serializers = {"get": FilterSerializer}

    class OutputSerializer(serializers.Serializer):
        results = DatarowOutputSerializer(many=True)
        next_cursor = DatarowCursorField(allow_null=True)

    @extend_schema(responses={200: OutputSerializer})
    def get(self, request, project_id: int, dataset_id: int):
        dataset = dataset_get_for_caller(principal=request.user, project_id=project_id, dataset_id=dataset_id)
        params = dict(self.query)
        after_id, size = params.pop("cursor", None), params.pop("page_size")
        filters = DatarowFilters(tags=tuple(params.pop("tag", ())), **params)
        rows, next_after_id = datarow_page(
            datarows=datarow_list(dataset=dataset, filters=filters), after_id=after_id, size=size
        )
        return Response(self.OutputSerializer({"results": rows, "next_cursor": next_after_id}).data)


class DatarowDetailApi(Api):
    class OutputSerializer(serializers.Serializer):
        class ModelVersionPredictionsSerializer(serializers.Serializer):
            class PredictionSerializer(ClassNamedSerializer):
                id = serializers.IntegerField()
                kind = serializers.CharField()
                score = serializers.FloatField()
                box = BoxField()
                polygon = PolygonField()

            model_version_id = serializers.IntegerField(source="model_version.id")
            name = serializers.CharField(source="model_version.name")
            version = serializers.CharField(source="model_version.version")
            predictions = PredictionSerializer(many=True)

        datarow = DatarowOutputSerializer()
        image_url = serializers.CharField(allow_null=True, source="image.url")
        image_url_error = serializers.CharField(
            allow_null=True, source="image.error", help_text="Why there is no image_url, when there is none."
        )
        labels = LabelOutputSerializer(many=True)
        predictions = ModelVersionPredictionsSerializer(many=True)

    @extend_schema(responses={200: OutputSerializer})
    def get(self, request, project_id: int, dataset_id: int, datarow_id: int):
        dataset = dataset_get_for_caller(principal=request.user, project_id=project_id, dataset_id=dataset_id)
        datarow = datarow_get(dataset=dataset, datarow_id=datarow_id)
        served_url = request.build_absolute_uri(
            reverse(
                "datarow-image", kwargs={"project_id": project_id, "dataset_id": dataset_id, "datarow_id": datarow_id}
            )
        )
        return Response(
            self.OutputSerializer(
                {
                    "datarow": datarow,
                    "image": datarow_image_link(datarow=datarow, served_url=served_url),
                    "labels": datarow_labels(datarow=datarow),
                    "predictions": datarow_predictions_by_model_version(datarow=datarow),
                }
            ).data
        )


class DatarowImageApi(Api):
    """The image of a datarow whose URI is a local file, for the frontend; never a path from the caller. 404 when
    the file is not the tenant's to serve, 415 when it is not an image."""

    @extend_schema(
        responses={
            (200, "image/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The image file."),
            415: ErrorSerializer,
        }
    )
    def get(self, request, project_id: int, dataset_id: int, datarow_id: int):
        dataset = dataset_get_for_caller(principal=request.user, project_id=project_id, dataset_id=dataset_id)
        image = datarow_image(datarow=datarow_get(dataset=dataset, datarow_id=datarow_id))
        response = FileResponse(image.file, content_type=image.content_type)
        # The type we sniffed is the only one a browser may use: a file is never rendered as HTML or script.
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, max-age=3600"
        return response


class DatarowIdsSerializer(StrictSerializer):
    datarow_ids = serializers.ListField(child=ObjectIdField(), min_length=1, max_length=MAX_DATAROW_IDS)


class DatarowTagsUpdateApi(Api):
    class InputSerializer(DatarowIdsSerializer):
        # Tags as imports take them (datasets/importers/records.py): non-empty, kept verbatim, no NUL.
        add = serializers.ListField(
            child=serializers.CharField(max_length=MAX_STRING, trim_whitespace=False), default=list, max_length=MAX_TAGS
        )
        remove = serializers.ListField(
            child=serializers.CharField(max_length=MAX_STRING, trim_whitespace=False), default=list, max_length=MAX_TAGS
        )

    class OutputSerializer(serializers.Serializer):
        updated = serializers.IntegerField()
        not_found_ids = serializers.ListField(child=serializers.IntegerField())

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer})
    def post(self, request, project_id: int, dataset_id: int):
        dataset = dataset_get_for_caller(principal=request.user, project_id=project_id, dataset_id=dataset_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = datarow_tags_update(dataset=dataset, **data.validated_data)
        return Response(self.OutputSerializer(result).data)


class DatarowBulkDeleteApi(Api):
    class OutputSerializer(serializers.Serializer):
        datarows = serializers.IntegerField()
        labels = serializers.IntegerField()
        predictions = serializers.IntegerField()
        not_found_ids = serializers.ListField(child=serializers.IntegerField())

    @extend_schema(request=DatarowIdsSerializer, responses={200: OutputSerializer})
    def post(self, request, project_id: int, dataset_id: int):
        dataset = dataset_get_for_caller(principal=request.user, project_id=project_id, dataset_id=dataset_id)
        data = DatarowIdsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = datarow_bulk_delete(dataset=dataset, **data.validated_data)
        return Response(self.OutputSerializer(result).data)
