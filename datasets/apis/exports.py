from django.http import FileResponse
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets.exporters.formats import EXPORT_FORMATS
from datasets.selectors import dataset_export_file, dataset_get_for_caller
from datasets.services.exports import dataset_export_start
from jobs.serializers import JobOutputSerializer


class DatasetExportStartApi(APIView):
    class InputSerializer(serializers.Serializer):
        format = serializers.ChoiceField(choices=list(EXPORT_FORMATS), default="jsonl")

    def post(self, request, project_id: int, dataset_id: int):
        """202 with the export job; its file is downloadable once the job has succeeded."""
        dataset = dataset_get_for_caller(principal=request.user, project_id=project_id, dataset_id=dataset_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = dataset_export_start(principal=request.user, dataset=dataset, export_format=data.validated_data["format"])
        return Response(JobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class DatasetExportDownloadApi(APIView):
    def get(self, request, project_id: int, dataset_id: int, job_id):
        dataset = dataset_get_for_caller(principal=request.user, project_id=project_id, dataset_id=dataset_id)
        path, export_format = dataset_export_file(principal=request.user, dataset=dataset, job_id=job_id)
        return FileResponse(open(path, "rb"), content_type=EXPORT_FORMATS[export_format].content_type,
                            as_attachment=True, filename=f"dataset-{dataset.pk}-{path.name}")
