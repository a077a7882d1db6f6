"""The job websocket's published contract (docs/websocket-schemas/): every websocket test reads messages through
`job_message`, which fails the test on any message the schema does not allow."""

import json
from pathlib import Path

from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "websocket-schemas" / "job-message.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
Draft202012Validator.check_schema(SCHEMA)
_validator = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


def job_message(frame: str | bytes) -> dict:
    """One text frame of ws/jobs/<id>/, parsed and checked against the schema."""
    message = json.loads(frame)
    errors = sorted(_validator.iter_errors(message), key=lambda error: list(error.absolute_path))
    assert not errors, f"a websocket message breaks {SCHEMA_PATH.name}: " + "; ".join(
        f"{'/'.join(map(str, error.absolute_path)) or '(message)'}: {error.message}" for error in errors
    )
    return message
