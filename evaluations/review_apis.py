from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from datasets.serializers import ClassNamedSerializer
from evaluations.review import evaluation_runs_compare, review_queue_create
from evaluations.selectors import evaluation_run_get
from mlops.apis import Api
from mlops.exceptions import referenced_by
from mlops.serializers import MAX_ID, StrictSerializer
from predictions.serializers import SliceSummaryOutputSerializer
from projects.selectors import project_get


class EvaluationRunReviewQueueApi(Api):
    class InputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=200)
        k = serializers.IntegerField(min_value=1, max_value=MAX_ID)

    @extend_schema(
        request=InputSerializer,
        responses={201: SliceSummaryOutputSerializer},
        examples=[OpenApiExample("The 50 worst images", request_only=True, value={"name": "review 1", "k": 50})],
    )
    def post(self, request, project_id: int, evaluation_run_id: int):
        """201 with a new ids slice of the run's k images with the most errors (false positives plus false
        negatives at the run's IoU, ties by datarow id); images without an error are left out."""
        project = project_get(principal=request.user, project_id=project_id)
        evaluation_run = evaluation_run_get(project=project, evaluation_run_id=evaluation_run_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        queue = review_queue_create(
            principal=request.user,
            evaluation_run=evaluation_run,
            name=data.validated_data["name"],
            k=data.validated_data["k"],
        )
        return Response(SliceSummaryOutputSerializer(queue).data, status=status.HTTP_201_CREATED)


class EvaluationRunCompareApi(Api):
    class InputSerializer(StrictSerializer):
        baseline_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
        candidate_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
        disagreement_slice_name = serializers.CharField(
            max_length=200,
            required=False,
            help_text="The new slice's name; by default 'evaluation runs <baseline> and <candidate> disagree'.",
        )

    class OutputSerializer(serializers.Serializer):
        class ClassDeltaSerializer(ClassNamedSerializer):
            """One class's AP in each run (null where a run has none: no ground truth of it, or not scored)."""

            def class_field(self) -> serializers.Field:
                return serializers.CharField()

            baseline_ap = serializers.FloatField(allow_null=True)
            candidate_ap = serializers.FloatField(allow_null=True)
            delta = serializers.FloatField(allow_null=True, help_text="Candidate minus baseline; null without both.")

        baseline_id = serializers.IntegerField()
        candidate_id = serializers.IntegerField()
        baseline_map = serializers.FloatField(allow_null=True)
        candidate_map = serializers.FloatField(allow_null=True)
        map_delta = serializers.FloatField(allow_null=True)
        per_class = ClassDeltaSerializer(many=True, help_text="Every class either run scored, by name.")
        disagreement_slice = SliceSummaryOutputSerializer(
            help_text="The images with a ground-truth box one run found (TP) and the other missed (FN)."
        )

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request, project_id: int):
        """Two succeeded evaluation runs over the same slice, splits and IoU threshold: per-class AP deltas and a
        new ids slice of the images where they disagree."""
        project = project_get(principal=request.user, project_id=project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        options = data.validated_data
        with referenced_by("baseline_id"):
            baseline = evaluation_run_get(project=project, evaluation_run_id=options["baseline_id"])
        with referenced_by("candidate_id"):
            candidate = evaluation_run_get(project=project, evaluation_run_id=options["candidate_id"])
        comparison = evaluation_runs_compare(
            principal=request.user,
            baseline=baseline,
            candidate=candidate,
            disagreement_slice_name=options.get(
                "disagreement_slice_name", f"evaluation runs {baseline.pk} and {candidate.pk} disagree"
            ),
        )
        return Response(self.OutputSerializer(comparison).data, status=status.HTTP_201_CREATED)
