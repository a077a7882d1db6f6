"""The committed schema (docs/openapi.yaml) as a check of every response a test gets from the API: its status is
documented for the operation, its content type is one the operation declares for it, and its JSON body conforms.

The `api_client` fixture checks each response of the tests' APIClient with it, so every integration test of an API
also tests that the schema tells the truth about it.
"""

import functools
import re
from pathlib import Path

import orjson
import yaml
from openapi_schema_validator import OAS30ReadValidator

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
API_PREFIX = "/api/v1/"


class ContractViolation(AssertionError):
    """A response the committed schema does not allow: its status, content type or body."""


@functools.cache
def _schema() -> tuple[dict, list[tuple[re.Pattern, str]]]:
    """The document (loaded once per session) and a pattern for each of its paths."""
    schema = _null_beside_references(yaml.safe_load(SCHEMA_PATH.read_text()))
    routes = [
        (re.compile("^" + re.sub(r"\\{\w+\\}", "[^/]+", re.escape(path)) + "$"), path) for path in schema["paths"]
    ]
    return schema, routes


def _null_beside_references(node):
    """drf-spectacular writes a nullable reference as `allOf: [$ref]` with `nullable: true` beside it, which
    schemathesis and the client generators read as "or null"; a strict OAS 3.0 validator ignores that `nullable`."""
    if isinstance(node, list):
        return [_null_beside_references(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _null_beside_references(value) for key, value in node.items()}
    if node.get("nullable") and "type" not in node:
        rest = {key: value for key, value in node.items() if key != "nullable"}
        return {"anyOf": [rest, {"nullable": True, "enum": [None]}]}
    return node


@functools.cache
def _validator(path: str, method: str, code: str, media_type: str) -> OAS30ReadValidator:
    """The validator of one response body, the document's components beside it so that its $refs resolve."""
    schema, _ = _schema()
    body = schema["paths"][path][method]["responses"][code]["content"][media_type]["schema"]
    return OAS30ReadValidator({**body, "components": schema["components"]})


def _media_type_matches(declared: str, received: str) -> bool:
    if declared.endswith("/*"):
        return received.startswith(declared[:-1])
    return declared == received


def check_response(method: str, path: str, status: int, content_type: str | None, body: bytes | None) -> None:
    """Raise ContractViolation where the response of `method path` is not one the schema documents. `body` None:
    a streamed body, which is not read here (the test reads it)."""
    if not path.startswith(API_PREFIX):
        return  # the schema, the docs, health checks and static files are not operations of the contract
    schema, routes = _schema()
    where = f"{method} {path} answered {status}"
    # a literal segment (/datarows/delete) wins over a parameter (/datarows/{datarow_id})
    template = min(
        (template for regex, template in routes if regex.match(path)),
        key=lambda template: template.count("{"),
        default=None,
    )
    if template is None:
        return  # no route of the API (a test's own view); that every route is in the schema is checked by generation
    operation = schema["paths"][template].get(method.lower())
    if operation is None:
        if status == 405:
            return
        raise ContractViolation(f"{where}, but the schema has no such operation")
    responses = operation["responses"]
    code = str(status)
    if code not in responses:
        raise ContractViolation(
            f"{where}, which {operation['operationId']} does not document (it documents {sorted(responses)})"
        )
    content = responses[code].get("content")
    if not content:
        if body:
            raise ContractViolation(f"{where} with a body, where the schema documents none: {body[:300]!r}")
        return
    media_type = (content_type or "").split(";")[0].strip()
    declared = next((name for name in content if _media_type_matches(name, media_type)), None)
    if declared is None:
        raise ContractViolation(f"{where} with content type {content_type!r}; documented: {sorted(content)}")
    if body is None or declared != "application/json":
        return
    validator = _validator(template, method.lower(), code, declared)
    errors = sorted(validator.iter_errors(orjson.loads(body)), key=lambda error: [str(part) for part in error.path])
    if errors:
        details = "\n".join(
            f"  at {'/'.join(map(str, error.path)) or '(root)'}: {error.message[:300]}" for error in errors[:10]
        )
        raise ContractViolation(
            f"{where} ({operation['operationId']}) with a body the schema does not allow:\n"
            f"{details}\nbody: {body[:1000]!r}"
        )
