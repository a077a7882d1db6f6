"""Browsers may call the API from the frontend's origins only, and every answer carries the security headers."""

import pytest

from tests.conftest import TENANT_A

FRONTEND = "https://app.example.com"


@pytest.fixture
def frontend_origin(settings):
    settings.CORS_ALLOWED_ORIGINS = [FRONTEND]


def preflight(client, path: str, origin: str):
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )


@pytest.mark.usefixtures("frontend_origin")
def test_a_preflight_from_the_frontend_may_send_the_bearer_token():
    from django.test import Client

    response = preflight(Client(), "/api/v1/projects/", FRONTEND)

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == FRONTEND
    assert {"authorization", "content-type"} <= set(response["Access-Control-Allow-Headers"].split(", "))
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response


@pytest.mark.usefixtures("frontend_origin")
@pytest.mark.parametrize(
    ("path", "origin"),
    [
        ("/api/v1/projects/", "https://evil.example"),
        ("/api/v1/projects/", "http://app.example.com"),
        # outside the API nothing is shared, not even with the frontend
        ("/healthz", FRONTEND),
    ],
)
def test_a_preflight_from_another_origin_or_outside_the_api_gets_no_cors_headers(path, origin):
    from django.test import Client

    response = preflight(Client(), path, origin)

    assert not [header for header in response.headers if header.lower().startswith("access-control-")]


@pytest.mark.django_db
@pytest.mark.usefixtures("frontend_origin")
def test_an_api_response_carries_the_security_headers_and_exposes_the_request_id(make_token, api_client):
    response = api_client(make_token(TENANT_A)).get("/api/v1/projects/", HTTP_ORIGIN=FRONTEND)

    assert response.status_code == 200, response.content
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Access-Control-Allow-Origin"] == FRONTEND
    assert response["Access-Control-Expose-Headers"] == "X-Request-ID"
