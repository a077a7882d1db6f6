from django.db import migrations

# The planner's price of search_metadata_string. MATCH on a text path filters rows with
# to_tsvector('simple', coalesce(search_metadata_string(metadata, path), '')) where its index is not used, about 8 µs
# a row here (2.3 µs the PL/pgSQL call, the rest the tokenizing). At the default COST 100, a count=estimate's first
# 10,001 matches by id were priced within 1 % between a primary-key walk filtering every row (900 ms at 1M) and the
# caption's index with a sort (180 ms), and the planner took the walk. 300 to 600 give that statement the index and
# keep a first page's short serial walk (above 600 the page turns to parallel workers: 15 -> 29 ms).
COST = "ALTER FUNCTION search_metadata_string(jsonb, jsonpath) COST {}"


class Migration(migrations.Migration):
    dependencies = [("search", "0003_metadata_string_function")]

    operations = [
        migrations.RunSQL(COST.format(400), COST.format(100)),
    ]
