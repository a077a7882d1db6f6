from django.urls import path

from search.apis import ProjectSearchApi

urlpatterns = [
    path("", ProjectSearchApi.as_view(), name="project-search"),
]
