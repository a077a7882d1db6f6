from django.urls import path

from search.apis import ProjectSearchApi
from search.bulk_apis import SearchBulkActionApi

urlpatterns = [
    path("", ProjectSearchApi.as_view(), name="project-search"),
    path("/bulk", SearchBulkActionApi.as_view(), name="project-search-bulk"),
]
