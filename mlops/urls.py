from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from datasets.apis.ontology import ObjectAttributeListDeclareApi, OntologyClassListCreateApi
from search.apis import ProjectSearchApi

urlpatterns = [
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path(
        "api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="redoc_offline.html"), name="redoc"
    ),
    path("api/v1/platform/", include("tenancy.urls")),
    path("api/v1/projects/", include("projects.urls")),
    path("api/v1/projects/<int:project_id>/datasets/", include("datasets.urls")),
    path("api/v1/projects/<int:project_id>/ontology", OntologyClassListCreateApi.as_view(), name="ontology"),
    path(
        "api/v1/projects/<int:project_id>/ontology/attributes",
        ObjectAttributeListDeclareApi.as_view(),
        name="ontology-attributes",
    ),
    path("api/v1/jobs/", include("jobs.urls")),
    path("api/v1/projects/<int:project_id>/search", ProjectSearchApi.as_view(), name="project-search"),
    path("api/v1/projects/<int:project_id>/search/", include("search.urls")),
    path("api/v1/projects/<int:project_id>/slices/", include("slices.urls")),
    path("api/v1/projects/<int:project_id>/", include("training.urls")),
    path("api/v1/projects/<int:project_id>/", include("predictions.urls")),
    path("api/v1/projects/<int:project_id>/", include("evaluations.urls")),
]

# Unexpected errors answer {"message", "extra": {"request_id"}}, like every other error, not Django's HTML page.
handler500 = "mlops.exception_handler.server_error"
handler404 = "mlops.exception_handler.not_found"
