"""Running a compiled query in tests: the ids, in id order, of the datarows it selects (the PostgreSQL engine itself
pages, counts and facets over compile_filter)."""

from django.db import connections

from mlops import tables
from search.engines.postgres_compiler import compile_filter
from search.engines.postgres_sql import CompiledQuery
from search.ql.validation import ValidQuery


def compile_query(
    query: ValidQuery, *, project_id: int, dataset_id: int | None = None, using: str | None = None
) -> CompiledQuery:
    """The statement selecting the ids, in id order, of the project's datarows (or one dataset's) that match."""
    condition = compile_filter(query, project_id=project_id, dataset_id=dataset_id, using=using)
    return CompiledQuery(
        f"SELECT d.id FROM {tables.DATAROW} AS d WHERE {condition.sql} ORDER BY d.id", condition.params
    )


def datarow_ids(
    query: ValidQuery, *, project_id: int, dataset_id: int | None = None, using: str = "default"
) -> list[int]:
    """Run the query in the tenant schema that the connection is set to."""
    compiled = compile_query(query, project_id=project_id, dataset_id=dataset_id, using=using)
    with connections[using].cursor() as cursor:
        cursor.execute(compiled.sql, compiled.params)
        return [row[0] for row in cursor.fetchall()]
