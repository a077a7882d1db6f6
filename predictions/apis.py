from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets.selectors import dataset_get
from jobs.serializers import JobOutputSerializer
from mlops.pagination import CreatedCursorPagination
from predictions.metrics import Scope, classification_metrics, detection_map
from predictions.selection import STRATEGIES, Selection
from predictions.selectors import model_version_get, model_version_list, prediction_run_get, prediction_run_list
from predictions.services import model_versions_compare, prediction_run_start, selection_create
from projects.selectors import project_get
from slices.models import Split
from slices.selectors import slice_get

SPLIT_CHOICES = [split.label for split in Split]


class ModelVersionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project_id = serializers.IntegerField()
    name = serializers.CharField()
    version = serializers.CharField()
    training_run_id = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class PredictionRunOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    model_version_id = serializers.IntegerField()
    status = serializers.CharField(source="job.status")
    job = JobOutputSerializer()
    slice_id = serializers.IntegerField(allow_null=True)
    dataset_id = serializers.IntegerField(allow_null=True)
    top_k = serializers.IntegerField()
    score_threshold = serializers.FloatField()
    batch_size = serializers.IntegerField()
    datarow_count = serializers.IntegerField()
    prediction_count = serializers.IntegerField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()


class SliceSummaryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    description = serializers.CharField()
    member_count = serializers.IntegerField(allow_null=True)


class ScopeInputSerializer(serializers.Serializer):
    """Score only a slice's members (and, optionally, some of its splits), e.g. a fixed held-out test split."""

    slice_id = serializers.IntegerField(required=False)
    splits = serializers.ListField(child=serializers.ChoiceField(choices=SPLIT_CHOICES), required=False)

    def validate(self, data):
        if data.get("splits") and "slice_id" not in data:
            raise serializers.ValidationError({"splits": ["Splits need a slice_id."]})
        return data

    def scope(self, project) -> Scope:
        data = self.validated_data
        if "slice_id" not in data:
            return Scope()
        slice = slice_get(project=project, slice_id=data["slice_id"])
        return Scope(slice_id=slice.pk, splits=tuple(Split[name.upper()].value for name in data.get("splits", [])))


def _query_scope(request, project) -> Scope:
    params = request.query_params
    query = ScopeInputSerializer(data={**({"slice_id": params["slice_id"]} if "slice_id" in params else {}),
                                       **({"splits": params.getlist("splits")} if "splits" in params else {})})
    query.is_valid(raise_exception=True)
    return query.scope(project)


class ModelVersionListApi(APIView):
    def get(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        paginator = CreatedCursorPagination()
        page = paginator.paginate_queryset(model_version_list(project=project), request, view=self)
        return paginator.get_paginated_response(ModelVersionOutputSerializer(page, many=True).data)


class ModelVersionDetailApi(APIView):
    def get(self, request, project_id: int, model_version_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        return Response(ModelVersionOutputSerializer(
            model_version_get(project=project, model_version_id=model_version_id)).data)


class ModelVersionMetricsApi(APIView):
    """Classification metrics against the labels: ?slice_id=&splits=test restricts them to a slice's split."""

    def get(self, request, project_id: int, model_version_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        model_version = model_version_get(project=project, model_version_id=model_version_id)
        return Response(classification_metrics(model_version=model_version, scope=_query_scope(request, project)))


class ModelVersionDetectionMetricsApi(APIView):
    """COCO mAP of the version's box predictions against the box labels (same ?slice_id=&splits= scope)."""

    def get(self, request, project_id: int, model_version_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        model_version = model_version_get(project=project, model_version_id=model_version_id)
        return Response(detection_map(model_version=model_version, scope=_query_scope(request, project)))


class ModelVersionCompareApi(APIView):
    class InputSerializer(ScopeInputSerializer):
        baseline_id = serializers.IntegerField()
        candidate_id = serializers.IntegerField()
        disagreement_slice_name = serializers.CharField(max_length=200)

    def post(self, request, project_id: int):
        """Per-class deltas (candidate minus baseline) and a new ids slice of the datarows where top-1 differ."""
        project = project_get(principal=request.user, project_id=project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        comparison, disagreements = model_versions_compare(
            principal=request.user,
            baseline=model_version_get(project=project, model_version_id=data.validated_data["baseline_id"]),
            candidate=model_version_get(project=project, model_version_id=data.validated_data["candidate_id"]),
            scope=data.scope(project), disagreement_slice_name=data.validated_data["disagreement_slice_name"])
        return Response({**comparison, "disagreement_slice": SliceSummaryOutputSerializer(disagreements).data},
                        status=status.HTTP_201_CREATED)


class PredictionRunListStartApi(APIView):
    class InputSerializer(serializers.Serializer):
        model_version_id = serializers.IntegerField()
        slice_id = serializers.IntegerField(required=False)
        dataset_id = serializers.IntegerField(required=False)
        top_k = serializers.IntegerField(min_value=1, default=5,
                                         help_text="A classifier's best classes per datarow; a detector's most boxes "
                                                   "per image.")
        score_threshold = serializers.FloatField(min_value=0, max_value=1, default=0.0,
                                                 help_text="A detector keeps the boxes scoring at least this.")
        batch_size = serializers.IntegerField(min_value=1, max_value=4096, default=64)

    def get(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        paginator = CreatedCursorPagination()
        page = paginator.paginate_queryset(prediction_run_list(project=project), request, view=self)
        return paginator.get_paginated_response(PredictionRunOutputSerializer(page, many=True).data)

    def post(self, request, project_id: int):
        """202 with the queued run: follow its job on ws/jobs/<job id>/."""
        project = project_get(principal=request.user, project_id=project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        options = data.validated_data
        prediction_run = prediction_run_start(
            principal=request.user,
            model_version=model_version_get(project=project, model_version_id=options["model_version_id"]),
            slice=slice_get(project=project, slice_id=options["slice_id"]) if "slice_id" in options else None,
            dataset=dataset_get(project=project, dataset_id=options["dataset_id"]) if "dataset_id" in options else None,
            top_k=options["top_k"], batch_size=options["batch_size"], score_threshold=options["score_threshold"])
        return Response(PredictionRunOutputSerializer(prediction_run).data, status=status.HTTP_202_ACCEPTED)


class PredictionRunDetailApi(APIView):
    def get(self, request, project_id: int, prediction_run_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        return Response(PredictionRunOutputSerializer(
            prediction_run_get(project=project, prediction_run_id=prediction_run_id)).data)


class SelectionCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        strategy = serializers.ChoiceField(choices=STRATEGIES)
        k = serializers.IntegerField(min_value=1)
        seed = serializers.IntegerField(default=0)
        pool_slice_id = serializers.IntegerField(required=False)
        unlabeled_only = serializers.BooleanField(default=False)

    def post(self, request, project_id: int, prediction_run_id: int):
        """201 with the new ids slice of the k datarows the strategy picks from the run's predictions."""
        project = project_get(principal=request.user, project_id=project_id)
        prediction_run = prediction_run_get(project=project, prediction_run_id=prediction_run_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        options = data.validated_data
        pool = slice_get(project=project, slice_id=options["pool_slice_id"]) if "pool_slice_id" in options else None
        selected = selection_create(
            principal=request.user, prediction_run=prediction_run, name=options["name"], pool_slice=pool,
            selection=Selection(strategy=options["strategy"], k=options["k"], seed=options["seed"],
                                pool_slice_id=pool.pk if pool else None, unlabeled_only=options["unlabeled_only"]))
        return Response(SliceSummaryOutputSerializer(selected).data, status=status.HTTP_201_CREATED)
