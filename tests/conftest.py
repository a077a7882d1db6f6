import pytest
from rest_framework.test import APIClient

from tests.contract import check_response
from tests.external_services import FakeAuth0, FakePlatform

TENANT_A = "acme"
TENANT_B = "globex"


@pytest.fixture(scope="session")
def auth0():
    server = FakeAuth0()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def platform():
    server = FakePlatform()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def _point_settings_at_fakes(auth0, platform):
    from django.conf import settings

    settings.JWT_ISSUER = auth0.issuer
    settings.JWT_AUDIENCE = auth0.audience
    settings.JWT_JWKS_URL = auth0.jwks_url
    settings.PLATFORM_URL = platform.url
    settings.DEV_AUTH = False
    settings.PLATFORM_SERVICE_KEY = "test-platform-service-key"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Two tenants for the whole session: every test can prove that A never sees B."""
    from tenancy.services import tenant_provision

    with django_db_blocker.unblock():
        tenant_provision(schema_name=TENANT_A, name="Acme")
        tenant_provision(schema_name=TENANT_B, name="Globex")
    yield
    # Before the test database is dropped: Django closes the connections of the aliases it created test databases
    # for, not the reader's (a TEST MIRROR of default), which held a session open on that database when both aliases
    # point at one server ("database test_mlops is being accessed by other users").
    from django.db import connections

    connections.close_all()


@pytest.fixture
def make_token(auth0, platform):
    """A valid token whose user the platform grants `role` in `workspace` of `tenant`."""

    from tests.factories import token_make

    def make(
        tenant: str = TENANT_A,
        *,
        role: str = "editor",
        workspace: str = "ws-1",
        database: str = "main",
        lifetime: int = 3600,
    ) -> str:
        return token_make(
            auth0, platform, tenant=tenant, role=role, workspace=workspace, database=database, lifetime=lifetime
        )

    return make


class ContractCheckedClient(APIClient):
    """Fails the test on a response the committed schema does not document (tests/contract.py)."""

    def request(self, **request):
        response = super().request(**request)
        check_response(
            request["REQUEST_METHOD"],
            request["PATH_INFO"],
            response.status_code,
            response.get("Content-Type"),
            None if response.streaming else response.content,
        )
        return response


@pytest.fixture
def api_client():
    def make(token: str | None = None) -> APIClient:
        client = ContractCheckedClient()
        if token:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return make


@pytest.fixture
def celery_eager(settings):
    """Jobs run inside the process that starts them; their events stay in this process too."""
    from mlops.celery import app

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    was_eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = was_eager


@pytest.fixture
def in_tenant_a():
    from tenancy.context import tenant_scope

    with tenant_scope(TENANT_A) as tenant:
        yield tenant


@pytest.fixture
def project(in_tenant_a):
    """A new project in tenant A, in the test's transaction."""
    from tests.factories import project_make

    return project_make()


@pytest.fixture
def principal():
    """Who acts in the service-level tests: an editor of workspace ws-1 in tenant A."""
    from tests.factories import principal_make

    return principal_make(tenant=TENANT_A)


# --- Outbound fetches: the suite keeps the production deny list; a test lets its own file server through by name.
@pytest.fixture
def files_server():
    """A real HTTP server on 127.0.0.1, which the outbound policy refuses unless `allow_files_server` is used."""
    from tests.outbound_servers import FileServer

    server = FileServer("127.0.0.1")
    yield server
    server.close()


@pytest.fixture
def allow_files_server(settings):
    """Allows 127.0.0.1, and only it, through OUTBOUND_ALLOWED_NETWORKS: 127.0.0.2 and ::1 stay refused."""
    import ipaddress

    settings.OUTBOUND_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.1/32")]


@pytest.fixture(params=["127.0.0.2", "::1"])
def internal_server(request):
    """A second listener on a denied loopback address (IPv4 and IPv6), that redirects must not reach."""
    from tests.outbound_servers import FileServer

    server = FileServer(request.param)
    yield server
    server.close()
