from django.db import connections, transaction

from datasets.importers.records import BadRecord, check_class_path
from datasets.importers.staging import MAX_ENUM_VALUES, OBJECT_ATTRIBUTES_LEARN
from datasets.models import ObjectAttribute, OntologyClass
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


MAX_ATTRIBUTE_NAME = 200


def object_attribute_declare(
    *, project: Project, name: str, value_type: str, enum_values: list[str] | None = None
) -> ObjectAttribute:
    """Declare (or redeclare) the label attribute `name` of the project as a boolean, a number or an enum of
    `enum_values`, in place of what imports inferred. Search compares values of that type through the attribute's
    typed indexes (`manage.py search_attribute_indexes`); labels holding other values keep them and still match
    conditions of their own type."""
    fields: dict[str, list[str]] = {}
    if not name or len(name) > MAX_ATTRIBUTE_NAME or "\x00" in name:
        fields["name"] = [f"must be 1 to {MAX_ATTRIBUTE_NAME} characters, without NUL"]
    if value_type not in ObjectAttribute.ValueType.values:
        fields["value_type"] = [f"must be one of {', '.join(ObjectAttribute.ValueType.values)}"]
    values = sorted(set(enum_values or []))
    if value_type == ObjectAttribute.ValueType.ENUM and not 0 < len(values) <= ObjectAttribute.MAX_ENUM_VALUES:
        fields["enum_values"] = [f"an enum needs 1 to {ObjectAttribute.MAX_ENUM_VALUES} values"]
    elif value_type != ObjectAttribute.ValueType.ENUM and values:
        fields["enum_values"] = ["only an enum has values"]
    elif any(not value or len(value) > MAX_ATTRIBUTE_NAME or "\x00" in value for value in values):
        fields["enum_values"] = [f"each value must be 1 to {MAX_ATTRIBUTE_NAME} characters, without NUL"]
    if fields:
        raise ApplicationError("Invalid attribute declaration.", {"fields": fields})
    attribute, _ = ObjectAttribute.objects.update_or_create(
        project=project, name=name, defaults={"value_type": value_type, "enum_values": values, "declared": True}
    )
    return attribute
