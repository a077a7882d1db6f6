"""Logs are one JSON object per line with request id, tenant, user and job; a 500 hides its trace from the
client and logs it with the request id; Sentry is on exactly when SENTRY_DSN is set.

This module is also the test-only URLconf (pytest-django's `urls` marker) with a view that fails.
"""

import gzip
import io
import json
import logging
import re
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest
import yaml
from django.urls import path
from gunicorn.config import Config as GunicornConfig
from pythonjsonlogger.json import JsonFormatter
from rest_framework.views import APIView
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from devstack.__main__ import web_server_command
from mlops import urls as production_urls
from mlops.observability import GunicornJsonLogger, bind_log_context, clear_log_context, redact_secrets
from tests.conftest import TENANT_A
from tests.fresh_process import REPO_ROOT, run_python
from tests.live_services import live_environment, start_asgi_server, wait_until

INTERNAL_DETAIL = "connection string postgres://secret@internal"


class UnexpectedErrorApi(APIView):
    """A bug in a view: an exception no handler knows."""

    def get(self, request):
        raise RuntimeError(INTERNAL_DETAIL)


urlpatterns = [
    path("api/v1/test-only/unexpected-error", UnexpectedErrorApi.as_view()),
    # Outside the tenant API, so a process without a database can reach it (the Sentry test).
    path(
        "api/test-only/unexpected-error", UnexpectedErrorApi.as_view(authentication_classes=[], permission_classes=[])
    ),
]
# The production handler, or Django's HTML page if production has none: the 500 test then fails.
handler500 = getattr(production_urls, "handler500", None)


@pytest.fixture
def json_log_lines():
    """What the console handler settings.LOGGING configured writes, each line parsed as one JSON object."""
    handler = next(handler for handler in logging.getLogger().handlers if isinstance(handler.formatter, JsonFormatter))
    buffer = io.StringIO()
    previous_stream = handler.setStream(buffer)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        handler.setStream(previous_stream)


def user_of(token: str) -> str:
    return jwt.decode(token, options={"verify_signature": False})["sub"]


@pytest.mark.django_db
def test_api_request_logs_a_json_line_with_request_id_tenant_and_user(make_token, api_client, json_log_lines):
    # given
    token = make_token(TENANT_A)
    # when
    response = api_client(token).get("/api/v1/projects/", HTTP_X_REQUEST_ID="req-observability-1")
    # then
    assert response.status_code == 200, response.content
    assert response["X-Request-ID"] == "req-observability-1"
    [finished] = [line for line in json_log_lines() if line["logger"] == "mlops.request"]
    assert finished["level"] == "INFO" and finished["time"]
    assert {key: finished[key] for key in ("request_id", "tenant", "user", "method", "path", "status")} == {
        "request_id": "req-observability-1",
        "tenant": TENANT_A,
        "user": user_of(token),
        "method": "GET",
        "path": "/api/v1/projects/",
        "status": 200,
    }


@pytest.mark.parametrize("caller_request_id", [None, "two words", "x" * 65, "id\u00e9"])
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_fresh_one(client, json_log_lines, caller_request_id):
    # given
    headers = {} if caller_request_id is None else {"HTTP_X_REQUEST_ID": caller_request_id}
    # when
    response = client.get("/healthz", **headers)
    # then
    request_id = response["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    [finished] = [line for line in json_log_lines() if line["logger"] == "mlops.request"]
    assert finished["request_id"] == request_id


@pytest.mark.django_db
def test_rejected_token_is_logged_and_answered_with_the_request_id(api_client, json_log_lines):
    response = api_client("not-a-jwt").get("/api/v1/projects/", HTTP_X_REQUEST_ID="req-rejected-1")

    assert response.status_code == 401
    assert response["X-Request-ID"] == "req-rejected-1"
    logged = {(line["logger"], line.get("request_id")) for line in json_log_lines()}
    assert ("mlops.request", "req-rejected-1") in logged


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_unexpected_error_is_a_500_in_our_shape_with_the_trace_only_in_the_log(make_token, api_client, json_log_lines):
    # given
    token = make_token(TENANT_A)
    client = api_client(token)
    client.raise_request_exception = False
    # when
    response = client.get("/api/v1/test-only/unexpected-error", HTTP_X_REQUEST_ID="req-unexpected-1")
    # then: the client gets the error shape and the id to quote, nothing of the failure
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"message": "Internal server error", "extra": {"request_id": "req-unexpected-1"}}
    assert INTERNAL_DETAIL not in response.content.decode()
    assert response["X-Request-ID"] == "req-unexpected-1"
    # and the log has the traceback, on one line, with request id, tenant and user
    [error] = [line for line in json_log_lines() if line["level"] == "ERROR"]
    assert error["logger"] == "django.request"
    assert (error["request_id"], error["tenant"], error["user"]) == ("req-unexpected-1", TENANT_A, user_of(token))
    assert f"RuntimeError: {INTERNAL_DETAIL}" in error["exc_info"]


def test_log_lines_carry_the_job_bound_while_it_runs(json_log_lines):
    # given: what the job runner binds around a job
    clear_log_context()
    bind_log_context(tenant=TENANT_A, task_id="task-1", job_id="job-1")
    # when
    logging.getLogger("jobs.runner").info("job started")
    clear_log_context()
    logging.getLogger("jobs.runner").info("between jobs")
    # then
    during, after = json_log_lines()
    assert (during["tenant"], during["task_id"], during["job_id"]) == (TENANT_A, "task-1", "job-1")
    assert "job_id" not in after


def test_celery_processes_keep_the_json_log_format():
    # Celery configures logging when a worker or beat starts, and by default replaces the root handlers.
    result = run_python(
        "import logging; from mlops.celery import app; app.log.setup(loglevel='INFO'); "
        "logging.getLogger('celery.worker').info('worker ready')",
        {"MLOPS_ENV": "test"},
    )

    assert result.returncode == 0, result.stderr
    last_line = json.loads(result.stderr.strip().splitlines()[-1])
    assert (last_line["logger"], last_line["message"]) == ("celery.worker", "worker ready")


@pytest.fixture
def gunicorn_error_lines():
    """gunicorn's logger as the web command configures it (UvicornWorker shares its handlers), and its lines."""
    gunicorn_logger = GunicornJsonLogger(GunicornConfig())
    buffer = io.StringIO()
    for handler in gunicorn_logger.error_log.handlers:
        handler.setStream(buffer)
    yield gunicorn_logger, lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    for handler in list(gunicorn_logger.error_log.handlers):
        gunicorn_logger.error_log.removeHandler(handler)


def test_gunicorn_lines_are_json_with_the_same_fields_as_the_apps(gunicorn_error_lines, json_log_lines):
    # given
    gunicorn_logger, gunicorn_lines = gunicorn_error_lines
    # when
    try:
        raise ValueError("bad ASGI message")
    except ValueError:
        gunicorn_logger.exception("Exception in ASGI application")
    logging.getLogger("mlops").warning("app line")
    # then
    [gunicorn_line] = gunicorn_lines()
    [app_line] = json_log_lines()
    assert gunicorn_line["logger"] == "gunicorn.error"
    assert "ValueError: bad ASGI message" in gunicorn_line["exc_info"]
    assert {"time", "level", "logger", "message"} <= gunicorn_line.keys() & app_line.keys()


class FakeSentry:
    """A loopback Sentry: records the events in the envelopes the SDK posts to it."""

    def __init__(self):
        received = self.envelopes = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                """Quiet: the tests assert on what matters."""

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body)
                self.send_response(200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.dsn = f"http://public@127.0.0.1:{self.server.server_address[1]}/1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        """Envelope lines alternate item header and payload (after the envelope's own header)."""
        events = []
        for envelope in self.envelopes:
            lines = envelope.decode().splitlines()[1:]
            for header, payload in zip(lines[::2], lines[1::2], strict=False):
                if json.loads(header).get("type") == "event":
                    events.append(json.loads(payload))
        return events

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_sentry():
    server = FakeSentry()
    yield server
    server.stop()


@pytest.mark.parametrize("dsn_env", [{}, {"SENTRY_DSN": ""}], ids=["unset", "empty"])
def test_sentry_is_off_without_a_dsn(dsn_env):
    result = run_python(
        "import django, sentry_sdk; django.setup(); print(sentry_sdk.get_client().is_active())",
        {"MLOPS_ENV": "test", **dsn_env},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_with_a_dsn_sentry_is_on_and_receives_an_unexpected_error_with_its_request_id(fake_sentry):
    # when: a process started with SENTRY_DSN serves a request whose view fails
    result = run_python(
        "import django, sentry_sdk; django.setup()\n"
        "from django.test import Client, override_settings\n"
        "assert sentry_sdk.get_client().is_active()\n"
        f"with override_settings(ROOT_URLCONF={__name__!r}):\n"
        "    response = Client(raise_request_exception=False).get(\n"
        "        '/api/test-only/unexpected-error', HTTP_X_REQUEST_ID='req-sentry-1')\n"
        "assert response.status_code == 500, response.status_code\n"
        "sentry_sdk.flush(timeout=10)\n",
        {"MLOPS_ENV": "test", "SENTRY_DSN": fake_sentry.dsn},
    )
    # then
    assert result.returncode == 0, result.stderr
    [event] = fake_sentry.events()
    assert event["tags"]["request_id"] == "req-sentry-1"
    assert event["environment"] == "test"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("GET /ws/jobs/1/?token=abc.def-ghi&x=1", "GET /ws/jobs/1/?token=[redacted]&x=1"),
        ("access_token=abc&refresh_token=def&page=2", "access_token=[redacted]&refresh_token=[redacted]&page=2"),
        ("<ASGIRequest: GET '/api/v1/x?API_KEY=k1'>", "<ASGIRequest: GET '/api/v1/x?API_KEY=[redacted]'>"),
        (
            "/b/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=ff",
            "/b/k?X-Amz-Credential=[redacted]&X-Amz-Signature=[redacted]",
        ),
        ("Authorization: Bearer abc.def", "Authorization: Bearer [redacted]"),
        ("bad token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig here", "bad token [redacted] here"),
        ("tokens=3&page=2&next=/x?q=token", "tokens=3&page=2&next=/x?q=token"),
    ],
)
def test_credentials_in_urls_and_headers_are_redacted(text, redacted):
    assert redact_secrets(text) == redacted


def test_sentry_gets_no_token_from_the_query_string_or_the_authorization_header(fake_sentry):
    # given: a request that carries its credentials in every place a client may put them
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzZW50cnkifQ.c2lnbmF0dXJl"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/test-only/unexpected-error",
        "root_path": "",
        "query_string": f"token={token}&access_token={token}&page=2".encode(),
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"x-request-id", b"req-sentry-token"),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    # when: its view fails in a process started with SENTRY_DSN, served by Django's ASGI handler as in production
    result = run_python(
        "import asyncio, django, sentry_sdk; django.setup()\n"
        "from asgiref.testing import ApplicationCommunicator\n"
        "from django.core.asgi import get_asgi_application\n"
        "from django.test import override_settings\n"
        "async def serve():\n"
        f"    communicator = ApplicationCommunicator(get_asgi_application(), {scope!r})\n"
        "    await communicator.send_input({'type': 'http.request', 'body': b''})\n"
        "    return (await communicator.receive_output(10))['status']\n"
        f"with override_settings(ROOT_URLCONF={__name__!r}):\n"
        "    assert asyncio.run(serve()) == 500\n"
        "sentry_sdk.flush(timeout=10)\n",
        {"MLOPS_ENV": "test", "SENTRY_DSN": fake_sentry.dsn},
    )
    # then: the event is there, with the request, and the token nowhere in it
    assert result.returncode == 0, result.stderr
    [event] = fake_sentry.events()
    assert event["tags"]["request_id"] == "req-sentry-token"
    assert event["request"]["query_string"] == "token=[redacted]&access_token=[redacted]&page=2"
    assert token not in json.dumps(event)
    assert token.split(".")[1] not in json.dumps(event)


def production_web_command(port: int) -> list[str]:
    """docker-compose.yml's web command (the Dockerfile's CMD with recycling), bound to a free loopback port."""
    command = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]["web"]["command"]
    assert command[0] == "gunicorn" and any(word.startswith("--bind") for word in command), command
    return [
        sys.executable,
        "-m",
        "gunicorn",
        *(f"--bind=127.0.0.1:{port}" if word.startswith("--bind") else word for word in command[1:]),
    ]


@pytest.mark.django_db(transaction=True, databases=["default", "reader"])
@pytest.mark.usefixtures("committed_tenants")
@pytest.mark.parametrize(
    "server_command",
    [lambda port: web_server_command(str(port)), production_web_command],
    ids=["make-run", "production"],
)
def test_a_websocket_token_reaches_neither_the_server_log_nor_sentry(
    server_command, auth0, platform, make_token, fake_sentry, tmp_path
):
    # given: the web server as `make run` or production starts it, reporting to Sentry
    # gunicorn's control socket goes under XDG_RUNTIME_DIR, so a concurrent run elsewhere cannot clash with it.
    env = live_environment(auth0, platform, SENTRY_DSN=fake_sentry.dsn, WEB_CONCURRENCY=1, XDG_RUNTIME_DIR=tmp_path)
    server = start_asgi_server(env, tmp_path, command=server_command)
    token = make_token(TENANT_A)
    job_id = uuid.uuid4()
    try:
        # when: a websocket authenticates with ?token= (the job is unknown, so it is accepted and closed with 4404),
        with connect(f"{server.ws_url}/ws/jobs/{job_id}/?token={token}", open_timeout=10) as websocket:
            with pytest.raises(ConnectionClosed) as closed:
                websocket.recv(timeout=10)
        assert closed.value.rcvd.code == 4404
        # one's handshake fails (no route: an unexpected error, reported to Sentry with the ASGI scope in its frames),
        with pytest.raises(InvalidStatus):
            connect(f"{server.ws_url}/ws/nowhere/?token={token}", open_timeout=10)
        # and an HTTP request carries the token in its query string too (an unknown parameter there: a 400 naming it)
        response = httpx.get(
            f"{server.url}/api/v1/projects/?token={token}", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert response.status_code == 400, response.text
        assert token not in response.text
        events = wait_until(
            fake_sentry.events, timeout=30, what="the failed handshake's Sentry event", logs_of=(server,)
        )
    finally:
        server.stop()
    # then: the log shows each request, with the token redacted
    log = server.log()
    assert f"/ws/jobs/{job_id}/?token=[redacted]" in log
    assert "Exception in ASGI application" in log
    assert '"path": "/api/v1/projects/"' in log
    # and neither the log nor Sentry has the token, or its claims alone
    assert "Exception in ASGI application" in json.dumps(events)
    for where, text in (("server log", log), ("Sentry", json.dumps(events))):
        assert token not in text, where
        assert token.split(".")[1] not in text, where
