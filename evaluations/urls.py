from django.urls import path

from evaluations.apis import EvaluationRunDetailApi, EvaluationRunListStartApi, ObjectMatchListApi

urlpatterns = [
    path("evaluation-runs", EvaluationRunListStartApi.as_view(), name="evaluation-run-list"),
    path("evaluation-runs/<int:evaluation_run_id>", EvaluationRunDetailApi.as_view(), name="evaluation-run-detail"),
    path(
        "evaluation-runs/<int:evaluation_run_id>/matches", ObjectMatchListApi.as_view(), name="evaluation-run-matches"
    ),
]
