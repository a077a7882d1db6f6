from django.urls import path

from predictions.apis import (
    ModelVersionCompareApi,
    ModelVersionDetailApi,
    ModelVersionDetectionMetricsApi,
    ModelVersionListApi,
    ModelVersionMetricsApi,
    PredictionRunDetailApi,
    PredictionRunListStartApi,
    SelectionCreateApi,
)

urlpatterns = [
    path("model-versions", ModelVersionListApi.as_view(), name="model-version-list"),
    path("model-versions/compare", ModelVersionCompareApi.as_view(), name="model-version-compare"),
    path("model-versions/<int:model_version_id>", ModelVersionDetailApi.as_view(), name="model-version-detail"),
    path(
        "model-versions/<int:model_version_id>/metrics", ModelVersionMetricsApi.as_view(), name="model-version-metrics"
    ),
    path(
        "model-versions/<int:model_version_id>/detection-metrics",
        ModelVersionDetectionMetricsApi.as_view(),
        name="model-version-detection-metrics",
    ),
    path("prediction-runs", PredictionRunListStartApi.as_view(), name="prediction-run-list"),
    path("prediction-runs/<int:prediction_run_id>", PredictionRunDetailApi.as_view(), name="prediction-run-detail"),
    path("prediction-runs/<int:prediction_run_id>/selections", SelectionCreateApi.as_view(), name="selection-create"),
]
