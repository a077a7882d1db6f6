from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from jobs.limits import job_time_limit
from jobs.selectors import job_get, job_list
from jobs.serializers import JobOutputSerializer
from jobs.services import job_create, job_request_cancel
from jobs.tasks import COUNT_JOB_KIND
from mlops.apis import Api
from mlops.exception_handler import ErrorSerializer
from mlops.serializers import CursorPageQuerySerializer, StrictSerializer, page_of


class JobListStartApi(Api):
    """Lists the workspace's jobs; starts the demo job (other kinds are started by their own domain's API)."""

    query_serializers = {"get": CursorPageQuerySerializer}

    class StartInputSerializer(StrictSerializer):
        kind = serializers.ChoiceField(choices=[COUNT_JOB_KIND])
        steps = serializers.IntegerField(min_value=1, max_value=100_000, default=10)
        delay_seconds = serializers.FloatField(min_value=0, max_value=60, default=0.5)

        def validate_kind(self, kind):
            # A demo that any editor could start would only hold production workers: a 400 there, as for a kind
            # this deployment does not run.
            if not settings.DEMO_JOBS:
                raise serializers.ValidationError(
                    f"The {kind!r} demo job runs only where MLOPS_ENV is development or test."
                )
            return kind

        def validate(self, data):
            # A count that could not finish within its time limit would hold a worker only to fail: refuse it now.
            limit = job_time_limit(COUNT_JOB_KIND)
            if data["steps"] * data["delay_seconds"] > limit.soft_seconds:
                raise serializers.ValidationError(
                    {
                        "delay_seconds": [
                            f"steps × delay_seconds is {data['steps'] * data['delay_seconds']:g} s, more than the count job's "
                            f"time limit of {limit.soft_seconds:g} s (setting {limit.setting})."
                        ]
                    }
                )
            return data

    @extend_schema(responses={200: page_of(JobOutputSerializer)})
    def get(self, request):
        return self.page_response(job_list(principal=request.user), JobOutputSerializer)

    @extend_schema(
        request=StartInputSerializer,
        responses={201: JobOutputSerializer},
        examples=[
            OpenApiExample(
                "Count to 5", value={"kind": COUNT_JOB_KIND, "steps": 5, "delay_seconds": 0.2}, request_only=True
            )
        ],
    )
    def post(self, request):
        """Starts the `count` demo job where MLOPS_ENV is development or test; elsewhere its kind is a 400."""
        data = self.StartInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = {"steps": data.validated_data["steps"], "delay_seconds": data.validated_data["delay_seconds"]}
        job = job_create(principal=request.user, kind=COUNT_JOB_KIND, params=params)
        return Response(JobOutputSerializer(job).data, status=status.HTTP_201_CREATED)


class JobDetailApi(Api):
    @extend_schema(responses={200: JobOutputSerializer})
    def get(self, request, job_id):
        return Response(JobOutputSerializer(job_get(principal=request.user, job_id=job_id)).data)


class JobCancelApi(Api):
    @extend_schema(
        request=None,
        responses={
            200: JobOutputSerializer,
            409: OpenApiResponse(ErrorSerializer, description="It has already ended; extra.status says how."),
        },
    )
    def post(self, request, job_id):
        """Asks the job to stop: it ends `cancelled` at its next checkpoint (a finished job is a 409)."""
        job = job_request_cancel(job=job_get(principal=request.user, job_id=job_id))
        return Response(JobOutputSerializer(job).data)
