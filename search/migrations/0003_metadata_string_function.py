from django.db import migrations

# The string held at a metadata path reached through objects only (a strict jsonpath: no list on the way), or NULL
# when there is none or the value there is not a string. Per-path full-text indexes are built on
# to_tsvector('simple', search_metadata_string(metadata, path)) (search/engines/postgres_indexes.py,
# metadata_match_indexes), so MATCH on an indexed path is answered by its index without tokenizing each candidate.
# PL/pgSQL like search_metadata_datetime: never inlined, so a condition written the same way matches the index.
FUNCTION = """
CREATE FUNCTION search_metadata_string(metadata jsonb, path jsonpath) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    found jsonb := jsonb_path_query_first(metadata, path, '{}', true);
BEGIN
    IF jsonb_typeof(found) = 'string' THEN
        RETURN found #>> '{}';
    END IF;
    RETURN NULL;
END
$$
"""


class Migration(migrations.Migration):
    dependencies = [("search", "0002_metadata_datetime_function")]

    operations = [
        migrations.RunSQL(FUNCTION, "DROP FUNCTION search_metadata_string(jsonb, jsonpath)"),
    ]
