from django.db import migrations

# An object attribute's value held directly under its name, typed, or NULL when it holds another JSON type (a list
# included): the expressions of the per-attribute indexes of `manage.py search_attribute_indexes`
# (search/engines/postgres_indexes.py, attribute_indexes) and of the conditions that use them. Plain SQL functions,
# so the planner inlines them into the same expression in the index and in the query.
FUNCTIONS = {
    "boolean": "CASE WHEN jsonb_typeof(attributes -> name) = 'boolean' THEN (attributes -> name)::boolean END",
    "number": "CASE WHEN jsonb_typeof(attributes -> name) = 'number' THEN (attributes -> name)::numeric END",
    "string": "CASE WHEN jsonb_typeof(attributes -> name) = 'string' THEN attributes ->> name END",
}
SQL_TYPES = {"boolean": "boolean", "number": "numeric", "string": "text"}


class Migration(migrations.Migration):
    dependencies = [("search", "0004_metadata_string_cost")]

    operations = [
        migrations.RunSQL(
            f"CREATE FUNCTION search_attribute_{kind}(attributes jsonb, name text) RETURNS {SQL_TYPES[kind]} "
            f"LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {body} $$",
            f"DROP FUNCTION search_attribute_{kind}(jsonb, text)",
        )
        for kind, body in FUNCTIONS.items()
    ]
