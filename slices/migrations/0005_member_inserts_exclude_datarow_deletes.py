# Members have no foreign key (0003): a datarow delete removes its members in its own statement, but a member
# inserted by a transaction it cannot see yet (a freeze, an ids slice, a combination) would outlive its datarow,
# and a freeze whose snapshot predates a delete's commit would insert the deleted row. So every statement that
# deletes datarows first takes a shared transaction-scoped advisory lock of the tenant's members, and every member
# insert takes it exclusively before its statement starts (slices.services._members_insert): deletes never wait
# for each other, and a delete and a member insert run one after the other. The key is the same on both sides:
# the schema of the tenant's member table.

from django.db import migrations

_DELETES_EXCLUDE_MEMBER_INSERTS = """
    CREATE FUNCTION slices_member_inserts_excluded() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock_shared(hashtextextended(TG_TABLE_SCHEMA || '.slices_slicemember', 0));
        RETURN NULL;
    END $$;
    CREATE TRIGGER slices_member_inserts_excluded BEFORE DELETE ON datasets_datarow
        FOR EACH STATEMENT EXECUTE FUNCTION slices_member_inserts_excluded();
"""
_DROP = """
    DROP TRIGGER slices_member_inserts_excluded ON datasets_datarow;
    DROP FUNCTION slices_member_inserts_excluded();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("datasets", "0006_datarow_tags_metadata_gin"),
        ("slices", "0004_drop_indexes_other_indexes_serve"),
    ]

    operations = [
        migrations.RunSQL(_DELETES_EXCLUDE_MEMBER_INSERTS, _DROP),
    ]
