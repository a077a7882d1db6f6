"""docker-compose.yml and the Dockerfile, checked without Docker: structure, wiring and the commands' targets.

No Docker engine runs where the suite runs, so these read the files the way Compose and the image would
(interpolation, merge keys, gunicorn's and Celery's own argument parsing) and import what they name.
"""

import argparse
import ast
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from celery.app.utils import find_app
from django.core.management import get_commands
from gunicorn import util as gunicorn_util
from gunicorn.config import Config as GunicornConfig

from mlops.celery import app as celery_app
from tests.compose_file import container_environment, dockerfile_instructions, load_compose
from tests.fresh_process import REPO_ROOT, run_python

APP_PROCESSES = ["web", "worker", "beat"]
# The service each routing variable must point at; the settings read every one of them.
ROUTED_SERVICES = {
    "DATABASE_URL": "writer",
    "DATABASE_READER_URL": "reader",
    "REDIS_URL": "redis",
    "ELASTICSEARCH_URL": "elasticsearch",
}
# Behind a compose profile: the app services start without them.
OPTIONAL_SERVICES = {"elasticsearch"}
# Defaults to REDIS_URL by design: one Redis is broker, cache and channel layer.
FOLLOWS_ANOTHER_VARIABLE = {"CELERY_BROKER_URL"}
POSTGRES_15_PGDATA = "/var/lib/postgresql/data"


def passes_through(value, name: str) -> bool:
    return value is None or value.startswith("${" + name)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def settings_variables() -> set[str]:
    """Every environment variable mlops/settings.py reads through its env_* helpers."""
    tree = ast.parse((REPO_ROOT / "mlops" / "settings.py").read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id.startswith("env_")
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


@pytest.fixture(scope="module")
def production_required() -> set[str]:
    """Ask the settings themselves: start as production with nothing set, adding each variable the error names."""
    env = {"MLOPS_ENV": "production"}
    required: set[str] = set()
    for _ in range(10):
        result = run_python("import mlops.settings", env)
        if result.returncode == 0:
            return required
        error = result.stderr.strip().splitlines()[-1]
        named = set(re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", error)) - env.keys()
        assert named, f"production start-up failed without naming a variable: {error}"
        required |= named
        env.update(dict.fromkeys(named, "set-by-the-deployer"))
    raise AssertionError("production settings kept asking for more variables")


def gunicorn_options(command: list[str]) -> argparse.Namespace:
    assert command[0] == "gunicorn", command
    # gunicorn's own parser: an option it does not know fails here as it would in the container.
    return GunicornConfig().parser().parse_args(command[1:])


def option_value(words: list[str], *names: str) -> str | None:
    """The value of `--name value`, `--name=value` or `-n value` in a command line."""
    for index, word in enumerate(words):
        for name in names:
            if word == name:
                return words[index + 1]
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


def shell_words_of(script: str, program: str) -> list[str]:
    """The words of the first line of a shell script that runs `program`, continuation lines joined."""
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line)
        if program in words:
            return words[words.index(program) :]
    raise AssertionError(f"{program} is not run by:\n{script}")


def test_every_service_the_app_needs_exists(services):
    assert {"writer", "reader", "redis", "elasticsearch", "migrate", *APP_PROCESSES} <= services.keys()


@pytest.mark.parametrize("process", APP_PROCESSES)
def test_app_processes_get_every_variable_production_requires_or_that_routes_a_service(
    services, production_required, process
):
    # given
    environment = services[process]["environment"]
    routing = {name for name in settings_variables() if name.endswith("_URL")} - FOLLOWS_ANOTHER_VARIABLE
    # then
    assert ROUTED_SERVICES.keys() <= routing
    assert routing - environment.keys() == set()
    assert production_required - environment.keys() == set()


@pytest.mark.parametrize("process", APP_PROCESSES)
def test_production_variables_come_from_the_deployers_environment(production_required, process):
    # given: the file as written, before interpolation
    raw = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"][process]["environment"]
    # then: secrets and Auth0/platform endpoints are passed through, never fixed in the file
    for name in production_required:
        assert passes_through(raw[name], name), f"{process}: {name}={raw[name]!r}"


@pytest.mark.parametrize("process", APP_PROCESSES)
def test_routing_variables_point_at_the_compose_services_or_pass_through(services, process):
    # given: the file as written, before interpolation
    raw = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"][process]["environment"]
    environment = services[process]["environment"]
    routing = {name for name in settings_variables() if name.endswith("_URL")} - FOLLOWS_ANOTHER_VARIABLE
    # then
    for variable, service in ROUTED_SERVICES.items():
        assert urlsplit(environment[variable]).hostname == service, variable
        assert service in services
    # and what compose does not run (Auth0, the platform, S3) is the deployer's to point at
    for variable in routing - ROUTED_SERVICES.keys():
        assert passes_through(raw[variable], variable), f"{process}: {variable}={raw[variable]!r}"


def test_database_urls_use_the_writers_credentials_and_database(services):
    writer_env = services["writer"]["environment"]
    for process in APP_PROCESSES:
        for variable in ("DATABASE_URL", "DATABASE_READER_URL"):
            url = urlsplit(services[process]["environment"][variable])
            # A physical replica has the writer's roles and databases, so both URLs name the same ones.
            assert (url.username, url.password, url.path, url.port) == (
                writer_env["POSTGRES_USER"],
                writer_env["POSTGRES_PASSWORD"],
                f"/{writer_env['POSTGRES_DB']}",
                5432,
            ), (process, variable)


@pytest.mark.parametrize("process", APP_PROCESSES)
def test_app_processes_wait_for_migrations_and_healthy_backing_services(services, process):
    depends_on = services[process]["depends_on"]
    assert depends_on["migrate"] == {"condition": "service_completed_successfully"}
    for service in set(ROUTED_SERVICES.values()) - OPTIONAL_SERVICES:
        assert depends_on[service] == {"condition": "service_healthy"}, service
    # waited for when its profile is on, and no reason not to start when it is off
    for service in OPTIONAL_SERVICES:
        assert depends_on[service] == {"condition": "service_healthy", "required": False}, service


def test_elasticsearch_runs_only_with_its_profile_and_search_defaults_to_postgres(services):
    # then: only Elasticsearch is behind a profile, and nothing needs it without that profile
    assert {name for name, service in services.items() if service.get("profiles")} >= OPTIONAL_SERVICES
    assert services["elasticsearch"]["profiles"] == ["elasticsearch"]
    for process in ("migrate", *APP_PROCESSES):
        assert services[process]["environment"]["SEARCH_ENGINE"] == "postgres", process


def test_compose_environment_starts_the_settings_on_elasticsearch_when_the_deployer_asks(services):
    # given: the deployer's SEARCH_ENGINE=elasticsearch (with --profile elasticsearch)
    shell_env = {"SEARCH_ENGINE": "elasticsearch"}
    environment = container_environment(load_compose(shell_env)["services"]["web"], shell_env)
    # when
    result = run_python(
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SEARCH_ENGINE, s.ELASTICSEARCH_URL)",
        environment,
    )
    # then
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["elasticsearch", "http://elasticsearch:9200"]


def test_depends_on_conditions_point_at_services_that_can_satisfy_them(services):
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: the list form of depends_on waits for nothing"
        for target, rule in depends_on.items():
            assert target in services, f"{name} depends on a missing service {target}"
            # Compose refuses a required dependency on a service its profiles leave out.
            if rule.get("required", True):
                assert set(services[target].get("profiles", [])) <= set(service.get("profiles", [])), (
                    f"{name} requires {target}, which runs only with the profile {services[target]['profiles']}"
                )
            condition = rule["condition"]
            if condition == "service_healthy":
                assert services[target].get("healthcheck", {}).get("test"), f"{target} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} must be one-shot"
            else:
                assert condition == "service_started", f"{name} -> {target}: unknown condition {condition}"


def test_local_compose_environment_starts_the_settings_with_dev_auth_and_both_databases(services):
    # when: the settings start with exactly what compose gives the web process
    result = run_python(
        "import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({"
        "'env': s.MLOPS_ENV, 'dev_auth': s.DEV_AUTH, 'writer': s.DATABASES['default']['HOST'], "
        "'reader': s.DATABASES['reader']['HOST'], 'redis': s.REDIS_URL, 'search': s.SEARCH_ENGINE, "
        "'elasticsearch': s.ELASTICSEARCH_URL}))",
        container_environment(services["web"], shell_env={}),
    )
    # then
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "env": "development",
        "dev_auth": True,
        "writer": "writer",
        "reader": "reader",
        "redis": "redis://redis:6379/0",
        "search": "postgres",
        "elasticsearch": "http://elasticsearch:9200",
    }


def test_compose_environment_starts_the_settings_in_production_when_the_deployer_sets_the_variables(
    production_required,
):
    # given: a deployer's shell with production mode and every variable production requires
    shell_env = {
        "MLOPS_ENV": "production",
        "MLOPS_DEV_AUTH": "0",
        **dict.fromkeys(production_required, "https://set-by-the-deployer.example/"),
    }
    environment = container_environment(load_compose(shell_env)["services"]["web"], shell_env)
    # when
    result = run_python(
        "import django; django.setup(); from django.conf import settings as s; "
        "assert s.IS_PRODUCTION and not s.DEV_AUTH",
        environment,
    )
    # then
    assert result.returncode == 0, result.stderr


def test_reader_is_a_streaming_replica_of_the_writer(services):
    # given
    writer, reader = services["writer"], services["reader"]
    script = reader["entrypoint"][-1]
    basebackup = shell_words_of(script, "pg_basebackup")
    reader_env = reader["environment"]
    # then: a hot standby made from the writer with pg_basebackup -R, as the writer's replication role
    assert reader["image"] == writer["image"], "physical replication needs the same PostgreSQL major"
    assert option_value(basebackup, "-h", "--host") == "writer"
    assert "-R" in basebackup or "--write-recovery-conf" in basebackup
    assert option_value(basebackup, "-U", "--username") == "$REPLICATION_USER"
    assert reader_env["REPLICATION_USER"] == writer["environment"]["REPLICATION_USER"]
    assert reader_env["REPLICATION_PASSWORD"] == writer["environment"]["REPLICATION_PASSWORD"]
    # and the copy is the data directory the server then starts from
    assert option_value(basebackup, "-D", "--pgdata") == "$PGDATA"
    assert f"reader-data:{POSTGRES_15_PGDATA}" in reader["volumes"]
    assert script.rstrip().splitlines()[-1].strip() == "exec postgres"
    # and it waits for the writer before copying it
    wait = shell_words_of(script, "pg_isready")
    assert option_value(wait, "-h", "--host") == "writer"
    assert script.index("pg_isready") < script.index("pg_basebackup")
    # and it reports healthy only while it is a standby
    assert "pg_is_in_recovery()" in " ".join(reader["healthcheck"]["test"])


def test_writer_accepts_replication_from_the_readers_role(compose, services):
    # given
    writer = services["writer"]
    init_targets = {config["target"]: config["source"] for config in writer["configs"]}
    init_scripts = [
        compose["configs"][source]["content"]
        for target, source in init_targets.items()
        if target.startswith("/docker-entrypoint-initdb.d/") and target.endswith(".sh")
    ]
    script = "\n".join(init_scripts)
    # then
    assert "wal_level=replica" in writer["command"]
    assert re.search(r"CREATE ROLE \$REPLICATION_USER WITH REPLICATION LOGIN", script)
    assert re.search(r"host\s+replication\s+\$REPLICATION_USER\s", script)
    assert "pg_hba.conf" in script
    # over TCP, so the socket-only server of first-time init is not taken for the real one
    assert "--host=127.0.0.1" in writer["healthcheck"]["test"]


def test_elasticsearch_is_a_single_unsecured_local_node_of_the_clients_major(services):
    elasticsearch = services["elasticsearch"]
    client_major = re.search(r"^elasticsearch==(\d+)\.", (REPO_ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert elasticsearch["image"].rsplit(":", 1)[1].split(".")[0] == client_major
    assert elasticsearch["environment"]["discovery.type"] == "single-node"
    assert elasticsearch["environment"]["xpack.security.enabled"] == "false"
    assert "_cluster/health" in " ".join(elasticsearch["healthcheck"]["test"])


def test_migrate_is_one_shot_and_migrates_shared_then_tenant_schemas(services):
    migrate = services["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["command"][:2] == ["sh", "-c"]
    steps = [shlex.split(step) for step in migrate["command"][2].split("&&")]
    assert steps == [
        ["python", "manage.py", "migrate_schemas", "--shared"],
        ["python", "manage.py", "migrate_schemas", "--tenant"],
    ]
    assert (REPO_ROOT / "manage.py").exists()
    assert "migrate_schemas" in get_commands()


def web_commands() -> list[list[str]]:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    dockerfile_cmd = [json.loads(args) for instruction, args in dockerfile_instructions() if instruction == "CMD"]
    return [compose["services"]["web"]["command"], *dockerfile_cmd]


@pytest.mark.parametrize("command", web_commands(), ids=["compose-web", "dockerfile-cmd"])
def test_web_serves_the_asgi_application_with_gunicorn_and_uvicorn_workers(command):
    # given
    options = gunicorn_options(command)
    # then
    assert options.args == ["mlops.asgi:application"]
    assert options.worker_class == "uvicorn_worker.UvicornWorker"
    assert options.bind == ["0.0.0.0:8000"]
    # and what it names loads the way gunicorn loads it
    config = GunicornConfig()
    config.set("worker_class", options.worker_class)
    config.set("logger_class", options.logger_class)
    assert config.worker_class.__name__ == "UvicornWorker"
    assert config.logger_class.__name__ == "GunicornJsonLogger"
    from mlops.asgi import application

    assert gunicorn_util.import_app(options.args[0]) is application


def test_web_is_published_and_checked_on_the_port_gunicorn_binds(services):
    web = services["web"]
    assert "8000:8000" in web["ports"]
    assert "http://127.0.0.1:8000/healthz" in " ".join(web["healthcheck"]["test"])


@pytest.mark.parametrize(("process", "subcommand"), [("worker", "worker"), ("beat", "beat")])
def test_celery_processes_run_the_projects_celery_app(services, process, subcommand):
    command = services[process]["command"]
    assert command[0] == "celery"
    assert subcommand in command
    # find_app is how `celery -A` resolves its argument.
    assert find_app(option_value(command, "-A", "--app")) is celery_app


def test_beat_writes_its_schedule_to_a_volume_the_app_user_owns(services):
    beat = services["beat"]
    schedule = Path(option_value(beat["command"], "-s", "--schedule"))
    mounts = {volume.split(":")[1] for volume in beat["volumes"]}
    assert str(schedule.parent) in mounts


def test_app_image_is_built_from_this_repository(services):
    for process in ("migrate", *APP_PROCESSES):
        assert services[process]["build"] == ".", process
    assert (REPO_ROOT / "Dockerfile").exists()


def test_services_built_differently_tag_images_of_their_own(services):
    # Compose tags each service's build with its `image`: two builds under one name leave whichever finished last
    # (the web with torch, or a training worker without it).
    builds: dict[str, set[str]] = {}
    for name, service in services.items():
        if "build" in service:
            build = service["build"]
            build = {"context": build} if isinstance(build, str) else build
            builds.setdefault(service.get("image", name), set()).add(json.dumps(build, sort_keys=True))
    assert {image: sorted(found) for image, found in builds.items() if len(found) > 1} == {}


def test_dockerfile_installs_requirements_before_copying_the_code():
    instructions = dockerfile_instructions()
    # the web's requirements unless the build asks for the training workers' (which add torch)
    assert ("ARG", "REQUIREMENTS=requirements.txt") in instructions
    copy_requirements = instructions.index(("COPY", "requirements.txt requirements-training.txt ./"))
    install = next(
        index
        for index, (instruction, args) in enumerate(instructions)
        if instruction == "RUN" and re.search(r'pip install .*-r "\$REQUIREMENTS"', args)
    )
    copy_code = instructions.index(("COPY", ". ."))
    assert copy_requirements < install < copy_code


def test_dockerfile_python_matches_the_makefiles():
    makefile_python = re.search(r"^PYTHON \?= python(\d+\.\d+)$", (REPO_ROOT / "Makefile").read_text(), re.M).group(1)
    base_image = next(args for instruction, args in dockerfile_instructions() if instruction == "FROM")
    assert base_image.startswith(f"python:{makefile_python}-")


def test_image_runs_as_a_user_that_owns_the_shared_data_volume(services):
    instructions = dockerfile_instructions()
    environment = " ".join(args for instruction, args in instructions if instruction == "ENV")
    data_dir = re.search(r"MLOPS_DATA_DIR=(\S+)", environment).group(1)
    user = next(args for instruction, args in instructions if instruction == "USER")
    assert user not in ("root", "0")
    assert any(
        instruction == "RUN" and re.search(rf"chown {user} \S*MLOPS_DATA_DIR", args)
        for instruction, args in instructions
    )
    for process in APP_PROCESSES:
        assert f"app-data:{data_dir}" in services[process]["volumes"], process


def test_dockerignore_keeps_local_environments_and_data_out_of_the_image():
    ignored = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".data", ".git"} <= ignored
