from django.db import migrations

# The datetime at a metadata path reached through objects only (a strict jsonpath: no list on the way), or NULL
# when there is none, it is not a string or not a valid timestamp. Declared immutable so expression indexes can be
# built on it per catalog path (search/engines/postgres.py, metadata_datetime_indexes): the cast to timestamptz
# depends on TimeZone and DateStyle, which the function fixes, so the same input always gives the same instant
# (UTC and ISO, as the application's connections use; a string without an offset is UTC).
FUNCTION = """
CREATE FUNCTION search_metadata_datetime(metadata jsonb, path jsonpath) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET "TimeZone" = 'UTC' SET "DateStyle" = 'ISO, MDY'
AS $$
    SELECT CASE WHEN jsonb_typeof(found.value) = 'string' AND pg_input_is_valid(found.value #>> '{}', 'timestamptz')
                THEN (found.value #>> '{}')::timestamptz END
    FROM (SELECT jsonb_path_query_first(metadata, path, '{}', true) AS value) AS found
$$
"""


class Migration(migrations.Migration):
    dependencies = [("search", "0001_datarow_metadata_text")]

    operations = [
        migrations.RunSQL(FUNCTION, "DROP FUNCTION search_metadata_datetime(jsonb, jsonpath)"),
    ]
