from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from datasets.selectors import dataset_get
from mlops.apis import Api
from mlops.exceptions import referenced_by
from mlops.serializers import MAX_ID, CursorPageQuerySerializer, StrictSerializer, page_of
from predictions.active_selection import STRATEGIES, Selection
from predictions.detection_selection import BOX_STRATEGIES
from predictions.metrics import Scope, classification_metrics, detection_map
from predictions.selectors import model_version_get, model_version_list, prediction_run_get, prediction_run_list
from predictions.serializers import (
    ClassificationMetricsSerializer,
    ComparisonOutputSerializer,
    DetectionMetricsSerializer,
    ModelVersionOutputSerializer,
    PredictionRunOutputSerializer,
    ScopeInputSerializer,
    SliceSummaryOutputSerializer,
    split_values,
)
from predictions.services import model_versions_compare, prediction_run_start, selection_create
from projects.selectors import project_get
from slices.selectors import slice_get


def _scope(project, data: dict) -> Scope:
    if "slice_id" not in data:
        return Scope()
    with referenced_by("slice_id"):
        slice = slice_get(project=project, slice_id=data["slice_id"])
    return Scope(slice_id=slice.pk, splits=split_values(data.get("splits", [])))


class ModelVersionListApi(Api):
    query_serializers = {"get": CursorPageQuerySerializer}

    @extend_schema(responses={200: page_of(ModelVersionOutputSerializer)})
    def get(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        return self.page_response(model_version_list(project=project), ModelVersionOutputSerializer)


class ModelVersionDetailApi(Api):
    @extend_schema(responses={200: ModelVersionOutputSerializer})
    def get(self, request, project_id: int, model_version_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        return Response(
            ModelVersionOutputSerializer(model_version_get(project=project, model_version_id=model_version_id)).data
        )


class ModelVersionMetricsApi(Api):
    """Classification metrics against the labels: ?slice_id=&splits=test restricts them to a slice's split."""

    query_serializers = {"get": ScopeInputSerializer}

    @extend_schema(responses={200: ClassificationMetricsSerializer})
    def get(self, request, project_id: int, model_version_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        model_version = model_version_get(project=project, model_version_id=model_version_id)
        metrics = classification_metrics(model_version=model_version, scope=_scope(project, self.query))
        return Response(ClassificationMetricsSerializer(metrics).data)


class ModelVersionDetectionMetricsApi(Api):
    """COCO mAP of the version's box predictions against the box labels (same ?slice_id=&splits= scope)."""

    query_serializers = {"get": ScopeInputSerializer}

    @extend_schema(responses={200: DetectionMetricsSerializer})
    def get(self, request, project_id: int, model_version_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        model_version = model_version_get(project=project, model_version_id=model_version_id)
        metrics = detection_map(model_version=model_version, scope=_scope(project, self.query))
        return Response(DetectionMetricsSerializer(metrics).data)


class ModelVersionCompareApi(Api):
    class InputSerializer(ScopeInputSerializer):
        baseline_id = serializers.IntegerField()
        candidate_id = serializers.IntegerField()
        disagreement_slice_name = serializers.CharField(max_length=200)

    @extend_schema(request=InputSerializer, responses={201: ComparisonOutputSerializer})
    def post(self, request, project_id: int):
        """Per-class deltas (candidate minus baseline) and a new ids slice of the datarows where top-1 differ."""
        project = project_get(principal=request.user, project_id=project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with referenced_by("baseline_id"):
            baseline = model_version_get(project=project, model_version_id=data.validated_data["baseline_id"])
        with referenced_by("candidate_id"):
            candidate = model_version_get(project=project, model_version_id=data.validated_data["candidate_id"])
        comparison, disagreements = model_versions_compare(
            principal=request.user,
            baseline=baseline,
            candidate=candidate,
            scope=_scope(project, data.validated_data),
            disagreement_slice_name=data.validated_data["disagreement_slice_name"],
        )
        return Response(
            ComparisonOutputSerializer({**comparison, "disagreement_slice": disagreements}).data,
            status=status.HTTP_201_CREATED,
        )


class PredictionRunListStartApi(Api):
    query_serializers = {"get": CursorPageQuerySerializer}

    class InputSerializer(ScopeInputSerializer):
        """What to predict: a slice (and some of its splits, as metrics take them) or a whole dataset."""

        model_version_id = serializers.IntegerField()
        dataset_id = serializers.IntegerField(required=False, min_value=1)
        top_k = serializers.IntegerField(
            min_value=1,
            default=5,
            help_text="A classifier's best classes per datarow; a detector's most boxes per image.",
        )
        score_threshold = serializers.FloatField(
            min_value=0, max_value=1, default=0.0, help_text="A detector keeps the boxes scoring at least this."
        )
        batch_size = serializers.IntegerField(min_value=1, max_value=4096, default=64)

    @extend_schema(responses={200: page_of(PredictionRunOutputSerializer)})
    def get(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        return self.page_response(prediction_run_list(project=project), PredictionRunOutputSerializer)

    @extend_schema(
        request=InputSerializer,
        responses={202: PredictionRunOutputSerializer},
        examples=[
            OpenApiExample(
                "Predict a slice's test split",
                request_only=True,
                value={"model_version_id": 3, "slice_id": 12, "splits": ["test"], "top_k": 5},
            )
        ],
    )
    def post(self, request, project_id: int):
        """202 with the queued run: follow its job on ws/jobs/<job id>/."""
        project = project_get(principal=request.user, project_id=project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        options = data.validated_data
        with referenced_by("model_version_id"):
            model_version = model_version_get(project=project, model_version_id=options["model_version_id"])
        with referenced_by("slice_id"):
            slice = slice_get(project=project, slice_id=options["slice_id"]) if "slice_id" in options else None
        with referenced_by("dataset_id"):
            dataset = (
                dataset_get(project=project, dataset_id=options["dataset_id"]) if "dataset_id" in options else None
            )
        prediction_run = prediction_run_start(
            principal=request.user,
            model_version=model_version,
            slice=slice,
            splits=split_values(options.get("splits", [])),
            dataset=dataset,
            top_k=options["top_k"],
            batch_size=options["batch_size"],
            score_threshold=options["score_threshold"],
        )
        return Response(PredictionRunOutputSerializer(prediction_run).data, status=status.HTTP_202_ACCEPTED)


class PredictionRunDetailApi(Api):
    @extend_schema(responses={200: PredictionRunOutputSerializer})
    def get(self, request, project_id: int, prediction_run_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        return Response(
            PredictionRunOutputSerializer(prediction_run_get(project=project, prediction_run_id=prediction_run_id)).data
        )


class SelectionCreateApi(Api):
    class InputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=200)
        strategy = serializers.ChoiceField(
            choices=(*STRATEGIES, *BOX_STRATEGIES),
            help_text="A classifier's run: least_confidence, margin, entropy, disagreement (with ground truth). "
            "A detector's: box_least_confidence (1 - the best box's score), box_entropy (the mean binary entropy "
            "of the boxes scoring at least score_floor), box_disagreement (1 - the mean best same-class IoU between "
            "the run's boxes and other_model_version_id's). Either: random (by seed).",
        )
        k = serializers.IntegerField(min_value=1, max_value=MAX_ID)
        seed = serializers.IntegerField(default=0)
        pool_slice_id = serializers.IntegerField(required=False)
        unlabeled_only = serializers.BooleanField(default=False)
        score_floor = serializers.FloatField(
            min_value=0, max_value=1, default=0.05, help_text="box_entropy and box_disagreement leave out boxes below."
        )
        other_model_version_id = serializers.IntegerField(
            required=False, min_value=1, max_value=MAX_ID, help_text="box_disagreement's other version (required)."
        )

    @extend_schema(
        request=InputSerializer,
        responses={201: SliceSummaryOutputSerializer},
        examples=[
            OpenApiExample(
                "The 100 least confident",
                request_only=True,
                value={"name": "review batch 1", "strategy": "least_confidence", "k": 100, "unlabeled_only": True},
            ),
            OpenApiExample(
                "Where two detectors disagree most",
                request_only=True,
                value={"name": "boxes to check", "strategy": "box_disagreement", "k": 50, "other_model_version_id": 2},
            ),
        ],
    )
    def post(self, request, project_id: int, prediction_run_id: int):
        """201 with the new ids slice of the k datarows the strategy picks from the run's predictions."""
        project = project_get(principal=request.user, project_id=project_id)
        prediction_run = prediction_run_get(project=project, prediction_run_id=prediction_run_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        options = data.validated_data
        with referenced_by("pool_slice_id"):
            pool = slice_get(project=project, slice_id=options["pool_slice_id"]) if "pool_slice_id" in options else None
        with referenced_by("other_model_version_id"):
            other = (
                model_version_get(project=project, model_version_id=options["other_model_version_id"])
                if "other_model_version_id" in options
                else None
            )
        selected = selection_create(
            principal=request.user,
            prediction_run=prediction_run,
            name=options["name"],
            pool_slice=pool,
            selection=Selection(
                strategy=options["strategy"],
                k=options["k"],
                seed=options["seed"],
                pool_slice_id=pool.pk if pool else None,
                unlabeled_only=options["unlabeled_only"],
                score_floor=options["score_floor"],
                other_model_version_id=other.pk if other else None,
            ),
        )
        return Response(SliceSummaryOutputSerializer(selected).data, status=status.HTTP_201_CREATED)
