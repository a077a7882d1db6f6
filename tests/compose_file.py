"""docker-compose.yml and the Dockerfile read the way Compose and the image builder read them, without Docker.

YAML resolves the `x-` anchors and `<<` merges; `interpolate` does Compose's variable substitution; the Dockerfile's
instructions come with their continuation lines joined.
"""

import re
import shlex

import yaml

from tests.fresh_process import REPO_ROOT

COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?::-([^}]*))?\}")


def interpolate(value, shell_env: dict[str, str]):
    """Compose's interpolation of the forms this file uses: ${NAME}, ${NAME:-default} and $$ (a literal $)."""
    if isinstance(value, dict):
        return {key: interpolate(item, shell_env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, shell_env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return shell_env.get(match.group(1)) or match.group(2) or ""

    return COMPOSE_VARIABLE.sub(substitute, value)


def load_compose(shell_env: dict[str, str] | None = None) -> dict:
    return interpolate(yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text()), shell_env or {})


def container_environment(service: dict, shell_env: dict[str, str]) -> dict[str, str]:
    """What the container sees: a variable listed without a value comes from the shell, or is left unset."""
    return {
        name: shell_env[name] if value is None else str(value)
        for name, value in service["environment"].items()
        if value is not None or name in shell_env
    }


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def dockerfile_environment() -> dict[str, str]:
    """The image's ENV, which every container of it starts with (the service's `environment` goes on top)."""
    pairs = [
        word.split("=", 1)
        for instruction, args in dockerfile_instructions()
        if instruction == "ENV"
        for word in shlex.split(args)
    ]
    return dict(pairs)
