from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from datasets.models import Dataset
from datasets.selectors import dataset_get, dataset_import_error_report, dataset_list
from datasets.services.datasets import dataset_create, dataset_delete_start, dataset_update
from datasets.services.imports import (
    FORMATS,
    MODES,
    ON_ERROR,
    ImportOptions,
    dataset_import_start,
)
from jobs.serializers import JobOutputSerializer
from mlops.apis import Api
from mlops.exception_handler import ErrorSerializer
from mlops.exceptions import ApplicationError
from mlops.serializers import CursorPageQuerySerializer, StrictSerializer, page_of
from mlops.storage import delete_upload, save_upload
from projects.selectors import project_get


class DatasetOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project_id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    status = serializers.CharField()
    datarow_count = serializers.IntegerField()
    label_count = serializers.IntegerField()
    prediction_count = serializers.IntegerField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class DatasetListCreateApi(Api):
    class CreateInputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(required=False, allow_blank=True, default="")

    query_serializers = {"get": CursorPageQuerySerializer}

    @extend_schema(responses={200: page_of(DatasetOutputSerializer)})
    def get(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        return self.page_response(dataset_list(project=project), DatasetOutputSerializer)

    @extend_schema(request=CreateInputSerializer, responses={201: DatasetOutputSerializer})
    def post(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        data = self.CreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = dataset_create(principal=request.user, project=project, **data.validated_data)
        return Response(DatasetOutputSerializer(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailApi(Api):
    class UpdateInputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=200, required=False)
        description = serializers.CharField(required=False, allow_blank=True)

    def _dataset(self, request, project_id: int, dataset_id: int) -> Dataset:
        return dataset_get(project=project_get(principal=request.user, project_id=project_id), dataset_id=dataset_id)

    @extend_schema(responses={200: DatasetOutputSerializer})
    def get(self, request, project_id: int, dataset_id: int):
        return Response(DatasetOutputSerializer(self._dataset(request, project_id, dataset_id)).data)

    @extend_schema(request=UpdateInputSerializer, responses={200: DatasetOutputSerializer})
    def patch(self, request, project_id: int, dataset_id: int):
        dataset = self._dataset(request, project_id, dataset_id)
        data = self.UpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = dataset_update(dataset=dataset, **data.validated_data)
        return Response(DatasetOutputSerializer(dataset).data)

    @extend_schema(responses={202: JobOutputSerializer})
    def delete(self, request, project_id: int, dataset_id: int):
        """202 with the delete job: the dataset disappears at once, its rows in the background."""
        job = dataset_delete_start(principal=request.user, dataset=self._dataset(request, project_id, dataset_id))
        return Response(JobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class DatasetImportStartApi(Api):
    """Start an import from a URI, or from a file uploaded in the same request (multipart `file`)."""

    parser_classes = [JSONParser, MultiPartParser]

    class InputSerializer(StrictSerializer):
        uri = serializers.CharField(
            max_length=2000,
            required=False,
            help_text="s3://, http(s):// or a file under the tenant's folder; or send `file`.",
        )
        format = serializers.ChoiceField(choices=list(FORMATS), default="jsonl")
        mode = serializers.ChoiceField(choices=list(MODES), default="upsert")
        on_error = serializers.ChoiceField(choices=list(ON_ERROR), default="skip")
        create_classes = serializers.BooleanField(default=False)
        model_name = serializers.CharField(max_length=200, required=False)
        model_version = serializers.CharField(max_length=100, required=False)
        images_uri = serializers.CharField(
            max_length=2000,
            required=False,
            help_text=(
                "coco/yolo: the folder or s3:// prefix the images are in (COCO default: the annotation file's folder; "
                "required for an uploaded COCO file)."
            ),
        )
        check_images = serializers.BooleanField(default=False, help_text="coco: report every image that is missing.")

    class UploadInputSerializer(InputSerializer):
        """The multipart form: the JSON body's fields, or the file itself. Its own component, so that a client
        generated from the schema can tell the two bodies apart."""

        file = serializers.FileField(required=False, help_text="The manifest or archive.")
        keep_upload = serializers.BooleanField(
            default=False,
            help_text="Keep the uploaded `file` after the import job ends; by default it is deleted "
            "when the job succeeds, fails or is cancelled.",
        )

    @extend_schema(
        request={"application/json": InputSerializer, "multipart/form-data": UploadInputSerializer},
        responses={
            202: JobOutputSerializer,
            409: OpenApiResponse(ErrorSerializer, description="An import or a delete of the dataset is running."),
            413: OpenApiResponse(ErrorSerializer, description="The upload is over the size limit."),
        },
        examples=[
            OpenApiExample(
                "Import a JSON Lines manifest from S3",
                request_only=True,
                media_type="application/json",
                value={
                    "uri": "s3://bucket/manifest.jsonl",
                    "format": "jsonl",
                    "mode": "upsert",
                    "on_error": "skip",
                    "create_classes": True,
                },
            ),
            OpenApiExample(
                "A manifest line (jsonl)",
                request_only=True,
                media_type="application/json",
                description="One line of the manifest the uri or file holds.",
                value={
                    "external_id": "img-0001",
                    "uri": "s3://bucket/img-0001.jpg",
                    "width": 640,
                    "height": 480,
                    "metadata": {"weather": "rain"},
                    "tags": ["night"],
                    "labels": [{"class": "vehicle/car", "box": [100, 50, 200, 100]}],
                    "predictions": [
                        {
                            "model": "detector",
                            "version": "3",
                            "class": "vehicle/car",
                            "score": 0.91,
                            "box": [98, 52, 204, 97],
                        }
                    ],
                },
            ),
        ],
    )
    def post(self, request, project_id: int, dataset_id: int):
        dataset = dataset_get(project=project_get(principal=request.user, project_id=project_id), dataset_id=dataset_id)
        data = self.UploadInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        options = dict(data.validated_data)
        uploaded, uri, keep_upload = options.pop("file", None), options.pop("uri", None), options.pop("keep_upload")
        if bool(uploaded) == bool(uri):
            raise ApplicationError(
                "Give either a 'uri' or an uploaded 'file'.",
                {"fields": {"uri": ["Exactly one of uri and file is required."]}},
            )
        if uploaded:
            uri = save_upload(uploaded)
        try:
            job = dataset_import_start(
                principal=request.user,
                dataset=dataset,
                uri=uri,
                options=ImportOptions(**options),
                owns_upload=bool(uploaded) and not keep_upload,
            )
        except BaseException:
            if uploaded:  # no job was made to own it
                delete_upload(uri)
            raise
        return Response(JobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class DatasetImportErrorReportApi(Api):
    @extend_schema(
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.BINARY, description="One JSON line per rejected record: its line, field and reason."
            )
        }
    )
    def get(self, request, project_id: int, dataset_id: int, job_id: str):
        dataset = dataset_get(project=project_get(principal=request.user, project_id=project_id), dataset_id=dataset_id)
        path = dataset_import_error_report(principal=request.user, dataset=dataset, job_id=job_id)
        return FileResponse(
            open(path, "rb"),
            content_type="application/x-ndjson",
            as_attachment=True,
            filename=f"import-{job_id}-errors.jsonl",
        )
