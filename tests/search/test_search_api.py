"""POST /api/v1/projects/{id}/search: the engine's answers through REST, keyset pages for every sort, totals,
facets, tenants and roles, and a 400 (never a 500) for any junk."""

import base64
import json
import threading
from collections import Counter

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.ql import parse, validate
from tests.conftest import TENANT_A, TENANT_B
from tests.datasets.conftest import wait_for_reader
from tests.factories import project_make
from tests.search import reference
from tests.search.render import to_text
from tests.search.strategies import queries
from tests.search.test_fuzz import TOKENS

# Reads of the module's committed data. Each test's transaction keeps the router on the writer, which has it;
# test_a_search_reads_from_the_reader steps outside it.
pytestmark = pytest.mark.django_db(databases=["default", "reader"])

QUERIES = [
    "",
    "metadata.capture.gps.lat > 40",
    "tags = 'night' AND NOT tags IN ('city', 'highway')",
    "label(class UNDER 'vehicle' AND area > 1000 AND attributes.occluded = true)",
    "COUNT(label WHERE class = 'person') = 0",
    "prediction(model = 'yolo@1') OR MATCH(metadata.caption, 'red car')",
    "metadata.weather != 'rain'",
    "evaluation(model = 'yolo@1' AND outcome = 'fn') OR COUNT(evaluation WHERE model = 'detr@1' AND iou < 0.5) >= 2",
]
FACETS = [
    "label.class",
    "prediction.class",
    "tags",
    "metadata.weather",
    "metadata.night",
    "metadata.capture.gps.lat",
    "metadata.objects_seen",
    "metadata.people.name",
]


def _url(project_id: int) -> str:
    return f"/api/v1/projects/{project_id}/search"


def _expected_ids(search_data, text: str, dataset_id: int | None = None) -> list[int]:
    rows = [row for row in search_data.rows if dataset_id is None or row["dataset_id"] == dataset_id]
    if not text:
        return sorted(row["id"] for row in rows)
    return reference.datarow_ids(_validated(search_data, text), rows)


def _validated(search_data, text: str):
    return validate(parse(text), catalog=search_data.catalog, text=text, evaluation_runs=search_data.evaluation_runs)


def _walk(client, project_id: int, body: dict) -> tuple[list[dict], int]:
    """Every page of a search; returns its rows and how many pages it took."""
    rows, pages, cursor = [], 0, None
    while True:
        response = client.post(_url(project_id), {**body, **({"cursor": cursor} if cursor else {})}, format="json")
        assert response.status_code == 200, response.content
        pages += 1
        rows += response.json()["results"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return rows, pages


@pytest.fixture
def client(search_data, make_token, api_client):
    return api_client(make_token(TENANT_A))


@pytest.mark.parametrize("text", QUERIES)
def test_results_are_the_engines_ids(text, search_data, postgres_ids, client):
    # when
    rows, _ = _walk(client, search_data.project_id, {"query": text, "page_size": 500})
    # then
    expected = _expected_ids(search_data, text)
    assert [row["id"] for row in rows] == expected
    if text:
        assert postgres_ids(_validated(search_data, text), search_data.project_id) == expected


def test_dataset_narrows_the_search_and_rows_have_the_datarow_list_shape(search_data, client):
    second = search_data.dataset_ids[1]
    body = client.post(
        _url(search_data.project_id), {"query": "uri LIKE 's3://%'", "dataset": second, "page_size": 500}, format="json"
    ).json()
    assert [row["id"] for row in body["results"]] == _expected_ids(search_data, "", second)
    assert set(body["results"][0]) == {
        "id",
        "external_id",
        "uri",
        "media_type",
        "width",
        "height",
        "metadata",
        "tags",
        "created_at",
        "updated_at",
    }
    assert body["total"] == {"value": len(body["results"]), "relation": "eq"}
    assert body["facets"] == {} and isinstance(body["took_ms"], int)
    no_query = client.post(
        _url(search_data.project_id), {"query": None, "dataset": second, "page_size": 500}, format="json"
    ).json()
    assert no_query["results"] == body["results"]


@pytest.mark.parametrize("sort", ["id", "-id", "created_at", "-created_at"])
def test_keyset_pages_walk_every_match_once_in_sort_order(sort, search_data, client):
    text = "metadata.weather != 'rain'"
    # when
    rows, pages = _walk(client, search_data.project_id, {"query": text, "sort": sort, "page_size": 7})
    # then
    by_id = {row["id"]: row for row in search_data.rows}
    expected = sorted(
        _expected_ids(search_data, text),
        key=lambda i: (by_id[i]["created_at"], i) if sort.endswith("created_at") else i,
        reverse=sort.startswith("-"),
    )
    assert [row["id"] for row in rows] == expected
    assert pages == -(-len(expected) // 7) and len(expected) > 7


def test_a_cursor_of_another_sort_or_not_from_the_api_is_a_400(search_data, client):
    first = client.post(_url(search_data.project_id), {"sort": "created_at", "page_size": 3}, format="json").json()
    other_sort = client.post(
        _url(search_data.project_id), {"sort": "id", "cursor": first["next_cursor"]}, format="json"
    )
    assert other_sort.status_code == 400 and other_sort.json()["extra"]["fields"]["cursor"]
    for forged in [
        "not-a-cursor",
        ["created_at", 5, 1],
        ["id", None, -1],
        ["id", None, 2**63],
        ["up", None, 1],
        ["created_at", "yesterday", 1],
        {"id": 1},
    ]:
        text = forged if isinstance(forged, str) else base64.urlsafe_b64encode(json.dumps(forged).encode()).decode()
        response = client.post(_url(search_data.project_id), {"sort": "created_at", "cursor": text}, format="json")
        assert response.status_code == 400 and response.json()["extra"]["fields"]["cursor"], forged
    # a well-formed cursor the API did not make still only moves the keyset
    far = base64.urlsafe_b64encode(json.dumps(["-created_at", "0001-01-01T00:00:00+14:00", 1]).encode()).decode()
    response = client.post(_url(search_data.project_id), {"sort": "-created_at", "cursor": far}, format="json")
    assert response.status_code == 200 and response.json()["results"] == []


def test_estimate_is_exact_up_to_the_cap_and_a_lower_bound_past_it(search_data, client, monkeypatch):
    def total(text: str, count: str) -> dict:
        return client.post(
            _url(search_data.project_id), {"query": text, "count": count, "page_size": 1}, format="json"
        ).json()["total"]

    few, many = "external_id IN ('img-001', 'img-002', 'img-003')", "metadata.weather != 'rain'"
    assert total(many, "estimate") == {"value": len(_expected_ids(search_data, many)), "relation": "eq"}
    # a small cap stands in for 10,000 matching rows
    monkeypatch.setattr("search.selectors.ESTIMATE_CAP", 10)
    assert len(_expected_ids(search_data, many)) > 10
    assert total(many, "estimate") == {"value": 10, "relation": "gte"}
    assert total(many, "exact") == {"value": len(_expected_ids(search_data, many)), "relation": "eq"}
    assert total(few, "estimate") == {"value": 3, "relation": "eq"}


def _metadata_values(value, path: list[str]) -> list:
    """The values at a metadata path as jsonpath's lax mode reaches them: lists are stepped into."""
    if isinstance(value, list):
        return [found for item in value for found in _metadata_values(item, path)]
    if not path:
        return [value]
    return _metadata_values(value[path[0]], path[1:]) if isinstance(value, dict) and path[0] in value else []


def _recount(rows: list[dict], facet: str) -> dict:
    counts = Counter()
    for row in rows:
        if facet == "tags":
            values = row["tags"]
        elif facet in ("label.class", "prediction.class"):
            values = [item["class"] for item in row["labels" if facet == "label.class" else "predictions"]]
        else:
            values = [value for value in _metadata_values(row["metadata"], facet.split(".")[1:]) if value is not None]
        counts.update(set(values))
    return dict(counts)


@pytest.mark.parametrize("text", ["", "label(class UNDER 'vehicle') OR metadata.night = true"])
def test_facets_count_matching_rows_per_value(text, search_data, client):
    # when
    body = client.post(
        _url(search_data.project_id), {"query": text, "facets": FACETS, "page_size": 1}, format="json"
    ).json()
    # then
    matching = set(_expected_ids(search_data, text))
    rows = [row for row in search_data.rows if row["id"] in matching]
    for facet in FACETS:
        expected = _recount(rows, facet)
        assert len(expected) <= 20, facet  # the data has fewer values than one facet shows
        buckets = body["facets"][facet]
        # booleans first: True == 1 as a dict key, so the type goes into the key
        assert {(type(b["value"]) is bool, b["value"]): b["count"] for b in buckets} == {
            (type(value) is bool, value): count for value, count in expected.items()
        }, facet
        assert [b["count"] for b in buckets] == sorted((b["count"] for b in buckets), reverse=True)


def _assert_facets(body: dict, rows: list[dict]) -> None:
    for facet in FACETS:
        expected = _recount(rows, facet)
        # booleans first: True == 1 as a dict key, so the type goes into the key
        assert {(type(b["value"]) is bool, b["value"]): b["count"] for b in body["facets"][facet]} == {
            (type(value) is bool, value): count for value, count in expected.items()
        }, facet


def test_estimate_past_the_cap_counts_facets_over_the_first_matches_and_says_so(search_data, client, monkeypatch):
    # given: a small cap stands in for 10,000 matches
    monkeypatch.setattr("search.selectors.ESTIMATE_CAP", 10)
    text = "metadata.weather != 'rain'"
    matching = sorted(_expected_ids(search_data, text))
    assert len(matching) > 10

    def search(count: str) -> dict:
        return client.post(
            _url(search_data.project_id),
            {"query": text, "count": count, "facets": FACETS, "page_size": 1},
            format="json",
        ).json()

    # when
    estimated, exact = search("estimate"), search("exact")
    # then: the estimate's facets count the first 10 matches by id; the exact call's count every match
    by_id = {row["id"]: row for row in search_data.rows}
    assert estimated["total"] == {"value": 10, "relation": "gte"} and estimated["facets_sampled"] is True
    _assert_facets(estimated, [by_id[row_id] for row_id in matching[:10]])
    assert exact["total"] == {"value": len(matching), "relation": "eq"} and exact["facets_sampled"] is False
    _assert_facets(exact, [by_id[row_id] for row_id in matching])


@pytest.mark.parametrize("facet", ["width", "metadata.capture.time", "metadata.nope", "label.area", "metadata"])
def test_facets_outside_the_facet_fields_are_a_400(facet, search_data, client):
    response = client.post(_url(search_data.project_id), {"facets": [facet]}, format="json")
    assert response.status_code == 400 and response.json()["extra"]["fields"]["facets"]


def test_a_bad_query_is_a_400_that_points_at_it(search_data, client):
    response = client.post(
        _url(search_data.project_id), {"query": "tags = 'x' AND\nmetadata.wether = 'rain'"}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert "metadata.weather" in body["message"]
    assert body["extra"] == {
        "line": 2,
        "column": 1,
        "caret": "metadata.wether = 'rain'\n^",
        "suggestions": ["metadata.weather"],
    }


def test_another_tenant_sees_none_of_the_rows_even_with_their_dataset_id(search_data, make_token, api_client):
    from tenancy.context import tenant_scope

    # given: tenant B has a project in a workspace of the same name
    with tenant_scope(TENANT_B):
        project_b = project_make(created_by="b")
    client_b = api_client(make_token(TENANT_B))
    # when
    own = client_b.post(_url(project_b.pk), {}, format="json")
    with_a_dataset = client_b.post(_url(project_b.pk), {"dataset": search_data.dataset_ids[0]}, format="json")
    at_a_project = client_b.post(_url(search_data.project_id), {"dataset": search_data.dataset_ids[0]}, format="json")
    # then
    assert own.status_code == 200 and own.json()["results"] == [] and own.json()["total"]["value"] == 0
    no_dataset = f"Dataset {search_data.dataset_ids[0]} does not exist in project {project_b.pk}."
    assert (with_a_dataset.status_code, with_a_dataset.json()) == (
        400,
        {"message": no_dataset, "extra": {"fields": {"dataset": [no_dataset]}}},
    )
    # A's project id is no project of B's (a 404 of the URL), or (the ids are per schema) B's own project, which
    # lacks A's dataset (a 400 on the body's field)
    if project_b.pk == search_data.project_id:
        assert (at_a_project.status_code, at_a_project.json()["message"]) == (400, no_dataset)
    else:
        assert (at_a_project.status_code, at_a_project.json()) == (
            404,
            {"message": f"Project {search_data.project_id} does not exist.", "extra": {}},
        )


def test_a_viewer_can_search_and_no_token_cannot(search_data, make_token, api_client):
    viewer = api_client(make_token(TENANT_A, role="viewer"))
    response = viewer.post(_url(search_data.project_id), {"query": "tags = 'night'"}, format="json")
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == _expected_ids(search_data, "tags = 'night'")
    assert api_client().post(_url(search_data.project_id), {}, format="json").status_code == 401


def _mutated(mutation) -> str:
    """A valid query with one character replaced by a token of the language (or appended past its end)."""
    tree, position, token = mutation
    text = to_text(tree)
    return text[:position] + token + text[position + 1 :]


def test_junk_requests_are_answered_200_or_400_never_500(search_data, client):
    junk_text = st.one_of(
        queries(search_data.dataset_ids, runs=(*search_data.run_names, 2**70)).map(to_text),
        st.text(max_size=80),
        st.lists(st.sampled_from(TOKENS), max_size=20).map(" ".join),
        st.tuples(
            queries(search_data.dataset_ids, runs=search_data.run_names), st.integers(0, 200), st.sampled_from(TOKENS)
        ).map(_mutated),
    )
    junk_values = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.text(max_size=10),
        st.lists(st.text(max_size=5), max_size=3),
    )

    statuses = Counter()

    @settings(
        max_examples=300,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        junk_text,
        st.just({})
        | st.dictionaries(
            st.sampled_from(["page_size", "sort", "cursor", "count", "facets"]), junk_values, min_size=1, max_size=2
        ),
    )
    def answered(text, extra):
        response = client.post(_url(search_data.project_id), {"query": text, **extra}, format="json")
        assert response.status_code in (200, 400), (text, extra, response.content)
        statuses[response.status_code] += 1
        if response.status_code == 400:
            body = response.json()
            assert body["message"]
            if "line" in body["extra"]:
                assert body["extra"]["line"] >= 1 and body["extra"]["column"] >= 1 and "^" in body["extra"]["caret"]

    answered()
    # the junk reaches every layer: some of it is a query that runs, some is refused
    assert statuses[200] >= 20 and statuses[400] >= 100, statuses


def _outside_the_test_transaction(call):
    """`call()` in a thread of its own, as a request runs in production: routed to the reader, on connections of
    its own that it closes. Returns what it returned; raises what it raised."""
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - raised in the test's thread below
            outcome["error"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_a_search_reads_from_the_reader(search_data, make_token, api_client):
    # The test's transaction pins its own thread to the writer; a request from another thread is routed as in
    # production, onto the streaming replica once it has replayed the module's data.
    wait_for_reader()
    client = api_client(make_token(TENANT_A))

    def search() -> dict:
        with (
            CaptureQueriesContext(connections["reader"]) as on_reader,
            CaptureQueriesContext(connections["default"]) as on_writer,
        ):
            response = client.post(
                _url(search_data.project_id), {"query": "tags = 'night'", "facets": ["tags"]}, format="json"
            )
        return {"response": response, "reader": [q["sql"] for q in on_reader], "writer": [q["sql"] for q in on_writer]}

    answered = _outside_the_test_transaction(search)
    assert answered["response"].status_code == 200
    assert [row["id"] for row in answered["response"].json()["results"]] == _expected_ids(search_data, "tags = 'night'")
    assert any("datasets_datarow AS d" in sql for sql in answered["reader"])
    assert not any("datasets_datarow" in sql for sql in answered["writer"])


def test_the_capped_count_runs_with_the_search_settings_and_leaves_the_connection_as_it_was(
    search_data, make_token, api_client, settings
):
    # given: outside the test's transaction (another thread), as in production
    settings.SEARCH_ESTIMATE_WORK_MEM = "7MB"
    settings.SEARCH_ESTIMATE_RANDOM_PAGE_COST = 1.7
    wait_for_reader()
    client = api_client(make_token(TENANT_A))
    seen = {}

    def show_settings() -> tuple[str, str]:
        with connections["reader"].cursor() as cursor:
            cursor.execute("SELECT current_setting('work_mem'), current_setting('random_page_cost')")
            return cursor.fetchone()

    def note_settings(execute, sql, params, many, context):
        if "AS capped" in sql:
            seen["during"] = show_settings()
        return execute(sql, params, many, context)

    def search():
        seen["before"] = show_settings()
        with connections["reader"].execute_wrapper(note_settings):
            seen["response"] = client.post(
                _url(search_data.project_id),
                {"query": "tags = 'night'", "count": "estimate", "page_size": 1},
                format="json",
            )
        seen["after"] = show_settings()

    # when
    _outside_the_test_transaction(search)
    # then
    assert seen["response"].status_code == 200
    assert seen["response"].json()["total"] == {
        "value": len(_expected_ids(search_data, "tags = 'night'")),
        "relation": "eq",
    }
    assert seen["during"] == ("7MB", "1.7")
    assert seen["after"] == seen["before"] and seen["before"] != seen["during"]


CLASS_FACET_SQL = "SELECT DISTINCT o.ontology_class_id AS class_id"


BROAD_CLASS_QUERY = "label(class UNDER 'vehicle') OR metadata.night = true"
# A condition on the labels' attributes: a second session would scan the label table for it again.
ATTRIBUTE_QUERY = "label(class UNDER 'vehicle' AND attributes.occluded = true)"


@pytest.mark.parametrize(
    ("parallel", "text", "sessions_of_their_own"),
    [
        (True, BROAD_CLASS_QUERY, True),
        (False, BROAD_CLASS_QUERY, False),
        (True, ATTRIBUTE_QUERY, False),
    ],
)
def test_exact_object_facets_run_on_sessions_of_their_own_unless_the_condition_reads_object_rows(
    parallel, text, sessions_of_their_own, search_data, make_token, api_client, settings
):
    # given
    settings.SEARCH_PARALLEL_FACETS = parallel
    wait_for_reader()
    client = api_client(make_token(TENANT_A))

    def search():
        with CaptureQueriesContext(connections["reader"]) as on_reader:
            response = client.post(
                _url(search_data.project_id), {"query": text, "facets": FACETS, "page_size": 1}, format="json"
            )
        return response, [query["sql"] for query in on_reader]

    # when
    response, statements = _outside_the_test_transaction(search)
    # then: the same counts either way; with sessions of their own the request's own session exports its snapshot
    # and counts neither class facet itself
    assert response.status_code == 200
    matching = set(_expected_ids(search_data, text))
    assert matching
    _assert_facets(response.json(), [row for row in search_data.rows if row["id"] in matching])
    assert response.json()["total"] == {"value": len(matching), "relation": "eq"}
    assert any("pg_export_snapshot" in sql for sql in statements) is sessions_of_their_own
    assert any(CLASS_FACET_SQL in sql for sql in statements) is not sessions_of_their_own


def test_the_object_facet_sessions_read_the_snapshot_of_the_total_not_a_later_write(
    search_data, make_token, api_client, monkeypatch
):
    # given: a label of a new class is committed (and replayed on the reader) after the request's session has
    # exported its snapshot and before the class facet's session starts its statement
    from datasets.models import Label, OntologyClass
    from search.engines import snapshot_sessions
    from tenancy.context import tenant_scope

    wait_for_reader()
    client = api_client(make_token(TENANT_A))
    fetch_in_snapshot = snapshot_sessions._fetch_all_in_snapshot

    def write_then_fetch(*args):
        with tenant_scope(TENANT_A):
            intruder = OntologyClass.objects.create(project_id=search_data.project_id, name="intruder")
            Label.objects.create(
                datarow_id=search_data.rows[0]["id"],
                ontology_class=intruder,
                kind="classification",
                source="test",
                updated_by="test",
            )
            wait_for_reader()
        connections["default"].close()
        return fetch_in_snapshot(*args)

    monkeypatch.setattr(snapshot_sessions, "_fetch_all_in_snapshot", write_then_fetch)
    try:
        # when
        response = _outside_the_test_transaction(
            lambda: client.post(
                _url(search_data.project_id), {"facets": ["label.class", "tags"], "page_size": 1}, format="json"
            )
        )
        # then: the class facet counts the classes as they were when the total was counted
        assert response.status_code == 200
        assert response.json()["total"] == {"value": len(search_data.rows), "relation": "eq"}
        classes = {bucket["value"]: bucket["count"] for bucket in response.json()["facets"]["label.class"]}
        assert classes == _recount(search_data.rows, "label.class")
        assert "intruder" not in classes
    finally:

        def remove_intruder():
            with tenant_scope(TENANT_A):
                Label.objects.filter(ontology_class__name="intruder").delete()
                OntologyClass.objects.filter(project_id=search_data.project_id, name="intruder").delete()

        _outside_the_test_transaction(remove_intruder)


def test_page_size_sizes_a_search_page_and_limit_is_refused_by_name(search_data, client):
    # page_size is every list's name for it (it was `limit` here, and a page_size sent to search was ignored)
    sized = client.post(_url(search_data.project_id), {"page_size": 2}, format="json")
    old_name = client.post(_url(search_data.project_id), {"limit": 2, "cursr": "x"}, format="json")
    assert sized.status_code == 200 and len(sized.json()["results"]) == 2
    assert old_name.status_code == 400
    assert set(old_name.json()["extra"]["fields"]) == {"limit", "cursr"}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("prediction(model = 'yolo')", "model takes 'name@version', e.g. 'yolo@8.1': 'yolo' names no version"),
        ("prediction(model IN ('yolo@1', 'yolo@99'))", "unknown model version 'yolo@99'"),
    ],
)
def test_a_model_version_the_project_lacks_is_a_400_naming_it(search_data, client, query, message):
    # a query that would otherwise silently match nothing
    response = client.post(_url(search_data.project_id), {"query": query}, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["message"].startswith(message)
