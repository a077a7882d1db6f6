from django.urls import path

from evaluations.apis import EvaluationRunDetailApi, EvaluationRunListStartApi, ObjectMatchListApi
from evaluations.review_apis import EvaluationRunCompareApi, EvaluationRunReviewQueueApi

urlpatterns = [
    path("evaluation-runs", EvaluationRunListStartApi.as_view(), name="evaluation-run-list"),
    path("evaluation-runs/compare", EvaluationRunCompareApi.as_view(), name="evaluation-run-compare"),
    path("evaluation-runs/<int:evaluation_run_id>", EvaluationRunDetailApi.as_view(), name="evaluation-run-detail"),
    path(
        "evaluation-runs/<int:evaluation_run_id>/matches", ObjectMatchListApi.as_view(), name="evaluation-run-matches"
    ),
    path(
        "evaluation-runs/<int:evaluation_run_id>/review-queue",
        EvaluationRunReviewQueueApi.as_view(),
        name="evaluation-run-review-queue",
    ),
]
