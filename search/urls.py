from django.urls import path

from search.apis import ProjectSearchApi
from search.bulk_apis import SearchBulkActionApi

urlpatterns = [
    path("", ProjectSearchApi.as_view(), name="project-search"),
    # A trailing slash: the include has none, and a route that only starts with one fails the URL checks.
    path("/bulk/", SearchBulkActionApi.as_view(), name="project-search-bulk"),
]
