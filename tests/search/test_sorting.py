"""Sorts on the PostgreSQL engine through REST: every page of every sort, in both directions, is exactly the
Python-sorted reference (the sort key as docs/query-language.md defines it, missing values last, id breaking ties)."""

import pytest

from search.engines import reference
from search.engines.elasticsearch_documents import is_of_type
from search.ql import parse, validate
from search.ql.validation import parse_datetime
from tests.conftest import TENANT_A

pytestmark = pytest.mark.django_db(databases=["default", "reader"])

SORTS = [
    {"sort": "id"},
    {"sort": "created_at"},
    {"sort": "metadata.capture.time"},
    {"sort": "metadata.capture.gps.lat"},
    {"sort": "metadata.weather"},
    {"sort": "metadata.night"},
    {"sort": "metadata.people.age"},
    {"sort": "prediction.score", "sort_model": "yolo@1"},
    {"sort": "prediction.score", "sort_model": "detr@1", "sort_class": "vehicle/car"},
]
QUERIES = ["", "metadata.weather != 'rain' OR label(class UNDER 'vehicle')"]


def sort_value(row: dict, body: dict, catalog: dict[str, str]):
    """The reference sort key of a row: None when it has none."""
    field = body["sort"].removeprefix("-")
    if field == "id":
        return None
    if field == "created_at":
        return row["created_at"]
    if field == "prediction.score":
        scores = [
            p["score"]
            for p in row["predictions"]
            if p["model"] == body["sort_model"] and body.get("sort_class") in (None, p["class"])
        ]
        return max(scores, default=None)
    path = field.removeprefix("metadata.")
    kind = catalog[path]
    values = reference.json_values(row["metadata"], tuple(path.split(".")))
    if kind == "datetime":
        typed = [moment for moment in (parse_datetime(v) for v in values if isinstance(v, str)) if moment]
    else:
        typed = [v for v in values if is_of_type(v, kind)]
    return min(typed, default=None)


def reference_order(rows: list[dict], body: dict, catalog: dict[str, str]) -> list[int]:
    descending = body["sort"].startswith("-")
    keyed = [(sort_value(row, body, catalog), row["id"]) for row in rows]
    present = sorted((item for item in keyed if item[0] is not None), reverse=descending)
    missing = sorted((item for item in keyed if item[0] is None), reverse=descending)
    return [row_id for _, row_id in present + missing]


def walk(client, project_id: int, body: dict) -> list[int]:
    ids, cursor = [], None
    while True:
        response = client.post(
            f"/api/v1/projects/{project_id}/search", {**body, **({"cursor": cursor} if cursor else {})}, format="json"
        )
        assert response.status_code == 200, response.content
        ids += [row["id"] for row in response.json()["results"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return ids


@pytest.fixture
def client(search_data, make_token, api_client):
    return api_client(make_token(TENANT_A))


def _matching(search_data, text: str) -> list[dict]:
    if not text:
        return search_data.rows
    ids = set(reference.datarow_ids(validate(parse(text), catalog=search_data.catalog, text=text), search_data.rows))
    return [row for row in search_data.rows if row["id"] in ids]


@pytest.mark.parametrize("text", QUERIES)
@pytest.mark.parametrize("body", SORTS, ids=lambda body: "-".join(body.values()))
@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
def test_every_page_in_either_direction_is_the_reference_order(body, descending, text, search_data, client):
    body = {**body, "sort": ("-" if descending else "") + body["sort"], "query": text, "page_size": 7}
    expected = reference_order(_matching(search_data, text), body, search_data.catalog)
    assert walk(client, search_data.project_id, body) == expected


def test_sorts_have_rows_without_a_value_and_ties(search_data):
    with_ties = 0
    for body in SORTS[2:]:
        values = [sort_value(row, body, search_data.catalog) for row in search_data.rows]
        present = [value for value in values if value is not None]
        assert None in values and present, body
        with_ties += len(set(present)) < len(present)
    assert with_ties >= len(SORTS[2:]) - 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sort": "metadata.nope"}, "sort"),
        ({"sort": "width"}, "sort"),
        ({"sort": "prediction.score"}, "sort"),
        ({"sort": "id", "sort_model": "yolo@1"}, "sort"),
        ({"sort": "metadata.capture.time", "cursor": "WyJpZCIsbnVsbCwxXQ"}, "cursor"),  # a cursor of the id sort
    ],
)
def test_bad_sorts_are_a_400_naming_the_field(body, field, search_data, client):
    response = client.post(f"/api/v1/projects/{search_data.project_id}/search", body, format="json")
    assert response.status_code == 400 and response.json()["extra"]["fields"][field], response.content


def test_a_cursor_value_of_the_wrong_type_is_a_400(search_data, client):
    import base64
    import json

    for forged in [
        ["metadata.capture.gps.lat", "north", 3],
        ["metadata.capture.time", 5, 3],
        ["prediction.score", True, 3, "yolo@1", None],
        ["created_at", None, 3],
    ]:
        body = {"sort": forged[0], "cursor": base64.urlsafe_b64encode(json.dumps(forged).encode()).decode()}
        if len(forged) > 3:
            body["sort_model"] = forged[3]
        response = client.post(f"/api/v1/projects/{search_data.project_id}/search", body, format="json")
        assert response.status_code == 400 and response.json()["extra"]["fields"]["cursor"], forged
