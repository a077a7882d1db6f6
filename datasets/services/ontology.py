from django.db import connections, transaction

from datasets.importers.records import BadRecord, check_class_path
from datasets.importers.staging import MAX_ENUM_VALUES, OBJECT_ATTRIBUTES_LEARN
from datasets.models import OntologyClass
from mlops.db_routing import WRITER
from mlops.exceptions import ApplicationError, Conflict
from projects.models import Project


def ontology_class_create(*, project: Project, name: str) -> OntologyClass:
    """Add the class `vehicle/car/sedan` and each missing ancestor (`vehicle`, `vehicle/car`), linked to its parent.

    The same tree imports build in SQL (importers/staging.py) for many classes at once; one class is an ORM job.
    """
    try:
        check_class_path(name, "name")
    except BadRecord as bad:
        raise ApplicationError(f"Invalid class name: {bad.message}.", {"fields": {"name": [bad.message]}}) from bad
    parts = name.split("/")
    with transaction.atomic():
        parent = None
        for depth in range(1, len(parts) + 1):
            parent, created = OntologyClass.objects.get_or_create(
                project=project, name="/".join(parts[:depth]), defaults={"parent": parent}
            )
        if not created:
            raise Conflict(
                f"Class '{name}' already exists in this project.", {"fields": {"name": ["This class already exists."]}}
            )
    return parent


def object_attributes_learn(*, project_id: int) -> None:
    """Add to the project's attribute catalog what its stored labels hold, by the statement imports run on each
    batch (importers/staging.py), over a view of every label: the backfill for labels written before the catalog
    existed (`manage.py datasets_attribute_catalog`). One scan of the project's labels."""
    with transaction.atomic(using=WRITER), connections[WRITER].cursor() as cursor:
        cursor.execute(
            "CREATE TEMP VIEW import_labels AS SELECT l.attributes FROM datasets_label AS l "
            "JOIN datasets_datarow AS d ON d.id = l.datarow_id JOIN datasets_dataset AS s ON s.id = d.dataset_id "
            f"WHERE s.project_id = {int(project_id)}"
        )
        cursor.execute(OBJECT_ATTRIBUTES_LEARN, {"project": project_id, "most": MAX_ENUM_VALUES})
        cursor.execute("DROP VIEW import_labels")
