"""Start-up refuses a production that is unsafe or incomplete, and says why; a complete one starts."""

import json
import secrets

import pytest

from tests.fresh_process import run_python

DJANGO_SETUP = "import django; django.setup()"
PRODUCTION_ENV = {
    "MLOPS_ENV": "production",
    "DJANGO_SECRET_KEY": "a-production-secret",
    "DATABASE_URL": "postgres://mlops:secret@writer.cluster.example:5432/mlops",
    "DATABASE_READER_URL": "postgres://mlops:secret@reader.cluster.example:5432/mlops",
    "REDIS_URL": "redis://cache.example:6379/0",
    "PLATFORM_URL": "https://platform.example",
    "JWT_ISSUER": "https://tenant.auth0.example/",
    "JWT_JWKS_URL": "https://tenant.auth0.example/.well-known/jwks.json",
    "PLATFORM_SERVICE_KEY": "a-platform-service-key",
    "DJANGO_ALLOWED_HOSTS": "api.example.com",
}
REQUIRED_IN_PRODUCTION = [
    "DJANGO_SECRET_KEY",
    "PLATFORM_URL",
    "JWT_ISSUER",
    "JWT_JWKS_URL",
    "PLATFORM_SERVICE_KEY",
    "DJANGO_ALLOWED_HOSTS",
]


def start_up_error(env: dict[str, str]) -> str:
    """The last line of the traceback a failed start-up prints: what an operator reads first."""
    result = run_python(DJANGO_SETUP, env)
    assert result.returncode != 0, "start-up should have failed"
    return result.stderr.strip().splitlines()[-1]


def test_complete_production_env_starts_without_dev_auth():
    # when
    result = run_python(
        "import json; " + DJANGO_SETUP + "; from django.conf import settings as s; "
        "print(json.dumps({'production': s.IS_PRODUCTION, 'dev_auth': s.DEV_AUTH, 'debug': s.DEBUG}))",
        PRODUCTION_ENV,
    )
    # then
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"production": True, "dev_auth": False, "debug": False}


def test_production_refuses_dev_auth():
    error = start_up_error({**PRODUCTION_ENV, "MLOPS_DEV_AUTH": "1"})

    assert error == (
        "django.core.exceptions.ImproperlyConfigured: MLOPS_DEV_AUTH cannot be enabled when MLOPS_ENV=production"
    )


def test_unset_mlops_env_means_production_and_refuses_dev_auth():
    env = {name: value for name, value in PRODUCTION_ENV.items() if name != "MLOPS_ENV"}

    error = start_up_error({**env, "MLOPS_DEV_AUTH": "1"})

    assert "MLOPS_DEV_AUTH cannot be enabled when MLOPS_ENV=production" in error


@pytest.mark.parametrize("missing", REQUIRED_IN_PRODUCTION)
def test_production_without_a_required_variable_names_it(missing):
    env = {name: value for name, value in PRODUCTION_ENV.items() if name != missing}

    error = start_up_error(env)

    assert error.startswith("django.core.exceptions.ImproperlyConfigured: ")
    assert missing in error
    assert not (set(REQUIRED_IN_PRODUCTION) - {missing}) & set(error.replace(",", " ").split())


def test_an_empty_variable_counts_as_missing():
    # docker-compose passes `${PLATFORM_URL:-}` through, which is an empty string when the shell has none.
    error = start_up_error({**PRODUCTION_ENV, "PLATFORM_URL": ""})

    assert error.endswith("missing required settings in production: PLATFORM_URL")


def test_unknown_mlops_env_is_refused():
    error = start_up_error({**PRODUCTION_ENV, "MLOPS_ENV": "prod"})

    assert "MLOPS_ENV must be production, development or test, not 'prod'" in error


def test_development_with_dev_auth_needs_none_of_the_production_variables():
    result = run_python(DJANGO_SETUP, {"MLOPS_ENV": "development", "MLOPS_DEV_AUTH": "1"})

    assert result.returncode == 0, result.stderr


def test_outbound_fetches_allow_no_internal_network_unless_configured_and_a_bad_network_is_named():
    result = run_python(
        DJANGO_SETUP + "; from django.conf import settings as s; print(s.OUTBOUND_ALLOWED_NETWORKS)", PRODUCTION_ENV
    )
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr
    error = start_up_error({**PRODUCTION_ENV, "OUTBOUND_ALLOWED_NETWORKS": "10.0.0.0/8, 10.0.0.0/33"})
    assert "OUTBOUND_ALLOWED_NETWORKS" in error and "10.0.0.0/33" in error


def test_production_passes_the_deploy_checks_without_a_warning():
    # given: production as deployed, with a secret key as random as Django asks for
    env = {**PRODUCTION_ENV, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
    # when
    result = run_python(
        "from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        env,
    )
    # then
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_redirects_to_https_sends_hsts_refuses_unknown_hosts_and_lets_probes_use_http():
    # given: production behind a load balancer that ends TLS; no database or Redis reachable (nothing needs one here)
    env = {**PRODUCTION_ENV, "DATABASE_URL": "postgres://mlops@127.0.0.1:1/mlops", "REDIS_URL": "redis://127.0.0.1:1/0"}
    # when
    result = run_python(
        "import json; " + DJANGO_SETUP + "\n"
        "from django.test import Client\n"
        "client = Client(HTTP_HOST='api.example.com')\n"
        "def seen(path, **headers):\n"
        "    response = client.get(path, **headers)\n"
        "    return {'status': response.status_code, 'location': response.get('Location'),\n"
        "            'hsts': response.get('Strict-Transport-Security')}\n"
        "print(json.dumps({\n"
        "    'api over http': seen('/api/v1/projects/?page=2'),\n"
        "    'api over https': seen('/api/v1/projects/', HTTP_X_FORWARDED_PROTO='https'),\n"
        "    'unknown host': seen('/api/v1/projects/', HTTP_X_FORWARDED_PROTO='https', HTTP_HOST='evil.example'),\n"
        "    'healthz over http': seen('/healthz'),\n"
        "    'healthz from a probe address': seen('/healthz', HTTP_HOST='10.1.2.3:8000'),\n"
        "    'readyz over http': seen('/readyz'),\n"
        "}))",
        env,
    )
    # then
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["api over http"] == {
        "status": 301,
        "location": "https://api.example.com/api/v1/projects/?page=2",
        "hsts": None,
    }
    assert seen["api over https"] == {"status": 401, "location": None, "hsts": "max-age=31536000; includeSubDomains"}
    assert seen["unknown host"]["status"] == 400
    assert seen["healthz over http"] == {"status": 200, "location": None, "hsts": None}
    # probes send the instance's address as Host, which ALLOWED_HOSTS does not list
    assert seen["healthz from a probe address"] == {"status": 200, "location": None, "hsts": None}
    # not ready (no database), but answered over plain HTTP rather than redirected
    assert seen["readyz over http"] == {"status": 503, "location": None, "hsts": None}


def test_development_serves_plain_http_on_loopback_with_any_host():
    result = run_python(
        DJANGO_SETUP + "; from django.test import Client; "
        "print(Client(HTTP_HOST='127.0.0.1:8000').get('/healthz').status_code)",
        {"MLOPS_ENV": "development", "MLOPS_DEV_AUTH": "1"},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "200"


@pytest.mark.parametrize(
    ("plugins", "reason"),
    [
        ("{not json", "TRAINER_PLUGINS must be a JSON object"),
        ('["x"]', "TRAINER_PLUGINS: Trainer plugins must be a mapping of names to paths, not list."),
        ('{"image-classifier": "pkg.mod:Other"}', "would replace the built-in trainer of that name"),
        ('{"x": "os.system"}', "TRAINER_PLUGINS: Trainer plugin 'x': 'os.system' is not a name and a"),
    ],
)
def test_a_malformed_trainer_plugins_setting_stops_start_up_saying_why(plugins, reason):
    error = start_up_error({**PRODUCTION_ENV, "TRAINER_PLUGINS": plugins})

    assert reason in error


def test_trainer_plugins_registers_names_without_importing_them_at_start_up():
    result = run_python(
        DJANGO_SETUP + "; import sys; from django.conf import settings as s; "
        "print(s.TRAINER_PLUGINS, 'tests.training.exiting_plugin' in sys.modules)",
        {**PRODUCTION_ENV, "TRAINER_PLUGINS": '{"exiting": "tests.training.exiting_plugin:Trainer"}'},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'exiting': 'tests.training.exiting_plugin:Trainer'} False"


@pytest.mark.parametrize(("mlops_env", "demo_jobs"), [("production", False), ("development", True), ("test", True)])
def test_the_count_demo_job_starts_only_in_development_and_test(mlops_env, demo_jobs):
    # when: the start API's input is checked in a process with that environment's settings
    result = run_python(
        "import json; " + DJANGO_SETUP + "; from django.conf import settings; from jobs.apis import JobListStartApi; "
        "data = JobListStartApi.StartInputSerializer(data={'kind': 'count', 'steps': 1, 'delay_seconds': 0}); "
        "print(json.dumps({'demo_jobs': settings.DEMO_JOBS, 'valid': data.is_valid(), 'errors': data.errors}))",
        {**PRODUCTION_ENV, "MLOPS_ENV": mlops_env},
    )
    # then
    assert result.returncode == 0, result.stderr
    errors = {} if demo_jobs else {"kind": ["The 'count' demo job runs only where MLOPS_ENV is development or test."]}
    assert json.loads(result.stdout) == {"demo_jobs": demo_jobs, "valid": demo_jobs, "errors": errors}
