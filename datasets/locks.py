"""One advisory lock per dataset, taken by imports and deletes, so they are serialised or refused.

Session-level: it outlives the batch commits of an import, and PostgreSQL frees it when the session
ends, so a killed worker never leaves a dataset locked. The key is schema-qualified because dataset ids
repeat across tenant schemas.
"""

from django.db import connections

from mlops.db_routing import WRITER
from mlops.exceptions import Conflict

_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext(%s), %s)"
_UNLOCK = "SELECT pg_advisory_unlock(hashtext(%s), %s)"


def _key(dataset_id: int) -> list:
    return [f"{connections[WRITER].schema_name}.dataset", dataset_id]


def dataset_lock_take(cursor, dataset_id: int) -> None:
    cursor.execute(_TRY_LOCK, _key(dataset_id))
    if not cursor.fetchone()[0]:
        raise Conflict(
            f"Dataset {dataset_id} is busy: an import or a delete is running on it; try again when it ends.",
            {"dataset_id": dataset_id},
        )


def dataset_lock_release(cursor, dataset_id: int) -> None:
    cursor.execute(_UNLOCK, _key(dataset_id))
