from django.urls import path

from search.apis import ProjectSearchApi, ProjectSearchReindexApi

urlpatterns = [
    path("", ProjectSearchApi.as_view(), name="project-search"),
    path("/reindex", ProjectSearchReindexApi.as_view(), name="project-search-reindex"),
]
