from django.urls import path

from jobs.apis import JobCancelApi, JobDetailApi, JobListStartApi

urlpatterns = [
    path("", JobListStartApi.as_view(), name="job-list"),
    path("<uuid:job_id>", JobDetailApi.as_view(), name="job-detail"),
    path("<uuid:job_id>/cancel", JobCancelApi.as_view(), name="job-cancel"),
]
