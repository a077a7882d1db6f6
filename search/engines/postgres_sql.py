"""SQL pieces the PostgreSQL query compiler (postgres_compiler) and the per-path metadata indexes
(postgres_indexes) share: a compiled statement and the jsonpaths that read a metadata path."""

import json
from dataclasses import dataclass

TEXT_SEARCH_CONFIG = "simple"


@dataclass(frozen=True)
class CompiledQuery:
    sql: str
    params: list


def jsonpath_values(path: tuple[str, ...]) -> str:
    """Every value at the path; lax mode steps into lists on the way and [*] into a list at the end."""
    return "$" + "".join(f".{json.dumps(key)}" for key in path) + "[*]"


def jsonpath_direct(path: tuple[str, ...]) -> str:
    """The value held at the path through objects only: strict mode, so a list on the way finds nothing (and,
    unlike `#>`, a key such as "0" never indexes into a list)."""
    return "strict $" + "".join(f".{json.dumps(key)}" for key in path)
