from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from evaluations.models import ObjectMatch
from evaluations.selectors import evaluation_run_get, evaluation_run_list, object_match_list
from evaluations.serializers import EvaluationRunOutputSerializer, ObjectMatchOutputSerializer
from evaluations.services import evaluation_run_start
from mlops.apis import Api
from mlops.exceptions import referenced_by
from mlops.pagination import CreatedCursorPagination
from mlops.serializers import MAX_ID, CursorPageQuerySerializer, StrictSerializer, page_of
from predictions.selectors import model_version_get
from predictions.serializers import SPLIT_CHOICES, split_values
from projects.selectors import project_get
from slices.selectors import slice_get


class EvaluationRunListStartApi(Api):
    query_serializers = {"get": CursorPageQuerySerializer}

    class InputSerializer(StrictSerializer):
        model_version_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
        slice_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
        splits = serializers.ListField(
            child=serializers.ChoiceField(choices=SPLIT_CHOICES), required=False, help_text="Only these splits."
        )
        iou_threshold = serializers.FloatField(
            default=0.5, help_text="In (0, 1]: the IoU of the stored matches; the metrics cover COCO's 0.50:0.95."
        )
        max_detections = serializers.IntegerField(
            default=100, help_text="Detections per image and class in the stored matches (the metrics keep COCO's)."
        )

    @extend_schema(responses={200: page_of(EvaluationRunOutputSerializer)})
    def get(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        return self.page_response(evaluation_run_list(project=project), EvaluationRunOutputSerializer)

    @extend_schema(
        request=InputSerializer,
        responses={202: EvaluationRunOutputSerializer},
        examples=[
            OpenApiExample(
                "Evaluate a detector on a slice's test split",
                request_only=True,
                value={"model_version_id": 3, "slice_id": 12, "splits": ["test"], "iou_threshold": 0.5},
            )
        ],
    )
    def post(self, request, project_id: int):
        """202 with the queued run: follow its job on ws/jobs/<job id>/; its metrics are set once it succeeds."""
        project = project_get(principal=request.user, project_id=project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        options = data.validated_data
        with referenced_by("model_version_id"):
            model_version = model_version_get(project=project, model_version_id=options["model_version_id"])
        with referenced_by("slice_id"):
            slice = slice_get(project=project, slice_id=options["slice_id"])
        run = evaluation_run_start(
            principal=request.user,
            model_version=model_version,
            slice=slice,
            splits=split_values(options.get("splits", [])),
            iou_threshold=options["iou_threshold"],
            max_detections=options["max_detections"],
        )
        return Response(EvaluationRunOutputSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class EvaluationRunDetailApi(Api):
    @extend_schema(responses={200: EvaluationRunOutputSerializer})
    def get(self, request, project_id: int, evaluation_run_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        run = evaluation_run_get(project=project, evaluation_run_id=evaluation_run_id)
        return Response(EvaluationRunOutputSerializer(run).data)


class MatchPagination(CreatedCursorPagination):
    ordering = ("id",)
    page_size = 100


class ObjectMatchListApi(Api):
    class QuerySerializer(CursorPageQuerySerializer):
        outcome = serializers.ChoiceField(choices=ObjectMatch.Outcome.choices, required=False)
        side = serializers.ChoiceField(choices=ObjectMatch.Side.choices, required=False)
        ontology_class_id = serializers.IntegerField(
            required=False, min_value=1, max_value=MAX_ID, help_text="The label's class, or the prediction's."
        )

    query_serializers = {"get": QuerySerializer}

    @extend_schema(responses={200: page_of(ObjectMatchOutputSerializer)})
    def get(self, request, project_id: int, evaluation_run_id: int):
        """Each label's and prediction's outcome at the run's IoU (docs/evaluation.md), in the order they were
        written; ?outcome=fn&ontology_class_id=7 lists one class's misses."""
        project = project_get(principal=request.user, project_id=project_id)
        run = evaluation_run_get(project=project, evaluation_run_id=evaluation_run_id)
        matches = object_match_list(
            run=run,
            outcome=self.query.get("outcome"),
            side=self.query.get("side"),
            ontology_class_id=self.query.get("ontology_class_id"),
        )
        return self.page_response(matches, ObjectMatchOutputSerializer, pagination=MatchPagination)
