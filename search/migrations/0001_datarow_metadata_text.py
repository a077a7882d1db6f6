from django.db import migrations

# MATCH(metadata.<path>, 'words') is true when one string at the path holds every word; all of a datarow's metadata
# strings then hold them too, so this index over the whole tree's words finds the candidates and the exact test on
# the path runs on those rows only (search/engines/postgres_compiler.py, _json_each). jsonb_to_tsvector with an explicit
# configuration is immutable, as an index expression must be.
METADATA_TEXT = "jsonb_to_tsvector('simple'::regconfig, metadata, '[\"string\"]'::jsonb)"


class Migration(migrations.Migration):
    dependencies = [("datasets", "0003_ontologyclass_coco_category_id")]

    operations = [
        migrations.RunSQL(
            f"CREATE INDEX datarow_metadata_text ON datasets_datarow USING gin (({METADATA_TEXT}))",
            "DROP INDEX datarow_metadata_text",
        ),
    ]
