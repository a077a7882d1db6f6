from django.urls import path

from projects.apis import ProjectDetailApi, ProjectListCreateApi

urlpatterns = [
    path("", ProjectListCreateApi.as_view(), name="project-list"),
    path("<int:project_id>", ProjectDetailApi.as_view(), name="project-detail"),
]
