"""Every route that names an object answers the same for an object that is not the caller's as for one that does
not exist: 404, with the message a missing id gets. A viewer's write is a 403.

The routes come from the URLconf itself (django.urls.get_resolver(), through every include), so a new route is
walked without anyone adding it here; a new id kwarg fails the walk until `build_place` makes an object for it.
Out of scope: routes without an object id (lists and creates at the top, health, schema, docs) and the platform's
routes, which take a service key rather than a user's token (tenancy/urls.py has no object id today).
"""

import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connection
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.converters import UUIDConverter
from django.urls.resolvers import RoutePattern

from search.apis import ProjectSearchApi
from tenancy.permissions import HasWorkspaceRole
from tests.conftest import TENANT_A, TENANT_B
from tests.training.conftest import TINY_CONFIG, png_of_colour

pytestmark = pytest.mark.django_db

WRITE_METHODS = ("post", "put", "patch", "delete")
METHODS = ("get", *WRITE_METHODS)
# Views that let every role POST, and why; any other view without HasWorkspaceRole fails the walk.
READS_SENT_AS_POST = {ProjectSearchApi: "a search is a read sent as POST (the query may be long)"}
# Tenant B's ids start here, so none of them is also an id in tenant A (ids are per schema).
TENANT_B_FIRST_ID = 10**9
# An id no object has: per kwarg, so each can be told apart in a message.
MISSING_ID_BASE = 9 * 10**15


@dataclass(frozen=True)
class Route:
    template: str
    name: str | None
    view: type
    converters: dict

    @property
    def kwargs(self) -> list[str]:
        return list(self.converters)

    def url(self, values: dict) -> str:
        return "/" + re.sub(
            r"<(?:\w+:)?(\w+)>", lambda match: self.converters[match[1]].to_url(values[match[1]]), self.template
        )

    def methods(self) -> list[str]:
        return [method for method in METHODS if hasattr(self.view, method)]


def url_routes(resolver: URLResolver | None = None, prefix: str = "", converters: dict | None = None) -> list[Route]:
    """Every route of the URLconf, with the kwargs of its includes, each with the converter that reads it."""
    resolver, converters = resolver or get_resolver(), converters or {}
    routes = []
    for entry in resolver.url_patterns:
        assert isinstance(entry.pattern, RoutePattern), f"{entry.pattern!r} is not a path(): teach the walk its kwargs"
        template, entry_converters = prefix + str(entry.pattern), {**converters, **entry.pattern.converters}
        if isinstance(entry, URLResolver):
            routes += url_routes(entry, template, entry_converters)
            continue
        assert isinstance(entry, URLPattern)
        view = getattr(entry.callback, "view_class", None)
        assert view is not None or not entry_converters, f"{template}: a function view with ids is not walked"
        routes.append(Route(template, entry.name, view, entry_converters))
    return routes


def object_routes() -> list[Route]:
    return [route for route in url_routes() if route.converters]


@dataclass
class Place:
    """One object of every kind an id in a URL names, all in one tenant and workspace."""

    ids: dict
    # Where a kwarg names a different kind of object on one route: job_id is an export job there.
    by_route: dict

    def values(self, route: Route) -> dict:
        return {**self.ids, **self.by_route.get(route.name, {})}


def _principal(tenant: str, workspace: str):
    from tenancy.principal import Principal

    return Principal(
        user_id=f"auth0|walk-{workspace}",
        email="walker@example.com",
        tenant_schema=tenant,
        workspace_id=workspace,
        role="editor",
        database="main",
        expires_at=int(time.time()) + 3600,
    )


def build_place(*, tenant: str, workspace: str, read_root: Path) -> Place:
    """The objects, made by the services (the workers' part, which runs outside a request, written as they
    leave it: a finished import with its error report, a finished export with its file, a trained run)."""
    from datasets.exporters.formats import export_path
    from datasets.models import DataRow
    from datasets.services.datasets import dataset_create
    from datasets.services.exports import dataset_export_start
    from datasets.services.imports import ImportOptions, dataset_import_start, error_report_path
    from datasets.services.labels import label_create
    from datasets.services.ontology import ontology_class_create
    from jobs.services import job_finish, job_start
    from predictions.services import model_version_register, prediction_run_start
    from projects.services import project_create
    from slices.models import SliceMember, Split
    from slices.services import slice_create_from_ids
    from tenancy.context import tenant_scope
    from tests.factories import evaluation_run_make
    from training.services import model_definition_create, training_run_start

    principal = _principal(tenant, workspace)
    with tenant_scope(tenant):
        project = project_create(principal=principal, name=f"walk-{workspace}")
        dataset = dataset_create(principal=principal, project=project, name="main")
        ontology_class_create(project=project, name="cat")
        image = read_root / tenant / f"{workspace}.png"
        image.write_bytes(png_of_colour((200, 40, 40), seed=1))
        # Datarows arrive by import, which stages on a connection of its own: it cannot see this test's transaction.
        datarow = DataRow.objects.create(dataset=dataset, external_id="r1", uri=str(image))
        label = label_create(principal=principal, datarow=datarow, class_name="cat")
        members = slice_create_from_ids(
            project=project, name="all", created_by=principal.user_id, datarow_ids=[datarow.pk]
        )
        SliceMember.objects.filter(slice=members).update(split=Split.TRAIN)
        model = model_definition_create(
            principal=principal, project=project, name="clf", trainer="image-classifier", hyperparameters=TINY_CONFIG
        )
        run = training_run_start(
            principal=principal, model=model, slice=members, train_splits=["train"], validation_splits=["validation"]
        )
        run.artifact_files = ["model.pt"]
        run.save(update_fields=["artifact_files"])
        model_version = model_version_register(run=run)
        prediction_run = prediction_run_start(
            principal=principal, model_version=model_version, dataset=dataset, top_k=1
        )
        evaluation_run = evaluation_run_make(model_version=model_version, slice=members)
        import_job = dataset_import_start(principal=principal, dataset=dataset, uri=str(image), options=ImportOptions())
        error_report_path(f"import:{import_job.pk}").write_bytes(b'{"line": 1, "message": "bad"}\n')
        export_job = dataset_export_start(principal=principal, dataset=dataset, export_format="jsonl")
        export_path(job_id=export_job.pk, export_format="jsonl").write_bytes(b"{}\n")
        for job in (import_job, export_job):
            job_finish(job=job_start(job_id=job.pk))
    return Place(
        ids={
            "project_id": project.pk,
            "dataset_id": dataset.pk,
            "datarow_id": datarow.pk,
            "label_id": label.pk,
            "slice_id": members.pk,
            "model_id": model.pk,
            "run_id": run.pk,
            "model_version_id": model_version.pk,
            "prediction_run_id": prediction_run.pk,
            "evaluation_run_id": evaluation_run.pk,
            "job_id": import_job.pk,
        },
        by_route={"dataset-export-file": {"job_id": export_job.pk}},
    )


def _start_tenant_b_ids_high() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT setval(format('%%I.%%I', schemaname, sequencename)::regclass, GREATEST(%s, last_value))
            FROM pg_sequences WHERE schemaname = %s""",
            [TENANT_B_FIRST_ID, TENANT_B],
        )


@pytest.fixture
def places(tmp_path, settings) -> dict[str, Place]:
    """Tenant A's workspaces ws-1 (the caller's) and ws-2, and tenant B, each with one object of every kind."""
    settings.LOCAL_READ_ROOT = tmp_path / "imports"
    for tenant in (TENANT_A, TENANT_B):
        (settings.LOCAL_READ_ROOT / tenant).mkdir(parents=True)
    settings.STORAGE_ROOT = tmp_path / "storage"
    _start_tenant_b_ids_high()
    return {
        "own": build_place(tenant=TENANT_A, workspace="ws-1", read_root=settings.LOCAL_READ_ROOT),
        "other workspace": build_place(tenant=TENANT_A, workspace="ws-2", read_root=settings.LOCAL_READ_ROOT),
        "other tenant": build_place(tenant=TENANT_B, workspace="ws-1", read_root=settings.LOCAL_READ_ROOT),
    }


def _missing_value(route: Route, kwarg: str):
    if isinstance(route.converters[kwarg], UUIDConverter):
        return uuid.uuid4()
    return MISSING_ID_BASE + route.kwargs.index(kwarg)


def _call(client, method: str, url: str):
    return client.get(url) if method == "get" else getattr(client, method)(url, {}, format="json")


def _shown(response) -> str:
    return f"{response.status_code} {b'<file>' if response.streaming else response.content[:200]!r}"


def test_every_id_kwarg_of_the_urlconf_has_an_object_in_the_fixture(places):
    kwargs = {kwarg for route in object_routes() for kwarg in route.kwargs}
    for name, place in places.items():
        assert not kwargs - place.ids.keys(), (
            f"{name}: no object for {kwargs - place.ids.keys()}: add it to build_place"
        )


def test_own_objects_are_found_on_every_get_route(places, make_token, api_client):
    """The walk's ids are real: with them, the caller's own objects are served (so a 404 below is the foreign id)."""
    client = api_client(make_token(TENANT_A, workspace="ws-1", role="viewer"))
    failures = []
    for route in object_routes():
        if "get" in route.methods():
            response = client.get(route.url(places["own"].values(route)))
            if response.status_code != 200:
                failures.append(f"GET {route.template}: {_shown(response)}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("elsewhere", ["other workspace", "other tenant"])
def test_an_object_that_is_not_yours_answers_as_a_missing_one(elsewhere, places, make_token, api_client):
    """Each id of each route in turn, then all of them, taken from elsewhere: 404 with the very message that an id
    no object has gets (the foreign id in its place), for every method, before any body is read."""
    client = api_client(make_token(TENANT_A, workspace="ws-1", role="editor"))
    failures, walked = [], 0
    for route in object_routes():
        own, foreign = places["own"].values(route), places[elsewhere].values(route)
        missing = {kwarg: _missing_value(route, kwarg) for kwarg in route.kwargs}
        for swapped in [[kwarg] for kwarg in route.kwargs] + ([route.kwargs] if len(route.kwargs) > 1 else []):
            for method in route.methods():
                answered = _call(client, method, route.url({**own, **{k: foreign[k] for k in swapped}}))
                expected = _call(client, method, route.url({**own, **{k: missing[k] for k in swapped}}))
                walked += 1
                message = expected.json().get("message", "") if expected.status_code == 404 else ""
                for kwarg in swapped:
                    message = message.replace(str(missing[kwarg]), str(foreign[kwarg]))
                if not (
                    answered.status_code == expected.status_code == 404
                    and answered.json() == {**expected.json(), "message": message}
                ):
                    failures.append(
                        f"{method.upper()} {route.template} with {elsewhere}'s {', '.join(swapped)}: "
                        f"{_shown(answered)}; a missing id: {_shown(expected)}"
                    )
    assert walked > 100 and not failures, "\n".join(failures)


def test_a_viewer_may_not_write_on_any_route(places, make_token, api_client):
    client = api_client(make_token(TENANT_A, workspace="ws-1", role="viewer"))
    failures = []
    for route in object_routes():
        if HasWorkspaceRole not in route.view.permission_classes:
            assert route.view in READS_SENT_AS_POST, f"{route.view.__name__} lets every role write: give it a reason"
            continue
        for method in set(route.methods()) & set(WRITE_METHODS):
            response = _call(client, method, route.url(places["own"].values(route)))
            if response.status_code != 403 or "read-only" not in response.json()["message"]:
                failures.append(f"{method.upper()} {route.template}: {_shown(response)}")
    assert not failures, "\n".join(failures)


# Regressions, each named after what it used to answer.


def test_another_workspaces_import_error_report_is_not_served(places, make_token, api_client):
    own, theirs = places["own"].ids, places["other workspace"].ids
    url = f"/api/v1/projects/{own['project_id']}/datasets/{own['dataset_id']}/imports/{theirs['job_id']}/errors"
    response = api_client(make_token(TENANT_A, workspace="ws-1")).get(url)
    assert response.status_code == 404  # was 200, with ws-2's report
    assert response.json() == {"message": f"Job {theirs['job_id']} does not exist.", "extra": {}}


def test_another_workspaces_project_and_job_are_404_as_missing_ones(places, make_token, api_client):
    theirs = places["other workspace"].ids
    client = api_client(make_token(TENANT_A, workspace="ws-1"))
    project = client.get(f"/api/v1/projects/{theirs['project_id']}")
    job = client.get(f"/api/v1/jobs/{theirs['job_id']}")
    assert (project.status_code, job.status_code) == (404, 404)  # were 403 "belongs to another workspace"
    assert project.json() == {"message": f"Project {theirs['project_id']} does not exist.", "extra": {}}
    assert job.json() == {"message": f"Job {theirs['job_id']} does not exist.", "extra": {}}


def test_reading_a_report_or_an_export_that_is_not_there_writes_nothing_to_disk(
    places, make_token, api_client, settings
):
    from datasets.models import Dataset
    from datasets.services.imports import ImportOptions, dataset_import_start
    from tenancy.context import tenant_scope

    # given an import of the caller's that has not run yet (no report), and an id no job has
    own = places["own"].ids
    with tenant_scope(TENANT_A):
        queued = dataset_import_start(
            principal=_principal(TENANT_A, "ws-1"),
            dataset=Dataset.objects.get(pk=own["dataset_id"]),
            uri="nowhere.jsonl",
            options=ImportOptions(),
        )
    client = api_client(make_token(TENANT_A, workspace="ws-1"))
    dataset_url = f"/api/v1/projects/{own['project_id']}/datasets/{own['dataset_id']}"
    before = sorted(Path(settings.STORAGE_ROOT).rglob("*"))
    # when they are read
    answers = [client.get(f"{dataset_url}/imports/{job_id}/errors").status_code for job_id in (queued.pk, uuid.uuid4())]
    answers.append(client.get(f"{dataset_url}/exports/{uuid.uuid4()}/file").status_code)
    # then nothing is found, and no folder was made (each report GET made imports/import-<id>/)
    assert answers == [404, 404, 404]
    assert sorted(Path(settings.STORAGE_ROOT).rglob("*")) == before
