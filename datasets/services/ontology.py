from django.db import transaction

from datasets.importers.records import BadRecord, check_class_path
from datasets.models import OntologyClass
from mlops.exceptions import ApplicationError, Conflict
from projects.models import Project


def ontology_class_create(*, project: Project, name: str) -> OntologyClass:
    """Add the class `vehicle/car/sedan` and each missing ancestor (`vehicle`, `vehicle/car`), linked to its parent.

    The same tree imports build in SQL (importers/staging.py) for many classes at once; one class is an ORM job.
    """
    try:
        check_class_path(name, "name")
    except BadRecord as bad:
        raise ApplicationError(f"Invalid class name: {bad.message}.", {"fields": {"name": [bad.message]}})
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
