"""The REST contract: the schema generated from the code is valid, complete and committed; the docs work offline;
unknown keys and query parameters are refused by name, with every other error of the request."""

import re
from pathlib import Path

import pytest
from django.core.management import call_command

COMMITTED = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
REGENERATE = "MLOPS_ENV=test .venv/bin/python manage.py spectacular --file docs/openapi.yaml"


def _generate(tmp_path, *flags) -> str:
    target = tmp_path / "openapi.yaml"
    call_command("spectacular", "--file", str(target), *flags)
    return target.read_text()


def test_the_schema_validates_without_a_warning(tmp_path):
    _generate(tmp_path, "--validate", "--fail-on-warn")


def test_the_committed_schema_is_the_codes(tmp_path):
    assert _generate(tmp_path) == COMMITTED.read_text(), (
        f"docs/openapi.yaml differs from the schema the code generates: the API contract changed. "
        f"Regenerate it with `{REGENERATE}` and commit it, so the change shows in review."
    )


def test_every_operation_documents_its_bodies_errors_and_security(api_client):
    schema = api_client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert set(schema["components"]["schemas"]["Error"]["properties"]) == {"message", "extra"}
    operations = [
        (path, method, operation) for path, item in schema["paths"].items() for method, operation in item.items()
    ]
    assert len({operation["operationId"] for _, _, operation in operations}) == len(operations)
    for path, method, operation in operations:
        responses = operation["responses"]
        success = [code for code in responses if code.startswith("2")]
        assert success, (path, method)
        assert all(
            responses[code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
            for code in ("400", "401", "403", "429")
        ), (path, method)
        assert "404" in responses or "{" not in path
        if method in ("post", "patch") and not path.endswith(("/cancel", "/reindex")):
            assert "requestBody" in operation, (path, method)
        assert operation["security"] and len(operation["tags"]) == 1
    imports = schema["paths"]["/api/v1/projects/{project_id}/datasets/{dataset_id}/imports"]["post"]
    assert set(imports["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert "202" in imports["responses"]


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_the_docs_load_only_this_servers_own_files(api_client, path):
    # given
    client = api_client()
    page = client.get(path)
    assert page.status_code == 200
    html = page.content.decode()
    # then: no CDN; every script, style and icon is a static file of this server, and it is served (DEBUG off)
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls and not [url for url in urls if "//" in url]
    for url in [url for url in urls if url.startswith("/static/")]:
        response = client.get(url)
        assert response.status_code == 200, url
        b"".join(response.streaming_content if response.streaming else [response.content])
    assert "/static/drf_spectacular_sidecar/" in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/v1/projects/", {"limit": 2}),
        ("/api/v1/jobs/", {"pagesize": 2}),
        ("/api/v1/projects/{project}/datasets/", {"offset": 10}),
        ("/api/v1/projects/{project}", {"expand": "datasets"}),
    ],
)
def test_an_unknown_query_parameter_is_a_400_naming_it(make_token, api_client, path, query):
    client = api_client(make_token())
    project = client.post("/api/v1/projects/", {"name": "p"}).json()["id"]
    response = client.get(path.format(project=project), query)
    assert response.status_code == 400, response.content
    assert list(response.json()["extra"]["fields"]) == list(query)


@pytest.mark.django_db
def test_a_bad_query_parameter_is_a_400_and_a_list_pages_by_next_cursor(make_token, api_client):
    client = api_client(make_token(workspace="ws-cursor"))
    for name in "abc":
        client.post("/api/v1/projects/", {"name": name})
    first = client.get("/api/v1/projects/", {"page_size": 2}).json()
    second = client.get("/api/v1/projects/", {"page_size": 2, "cursor": first["next_cursor"]}).json()
    assert [p["name"] for p in first["results"] + second["results"]] == ["c", "b", "a"]
    assert second["next_cursor"] is None
    assert set(client.get("/api/v1/projects/", {"page_size": 0, "cursor": "x"}).json()["extra"]["fields"]) == {
        "page_size"
    }
    assert client.get("/api/v1/projects/", {"cursor": "not-ours"}).json()["extra"]["fields"] == {
        "cursor": ["Not a cursor from this API; pass next_cursor as it was given."]
    }


@pytest.mark.django_db
def test_unknown_body_keys_come_back_with_every_other_error_at_once(make_token, api_client):
    client = api_client(make_token())
    # when: a misspelt key, a missing field and a bad value in one request
    response = client.post("/api/v1/projects/", {"descripton": "x", "name": ""})
    project = client.post("/api/v1/projects/", {"name": "p"}).json()["id"]
    slice_ = client.post(
        f"/api/v1/projects/{project}/slices/",
        {"name": "s", "kind": "sideways", "querry": "tags = 'a'", "datarow_ids": ["x"]},
    )
    dataset = client.patch(f"/api/v1/projects/{project}", {"name": "q", "owner": "me"})
    # then
    assert response.status_code == 400
    fields = response.json()["extra"]["fields"]
    assert set(fields) == {"descripton", "name"} and "Unknown field" in fields["descripton"][0]
    assert slice_.status_code == 400 and set(slice_.json()["extra"]["fields"]) == {"kind", "querry", "datarow_ids"}
    assert dataset.status_code == 400 and list(dataset.json()["extra"]["fields"]) == ["owner"]
    assert client.get(f"/api/v1/projects/{project}").json()["name"] == "p"  # nothing half-written
