from django.db import migrations

# The datetime at a metadata path reached through objects only (a strict jsonpath: no list on the way), or NULL
# when there is none, it is not a string or not a valid timestamp. Declared immutable so expression indexes can be
# built on it per catalog path (search/engines/postgres_indexes.py, metadata_path_indexes): the cast to timestamptz
# depends on TimeZone and DateStyle, which the function fixes, so the same input always gives the same instant
# (UTC and ISO, as the application's connections use; a string without an offset is UTC). PL/pgSQL: a SQL function
# with SET clauses runs through the SQL-function executor on every call, five times slower per row.
FUNCTION = """
CREATE FUNCTION search_metadata_datetime(metadata jsonb, path jsonpath) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET "TimeZone" = 'UTC' SET "DateStyle" = 'ISO, MDY'
AS $$
DECLARE
    found jsonb := jsonb_path_query_first(metadata, path, '{}', true);
BEGIN
    IF jsonb_typeof(found) = 'string' AND pg_input_is_valid(found #>> '{}', 'timestamptz') THEN
        RETURN (found #>> '{}')::timestamptz;
    END IF;
    RETURN NULL;
END
$$
"""


class Migration(migrations.Migration):
    dependencies = [("search", "0001_datarow_metadata_text")]

    operations = [
        migrations.RunSQL(FUNCTION, "DROP FUNCTION search_metadata_datetime(jsonb, jsonpath)"),
    ]
