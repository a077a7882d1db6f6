from django.urls import path

from training.apis import (
    ModelDefinitionDetailApi,
    ModelDefinitionListCreateApi,
    TrainingRunDetailApi,
    TrainingRunListStartApi,
    TrainingRunLogsApi,
)

urlpatterns = [
    path("models", ModelDefinitionListCreateApi.as_view(), name="model-list"),
    path("models/<int:model_id>", ModelDefinitionDetailApi.as_view(), name="model-detail"),
    path("models/<int:model_id>/runs", TrainingRunListStartApi.as_view(), name="training-run-list"),
    path("training-runs/<int:run_id>", TrainingRunDetailApi.as_view(), name="training-run-detail"),
    path("training-runs/<int:run_id>/logs", TrainingRunLogsApi.as_view(), name="training-run-logs"),
]
