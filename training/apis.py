from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from jobs.serializers import RunOutputSerializer
from mlops.apis import Api
from mlops.exceptions import referenced_by
from mlops.serializers import CursorPageQuerySerializer, StrictSerializer, page_of
from projects.selectors import project_get
from slices.selectors import slice_get
from training.models import ModelDefinition
from training.selectors import model_definition_get, model_definition_list, training_run_get, training_run_list
from training.services import SPLIT_NAMES, model_definition_create, training_run_start


class ModelDefinitionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project_id = serializers.IntegerField()
    name = serializers.CharField()
    task = serializers.CharField()
    trainer = serializers.CharField()
    hyperparameters = serializers.JSONField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()


class TrainingRunOutputSerializer(RunOutputSerializer):
    model_id = serializers.IntegerField()
    number = serializers.IntegerField()
    train_splits = serializers.JSONField()
    validation_splits = serializers.JSONField()
    config = serializers.JSONField()
    classes = serializers.SerializerMethodField()
    train_examples = serializers.IntegerField()
    validation_examples = serializers.IntegerField()
    epochs = serializers.JSONField()
    device = serializers.CharField()
    artifact_uri = serializers.CharField()
    artifact_files = serializers.JSONField()
    error = serializers.CharField()
    model_version_id = serializers.SerializerMethodField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_classes(self, run) -> list[str]:
        return [name for _, name in run.classes]

    def get_model_version_id(self, run) -> int | None:
        version = getattr(run, "model_version", None)
        return version.pk if version else None


class TrainingRunLogsOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField(source="job.status")
    logs = serializers.CharField()
    error = serializers.CharField()


class ModelDefinitionListCreateApi(Api):
    class InputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=200)
        task = serializers.ChoiceField(
            choices=ModelDefinition.Task.choices,
            required=False,
            help_text="Defaults to the trainer's task (a detector's is detection).",
        )
        trainer = serializers.CharField(max_length=300, default="image-classifier")
        hyperparameters = serializers.DictField(default=dict)

    query_serializers = {"get": CursorPageQuerySerializer}

    @extend_schema(responses={200: page_of(ModelDefinitionOutputSerializer)})
    def get(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        return self.page_response(model_definition_list(project=project), ModelDefinitionOutputSerializer)

    @extend_schema(
        request=InputSerializer,
        responses={201: ModelDefinitionOutputSerializer},
        examples=[
            OpenApiExample(
                "An image classifier",
                request_only=True,
                value={
                    "name": "digits",
                    "task": "classification",
                    "trainer": "image-classifier",
                    "hyperparameters": {"epochs": 5, "batch_size": 32, "learning_rate": 0.001, "image_size": 64},
                },
            )
        ],
    )
    def post(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        model = model_definition_create(principal=request.user, project=project, **data.validated_data)
        return Response(ModelDefinitionOutputSerializer(model).data, status=status.HTTP_201_CREATED)


class ModelDefinitionDetailApi(Api):
    @extend_schema(responses={200: ModelDefinitionOutputSerializer})
    def get(self, request, project_id: int, model_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        return Response(ModelDefinitionOutputSerializer(model_definition_get(project=project, model_id=model_id)).data)


class TrainingRunListStartApi(Api):
    class InputSerializer(StrictSerializer):
        slice_id = serializers.IntegerField()
        train_splits = serializers.ListField(
            child=serializers.ChoiceField(choices=list(SPLIT_NAMES)), default=["train"], allow_empty=False
        )
        validation_splits = serializers.ListField(
            child=serializers.ChoiceField(choices=list(SPLIT_NAMES)), default=["validation"]
        )
        config = serializers.DictField(default=dict)

    query_serializers = {"get": CursorPageQuerySerializer}

    @extend_schema(responses={200: page_of(TrainingRunOutputSerializer)})
    def get(self, request, project_id: int, model_id: int):
        model = model_definition_get(
            project=project_get(principal=request.user, project_id=project_id), model_id=model_id
        )
        return self.page_response(training_run_list(model=model), TrainingRunOutputSerializer)

    @extend_schema(
        request=InputSerializer,
        responses={202: TrainingRunOutputSerializer},
        examples=[
            OpenApiExample(
                "Train on a split slice",
                request_only=True,
                value={
                    "slice_id": 12,
                    "train_splits": ["train"],
                    "validation_splits": ["validation"],
                    "config": {"epochs": 10, "learning_rate": 0.0005},
                },
            )
        ],
    )
    def post(self, request, project_id: int, model_id: int):
        """202 with the queued run: follow its job on ws/jobs/<job id>/, cancel it with POST jobs/<id>/cancel."""
        project = project_get(principal=request.user, project_id=project_id)
        model = model_definition_get(project=project, model_id=model_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        options = data.validated_data
        with referenced_by("slice_id"):
            slice = slice_get(project=project, slice_id=options["slice_id"])
        run = training_run_start(
            principal=request.user,
            model=model,
            slice=slice,
            train_splits=options["train_splits"],
            validation_splits=options["validation_splits"],
            config_overrides=options["config"],
        )
        return Response(TrainingRunOutputSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailApi(Api):
    @extend_schema(responses={200: TrainingRunOutputSerializer})
    def get(self, request, project_id: int, run_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        return Response(TrainingRunOutputSerializer(training_run_get(project=project, run_id=run_id)).data)


class TrainingRunLogsApi(Api):
    @extend_schema(responses={200: TrainingRunLogsOutputSerializer})
    def get(self, request, project_id: int, run_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        return Response(TrainingRunLogsOutputSerializer(training_run_get(project=project, run_id=run_id)).data)
