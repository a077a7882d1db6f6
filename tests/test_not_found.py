"""Unknown paths answer the API's error shape, 404, not Django's HTML page: under /api/ and elsewhere."""

import pytest

from tests.conftest import TENANT_A


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/api/v1/no-such-thing/", "/api/v1/projects/1/no-such-thing", "/api/nope", "/no-such-page"]
)
def test_an_unknown_path_is_a_json_404(make_token, api_client, path):
    # when
    response = api_client(make_token(TENANT_A)).get(path)
    # then
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"message": f"Not found: nothing answers GET {path}.", "extra": {"path": path}}
