"""Statistics over a search's matches: both engines give the reference's counts and histograms on random queries and
statistics over random data (Elasticsearch through the fake server), the REST endpoint with worked examples, the
Elasticsearch bodies, and every bad input a 400 that names it."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.engines.base import StatisticsRequest, get_engine
from search.engines.elasticsearch_statistics import count_aggregations, histogram_aggregations
from search.engines.statistics import SPLIT_NAMES, Statistic
from search.ql import parse, validate
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.search import reference_statistics
from tests.search.render import to_text
from tests.search.strategies import queries, statistics
from tests.search.test_elasticsearch_engine import indexed  # noqa: F401 (a fixture)
from tests.search.test_search_bounds import datarows_locked

pytestmark = pytest.mark.django_db(databases=["default", "reader"])

PROPERTY = settings(
    max_examples=250,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def split_rows(search_data, django_db_blocker):
    """The 'picked' ids slice split 60/20/10 (a tenth of its members left unassigned by hand), and the reference rows
    with each membership's split."""
    from django.db import connection

    from slices.models import Slice, SliceMember
    from slices.services import slice_split

    picked = search_data.slices["picked"].id
    with django_db_blocker.unblock(), tenant_scope(TENANT_A):
        slice_split(
            slice=Slice.objects.get(pk=picked), seed=7, fractions={"train": 0.6, "validation": 0.3, "test": 0.1}
        )
        members = sorted(SliceMember.objects.filter(slice_id=picked).values_list("datarow_id", flat=True))
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE slices_slicemember SET split = NULL WHERE slice_id = %s AND datarow_id = ANY(%s)",
                [picked, members[::10]],
            )
        splits: dict[int, dict] = {}
        for datarow_id, slice_id, split in SliceMember.objects.values_list("datarow_id", "slice_id", "split"):
            splits.setdefault(datarow_id, {})[slice_id] = None if split is None else SPLIT_NAMES[split]
    return [{**row, "splits": splits.get(row["id"], {})} for row in search_data.rows]


@pytest.fixture
def client(search_data, make_token, api_client):
    return api_client(make_token(TENANT_A))


def _url(project_id: int) -> str:
    return f"/api/v1/projects/{project_id}/search/statistics"


def _engine_statistics(search_data, query, wanted: tuple[Statistic, ...]) -> list[dict]:
    with tenant_scope(TENANT_A):
        request = StatisticsRequest(TENANT_A, search_data.project_id, query, None, wanted, 10_000)
        return get_engine().statistics(request, using="default")


def _validated(search_data, tree):
    text = to_text(tree)
    return validate(parse(text), catalog=search_data.catalog, text=text, slices=search_data.slices)


def test_random_statistics_on_postgres_agree_with_the_reference(search_data, split_rows):
    slice_ids = [search_data.slices["picked"].id, search_data.slices["rainy frozen"].id]

    @PROPERTY
    @given(st.none() | queries(search_data.dataset_ids, tuple(search_data.slices)), statistics(slice_ids))
    def agree(tree, statistic):
        query = None if tree is None else _validated(search_data, tree)
        expected = reference_statistics.statistics(query, split_rows, (statistic,))
        assert _engine_statistics(search_data, query, (statistic,)) == expected, (tree and to_text(tree), statistic)

    agree()


def test_random_statistics_on_elasticsearch_agree_with_the_reference(search_data, split_rows, indexed):
    @PROPERTY
    @given(st.none() | queries(search_data.dataset_ids, tuple(search_data.slices)), statistics(by_split=False))
    def agree(tree, statistic):
        query = None if tree is None else _validated(search_data, tree)
        expected = reference_statistics.statistics(query, split_rows, (statistic,))
        assert _engine_statistics(search_data, query, (statistic,)) == expected, (tree and to_text(tree), statistic)

    agree()


def test_on_elasticsearch_statistics_by_split_are_counted_by_postgres(search_data, split_rows, indexed):
    picked = search_data.slices["picked"].id
    wanted = (
        Statistic("classes", "count", "label.class", slice_id=picked),
        Statistic("areas", "histogram", "label.area", bins=5),
    )
    expected = reference_statistics.statistics(None, split_rows, wanted)
    assert _engine_statistics(search_data, None, wanted) == expected
    assert [group["split"] for group in expected[0]["groups"]] == ["train", "validation", "test", "unassigned"]
    assert len(indexed.requests_to("POST", "/_search")) == 2  # the histogram's bounds, then its bins


def test_objects_and_images_per_class_with_a_limit_keep_the_totals_exact(search_data, client):
    # given
    rows = [row for row in search_data.rows if row["metadata"].get("weather") == "rain"]
    per_class_objects, per_class_images = {}, {}
    for row in rows:
        for label in row["labels"]:
            per_class_objects[label["class"]] = per_class_objects.get(label["class"], 0) + 1
        for name in {label["class"] for label in row["labels"]}:
            per_class_images[name] = per_class_images.get(name, 0) + 1
    # when
    response = client.post(
        _url(search_data.project_id),
        {
            "query": "metadata.weather = 'rain'",
            "statistics": [
                {"kind": "count", "field": "label.class", "limit": 2},
                {"name": "images", "kind": "count", "field": "label.class", "count": "images"},
            ],
        },
        format="json",
    )
    # then
    assert response.status_code == 200, response.content
    objects, images = response.json()["statistics"]
    (top,) = objects["groups"]
    ranked = sorted(per_class_objects.items(), key=lambda item: (-item[1], item[0]))
    assert top["split"] == "all"
    assert [(v["value"], v["count"]) for v in top["values"]] == ranked[:2]
    assert top["other"] == {"values": len(ranked) - 2, "count": sum(count for _, count in ranked[2:])}
    assert sum(v["count"] for v in top["values"]) + top["other"]["count"] == sum(per_class_objects.values())
    assert images["name"] == "images" and images["count"] == "images"
    assert {v["value"]: v["count"] for v in images["groups"][0]["values"]} == per_class_images
    assert images["groups"][0]["other"] == {"values": 0, "count": 0}


def test_a_histogram_with_a_range_counts_the_values_outside_it(search_data, client):
    areas = [label["area"] for row in search_data.rows for label in row["labels"] if label["area"] is not None]
    response = client.post(
        _url(search_data.project_id),
        {"statistics": [{"kind": "histogram", "field": "label.area", "bins": 4, "range": [1000, 5000]}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    (group,) = response.json()["statistics"][0]["groups"]
    assert group["range"] == [1000, 5000]
    assert [(b["low"], b["high"]) for b in group["buckets"]] == [(1000, 2000), (2000, 3000), (3000, 4000), (4000, 5000)]
    assert group["buckets"][0]["count"] == sum(1000 <= area < 2000 for area in areas)
    assert group["buckets"][3]["count"] == sum(4000 <= area <= 5000 for area in areas)  # the last bin is closed
    assert group["below"] == sum(area < 1000 for area in areas)
    assert group["above"] == sum(area > 5000 for area in areas)
    assert group["below"] + group["above"] + sum(b["count"] for b in group["buckets"]) == len(areas)


def test_a_histogram_without_a_range_spans_the_values_and_groups_by_split(search_data, split_rows, client):
    picked = search_data.slices["picked"].id
    response = client.post(
        _url(search_data.project_id),
        {
            "query": "width IS NOT NULL",
            "statistics": [{"kind": "histogram", "field": "prediction.score", "bins": 10, "slice_id": picked}],
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    groups = response.json()["statistics"][0]["groups"]
    members = [row for row in split_rows if picked in row["splits"] and row["width"] is not None]
    scores = [p["score"] for row in members for p in row["predictions"]]
    assert [group["split"] for group in groups] == ["train", "validation", "test", "unassigned"]
    assert all(group["range"] == [min(scores), max(scores)] for group in groups)
    assert sum(b["count"] for group in groups for b in group["buckets"]) == len(scores)
    train = [p["score"] for row in members if row["splits"][picked] == "train" for p in row["predictions"]]
    assert sum(b["count"] for b in groups[0]["buckets"]) == len(train) > 0


def test_statistics_run_on_elasticsearch_through_the_endpoint(search_data, split_rows, indexed, client, settings):
    body = {
        "query": "label(class UNDER 'vehicle')",
        "statistics": [
            {"kind": "count", "field": "prediction.class", "model": "yolo@1", "count": "images"},
            {"kind": "count", "field": "label.attributes.occluded"},
            {"kind": "count", "field": "prediction.model", "count": "images"},
            {"kind": "histogram", "field": "metadata.people.age", "bins": 3},
            {"kind": "histogram", "field": "width", "range": [0, 1000], "bins": 2},
        ],
    }
    settings.SEARCH_ENGINE = "postgres"
    on_postgres = client.post(_url(search_data.project_id), body, format="json")
    settings.SEARCH_ENGINE = "elasticsearch"
    on_elasticsearch = client.post(_url(search_data.project_id), body, format="json")
    assert on_postgres.status_code == on_elasticsearch.status_code == 200, on_elasticsearch.content
    assert on_elasticsearch.json()["statistics"] == on_postgres.json()["statistics"]
    assert any(group["values"] for group in on_postgres.json()["statistics"][1]["groups"])


def test_elasticsearch_bodies_count_objects_nested_and_images_reverse_nested_with_sizes_past_the_cap():
    images = Statistic("p", "count", "prediction.class", count="images", model="yolo@1")
    assert count_aggregations(images, 10_000) == {
        "objects": {
            "nested": {"path": "predictions"},
            "aggs": {
                "objects": {
                    "filter": {"term": {"predictions.model": "yolo@1"}},
                    "aggs": {
                        "values_string": {
                            "terms": {"field": "predictions.class", "size": 10_001},
                            "aggs": {"rows": {"reverse_nested": {}}},
                        }
                    },
                }
            },
        }
    }
    attributes = count_aggregations(Statistic("a", "count", "label.attributes.color"), 5)
    assert attributes == {
        "objects": {
            "nested": {"path": "labels"},
            "aggs": {
                f"values_{kind}": {"terms": {"field": f"labels.attributes.{kind}.color", "size": 6}}
                for kind in ("string", "number", "boolean")
            },
        }
    }
    above_100 = math.nextafter(100.0, math.inf)
    assert histogram_aggregations(Statistic("w", "histogram", "width", bins=4), 0.0, 100.0) == {
        "bins": {
            "range": {
                "field": "width",
                "ranges": [
                    {"from": 0.0, "to": 25.0},
                    {"from": 25.0, "to": 50.0},
                    {"from": 50.0, "to": 75.0},
                    {"from": 75.0, "to": above_100},
                ],
            }
        },
        "below": {"filter": {"range": {"width": {"lt": 0.0}}}},
        "above": {"filter": {"range": {"width": {"gt": 100.0}}}},
    }


def test_more_distinct_values_than_the_cap_is_a_400_naming_the_setting_on_both_engines(
    search_data, indexed, client, settings
):
    settings.SEARCH_STATISTICS_MAX_VALUES = 3
    body = {"statistics": [{"kind": "count", "field": "label.class", "limit": 2}]}
    for engine in ("postgres", "elasticsearch"):
        settings.SEARCH_ENGINE = engine
        response = client.post(_url(search_data.project_id), body, format="json")
        assert response.status_code == 400, (engine, response.content)
        assert response.json()["extra"]["limit"] == "SEARCH_STATISTICS_MAX_VALUES"


BAD = [
    ({"kind": "count", "field": "label.nope"}, "statistics[0].field", "Cannot count"),
    ({"kind": "count", "field": "label.area"}, "statistics[0].field", "Cannot count"),
    ({"kind": "count", "field": "label.model"}, "statistics[0].field", "Cannot count"),
    ({"kind": "histogram", "field": "label.class"}, "statistics[0].field", "Cannot bin"),
    ({"kind": "histogram", "field": "metadata.weather"}, "statistics[0].field", "string values"),
    ({"kind": "histogram", "field": "metadata.nowhere"}, "statistics[0].field", "no such metadata path"),
    ({"kind": "histogram", "field": "label.score"}, "statistics[0].field", "Cannot bin"),
    ({"kind": "histogram", "field": "label.attributes.truncation"}, "statistics[0].field", "Cannot bin"),
    ({"kind": "histogram", "field": "width", "bins": 1001}, "statistics[0].bins", "SEARCH_STATISTICS_MAX_BINS"),
    ({"kind": "histogram", "field": "width", "bins": 0}, "statistics[0].bins", ""),
    ({"kind": "histogram", "field": "width", "range": [5, 5]}, "statistics[0].range", "low < high"),
    ({"kind": "histogram", "field": "width", "range": [1]}, "statistics[0].range", ""),
    ({"kind": "histogram", "field": "width", "range": [-1e308, 1e308]}, "statistics[0].range", "apart"),
    ({"kind": "count", "field": "label.class", "range": [0, 1]}, "statistics[0].range", "kind=histogram"),
    ({"kind": "histogram", "field": "width", "count": "images"}, "statistics[0].count", "kind=count"),
    ({"kind": "count", "field": "label.class", "limit": 10_001}, "statistics[0].limit", "SEARCH_STATISTICS_MAX_VALUES"),
    ({"kind": "count", "field": "label.class", "model": "yolo@1"}, "statistics[0].model", "prediction fields"),
    ({"kind": "count", "field": "prediction.class", "model": "nope@9"}, "statistics[0].model", "No model version"),
    ({"kind": "count", "field": "label.class", "slice_id": 2**40}, "statistics[0].slice_id", "No slice"),
    ({"kind": "count", "field": "label.class", "slice_id": 2**63}, "statistics[0].slice_id", ""),
    ({"kind": "median", "field": "width"}, "statistics[0].kind", ""),
    ({"kind": "count", "field": "label.class", "colour": 1}, "statistics[0].colour", "Unknown field"),
    ("label.class", "statistics[0].non_field_errors", ""),
]


@pytest.mark.parametrize(("statistic", "key", "says"), BAD)
def test_a_bad_statistic_is_a_400_that_names_it(statistic, key, says, search_data, client):
    response = client.post(_url(search_data.project_id), {"statistics": [statistic]}, format="json")
    assert response.status_code == 400, response.content
    fields = response.json()["extra"]["fields"]
    assert key in fields, fields
    assert says in " ".join(fields[key]) or says in response.json()["message"]


def test_a_live_slice_has_no_splits_and_names_and_counts_are_checked(search_data, client, settings):
    url = _url(search_data.project_id)
    live = search_data.slices["rainy live"].id
    response = client.post(
        url, {"statistics": [{"kind": "count", "field": "label.class", "slice_id": live}]}, format="json"
    )
    assert response.status_code == 400 and "live" in response.json()["message"]
    twice = [{"kind": "count", "field": "label.class"}] * 2
    response = client.post(url, {"statistics": twice}, format="json")
    assert response.status_code == 400 and "statistics[1].name" in response.json()["extra"]["fields"]
    settings.SEARCH_MAX_STATISTICS = 1
    named = [{"name": str(i), "kind": "count", "field": "label.class"} for i in range(2)]
    response = client.post(url, {"statistics": named}, format="json")
    assert response.status_code == 400 and response.json()["extra"]["limit"] == "SEARCH_MAX_STATISTICS"
    for body in ({"statistics": []}, {"query": "width >", "statistics": named[:1]}, {"statistics": named[:1], "x": 1}):
        assert client.post(url, body, format="json").status_code == 400, body


def test_statistics_that_reach_the_statement_timeout_are_a_422(search_data, client, settings):
    settings.SEARCH_STATEMENT_TIMEOUT_MS = 200
    with datarows_locked():
        response = client.post(
            _url(search_data.project_id),
            {"query": "width > 0", "statistics": [{"kind": "histogram", "field": "label.area"}]},
            format="json",
        )
    assert response.status_code == 422, response.content
    assert response.json()["extra"]["limit"] == "SEARCH_STATEMENT_TIMEOUT_MS"


def test_over_every_row_another_projects_objects_are_left_out(search_data, split_rows):
    """Every row of the project: its objects are found by its class ids, without the datarows. Another project's
    class in the tenant (a transaction of this test) makes that a test of the ids, not a table scan without one."""
    from datasets.models import Label, OntologyClass
    from tests.factories import datarows_make, dataset_make, project_make

    with tenant_scope(TENANT_A):
        other = project_make()
        (row,) = datarows_make(dataset=dataset_make(project=other), count=1)
        car = OntologyClass.objects.create(project=other, name="vehicle/car")
        Label.objects.create(datarow=row, ontology_class=car, kind="box", area=1e9, source="test", updated_by="t")
    wanted = (
        Statistic("classes", "count", "label.class", count="images"),
        Statistic("areas", "histogram", "label.area", bins=7),
    )
    assert _engine_statistics(search_data, None, wanted) == reference_statistics.statistics(None, split_rows, wanted)
