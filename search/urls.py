from django.urls import path

from search.apis import ProjectSearchReindexApi, ProjectSearchStatisticsApi
from search.bulk_apis import SearchBulkActionApi

# Under api/v1/projects/<id>/search/ (the search itself is .../search, routed beside this include).
urlpatterns = [
    path("reindex", ProjectSearchReindexApi.as_view(), name="project-search-reindex"),
    path("bulk", SearchBulkActionApi.as_view(), name="project-search-bulk"),
    path("statistics", ProjectSearchStatisticsApi.as_view(), name="project-search-statistics"),
]
