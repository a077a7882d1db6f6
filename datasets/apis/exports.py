from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from datasets.exporters.formats import EXPORT_FORMATS
from datasets.selectors import dataset_export_file, dataset_get_for_caller
from datasets.services.exports import dataset_export_start
from jobs.serializers import JobOutputSerializer
from mlops.apis import Api
from mlops.exception_handler import ErrorSerializer
from mlops.serializers import StrictSerializer


class DatasetExportStartApi(Api):
    class InputSerializer(StrictSerializer):
        format = serializers.ChoiceField(choices=list(EXPORT_FORMATS), default="jsonl")

    @extend_schema(request=InputSerializer, responses={202: JobOutputSerializer})
    def post(self, request, project_id: int, dataset_id: int):
        """202 with the export job; its file is downloadable once the job has succeeded."""
        dataset = dataset_get_for_caller(principal=request.user, project_id=project_id, dataset_id=dataset_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = dataset_export_start(principal=request.user, dataset=dataset, export_format=data.validated_data["format"])
        return Response(JobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class DatasetExportDownloadApi(Api):
    @extend_schema(
        responses={
            **{
                (200, export_format.content_type): OpenApiResponse(
                    OpenApiTypes.OBJECT if export_format.content_type == "application/json" else OpenApiTypes.BINARY,
                    description=f"The export file of a {name} export.",
                )
                for name, export_format in EXPORT_FORMATS.items()
            },
            409: OpenApiResponse(ErrorSerializer, description="The export job has not succeeded (yet)."),
        }
    )
    def get(self, request, project_id: int, dataset_id: int, job_id):
        dataset = dataset_get_for_caller(principal=request.user, project_id=project_id, dataset_id=dataset_id)
        path, export_format = dataset_export_file(principal=request.user, dataset=dataset, job_id=job_id)
        return FileResponse(
            open(path, "rb"),
            content_type=EXPORT_FORMATS[export_format].content_type,
            as_attachment=True,
            filename=f"dataset-{dataset.pk}-{path.name}",
        )
