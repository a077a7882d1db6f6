from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.selectors import job_get, job_list
from jobs.serializers import JobOutputSerializer
from jobs.services import job_create, job_request_cancel
from jobs.tasks import COUNT_JOB_KIND, count_to
from mlops.pagination import CreatedCursorPagination


class JobListStartApi(APIView):
    """Lists the workspace's jobs; starts the demo job (other kinds are started by their own domain's API)."""

    class StartInputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=[COUNT_JOB_KIND])
        steps = serializers.IntegerField(min_value=1, max_value=100_000, default=10)
        delay_seconds = serializers.FloatField(min_value=0, max_value=60, default=0.5)

    def get(self, request):
        paginator = CreatedCursorPagination()
        page = paginator.paginate_queryset(job_list(principal=request.user), request, view=self)
        return paginator.get_paginated_response(JobOutputSerializer(page, many=True).data)

    def post(self, request):
        data = self.StartInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = {"steps": data.validated_data["steps"], "delay_seconds": data.validated_data["delay_seconds"]}
        job = job_create(principal=request.user, task=count_to, params=params)
        return Response(JobOutputSerializer(job).data, status=status.HTTP_201_CREATED)


class JobDetailApi(APIView):
    def get(self, request, job_id):
        return Response(JobOutputSerializer(job_get(principal=request.user, job_id=job_id)).data)


class JobCancelApi(APIView):
    def post(self, request, job_id):
        job = job_request_cancel(job=job_get(principal=request.user, job_id=job_id))
        return Response(JobOutputSerializer(job).data)
