from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from datasets.importers.records import MAX_STRING, MAX_TAGS
from jobs.serializers import JobOutputSerializer
from mlops.apis import Api
from mlops.serializers import StrictSerializer
from projects.selectors import project_get
from search.apis import MAX_ID
from search.services import BULK_ACTIONS, search_bulk_action_start


class SearchBulkActionApi(Api):
    """202 with the job that tags, untags or deletes every matching datarow; editors and admins only (the default
    permission: a POST is a write)."""

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
        action = serializers.ChoiceField(choices=BULK_ACTIONS)
        # Tags as imports and the datarow tags API take them: non-empty, kept verbatim.
        tags = serializers.ListField(
            child=serializers.CharField(max_length=MAX_STRING, trim_whitespace=False), default=list, max_length=MAX_TAGS
        )

    @extend_schema(
        request=InputSerializer,
        responses={202: JobOutputSerializer},
        examples=[
            OpenApiExample(
                "Tag the night images",
                request_only=True,
                value={"query": "tags = 'night'", "action": "tag", "tags": ["review"]},
            )
        ],
    )
    def post(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        job = search_bulk_action_start(
            principal=request.user,
            project=project,
            query_text=params["query"] or "",
            action=params["action"],
            tags=params["tags"],
            dataset_id=params.get("dataset"),
        )
        return Response(JobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)
