from django.urls import path

from evaluations.review_apis import EvaluationRunCompareApi, EvaluationRunReviewQueueApi

urlpatterns = [
    path("evaluation-runs/compare", EvaluationRunCompareApi.as_view(), name="evaluation-run-compare"),
    path(
        "evaluation-runs/<int:evaluation_run_id>/review-queue",
        EvaluationRunReviewQueueApi.as_view(),
        name="evaluation-run-review-queue",
    ),
]
