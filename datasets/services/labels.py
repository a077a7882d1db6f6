"""Label edits over REST: checked by the import's own rules (datasets/importers/records.py), with who and when.

Every edit locks its datarow first (FOR NO KEY UPDATE): a bulk delete locks its rows FOR UPDATE before it
deletes their labels, so the two never interleave. The dataset's label count changes last, in the same
transaction, as in imports: locks are taken rows first and dataset last everywhere, so they cannot deadlock.
"""

import msgspec
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from datasets.importers.records import BadRecord, Geometry, LabelRecord, error_from_msgspec, geometry
from datasets.models import DataRow, Dataset, Label, OntologyClass
from datasets.signals import datarows_changed
from mlops.exceptions import ApplicationError, NotFound
from tenancy.principal import Principal


def _invalid(field_name: str, message: str) -> ApplicationError:
    return ApplicationError(f"Invalid label: {field_name} {message}.", {"fields": {field_name: [message]}})


def _ontology_class(*, project_id: int, class_name: str) -> OntologyClass:
    ontology_class = OntologyClass.objects.filter(project_id=project_id, name=class_name).first()
    if ontology_class is None:
        raise ApplicationError(
            f"Class '{class_name}' is not in the project's ontology.",
            {"fields": {"class": ["Not in the project's ontology; add it there first."]}},
        )
    return ontology_class


def _checked_geometry(datarow: DataRow, *, box: object, polygon: object) -> Geometry:
    """Box or polygon checked as an import checks a manifest label: shape and types, then against the image.

    The import's checks name fields inside a record (`labels[0].box`); here the label is the record itself.
    """
    try:
        record = msgspec.convert({"class": "-", "box": box, "polygon": polygon}, LabelRecord)
    except msgspec.ValidationError as error:
        bad = error_from_msgspec(0, error)
        raise _invalid(bad.field, bad.message) from error
    try:
        return geometry(record, "", datarow.width, datarow.height)
    except BadRecord as bad:
        raise _invalid(bad.field.removeprefix("."), bad.message) from bad


def _checked_attributes(attributes: object) -> dict:
    if not isinstance(attributes, dict):
        raise _invalid("attributes", "must be an object")
    # jsonb cannot hold a NUL character; imports refuse it too.
    if b"\\u0000" in msgspec.json.encode(attributes):
        raise _invalid("attributes", "must not contain NUL characters")
    return attributes


def _lock_datarow(datarow: DataRow) -> None:
    if not DataRow.objects.select_for_update(no_key=True).filter(pk=datarow.pk).values_list("pk").first():
        raise NotFound(f"Datarow {datarow.pk} no longer exists.")


def _count_labels(*, dataset_id: int, change: int) -> None:
    Dataset.objects.filter(pk=dataset_id).update(label_count=F("label_count") + change, updated_at=timezone.now())


def _set_geometry(label: Label, shape: Geometry) -> None:
    label.kind = shape.kind
    label.x, label.y, label.w, label.h = shape.x, shape.y, shape.w, shape.h
    label.area, label.polygon = shape.area, shape.polygon


def label_create(
    *,
    principal: Principal,
    datarow: DataRow,
    class_name: str,
    box: object = None,
    polygon: object = None,
    attributes: dict | None = None,
) -> Label:
    """An object (box or polygon; a polygon wins, as in imports) or, with neither, a classification."""
    ontology_class = _ontology_class(project_id=datarow.dataset.project_id, class_name=class_name)
    label = Label(
        datarow=datarow,
        ontology_class=ontology_class,
        attributes=_checked_attributes(attributes or {}),
        source=principal.user_id,
        updated_by=principal.user_id,
    )
    _set_geometry(label, _checked_geometry(datarow, box=box, polygon=polygon))
    with transaction.atomic():
        _lock_datarow(datarow)
        label.save()
        _count_labels(dataset_id=datarow.dataset_id, change=+1)
        datarows_changed.send(sender=None, project_id=datarow.dataset.project_id, datarow_ids=[datarow.pk])
    return label


def label_update(
    *,
    principal: Principal,
    label: Label,
    class_name: str | None = None,
    geometry_input: dict | None = None,
    attributes: dict | None = None,
) -> Label:
    """Change what is given: the class; the geometry (`{"box": ..., "polygon": ...}` replaces the old one, both
    null make it a classification); the attributes (replaced whole)."""
    datarow = label.datarow
    ontology_class = (
        _ontology_class(project_id=datarow.dataset.project_id, class_name=class_name)
        if class_name is not None
        else None
    )
    shape = _checked_geometry(datarow, **geometry_input) if geometry_input is not None else None
    if attributes is not None:
        _checked_attributes(attributes)
    with transaction.atomic():
        _lock_datarow(datarow)
        label = (
            Label.objects.select_for_update(of=("self",))
            .filter(pk=label.pk)
            .select_related("ontology_class", "datarow__dataset")
            .first()
        )
        if label is None:
            raise NotFound("The label no longer exists.")
        if ontology_class is not None:
            label.ontology_class = ontology_class
        if shape is not None:
            _set_geometry(label, shape)
        if attributes is not None:
            label.attributes = attributes
        label.updated_by = principal.user_id
        label.save()
        datarows_changed.send(sender=None, project_id=datarow.dataset.project_id, datarow_ids=[datarow.pk])
    return label


def label_delete(*, label: Label) -> None:
    with transaction.atomic():
        _lock_datarow(label.datarow)
        deleted, _ = Label.objects.filter(pk=label.pk).delete()
        if not deleted:
            raise NotFound(f"Label {label.pk} no longer exists.")
        _count_labels(dataset_id=label.datarow.dataset_id, change=-1)
        datarows_changed.send(sender=None, project_id=label.datarow.dataset.project_id, datarow_ids=[label.datarow_id])
