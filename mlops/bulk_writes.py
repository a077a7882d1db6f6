"""Sessions that write in bulk on a psycopg connection of their own (imports, evaluation runs)."""

import psycopg


def skip_row_by_row_foreign_key_checks(conn: psycopg.Connection) -> None:
    """Foreign keys are checked by triggers, one query per inserted row at commit: about 40 % of PostgreSQL's time
    in an import or an evaluation run. Their writers guarantee the references set-based instead (they lock what the
    rows reference before writing them), so the session replaces the triggers (`session_replication_role =
    replica`, which also skips other triggers: the only ones, the slice member and evaluation match cleanups after
    datarow deletes, never fire here, since these sessions delete no datarow). It needs a superuser, rds_superuser
    on Aurora, or `GRANT SET ON PARAMETER session_replication_role`; without it the triggers stay and the writes are
    only slower."""
    try:
        conn.execute("SET session_replication_role = replica")
        conn.commit()
    except psycopg.errors.InsufficientPrivilege:
        conn.rollback()
