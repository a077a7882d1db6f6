from collections.abc import Iterator, Set
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from django.db.models import QuerySet, Value
from django.db.models.functions import Concat, Left

from datasets.exporters.formats import export_path
from datasets.image_types import SNIFF_BYTES, sniff_image_type
from datasets.job_kinds import DATASET_EXPORT_JOB_KIND, DATASET_IMPORT_JOB_KIND
from datasets.models import (
    DATAROW_URI_INDEXED_CHARS,
    DataRow,
    Dataset,
    FieldCatalogEntry,
    Label,
    ModelVersion,
    ObjectAttribute,
    OntologyClass,
    Prediction,
)
from jobs.models import Job
from jobs.selectors import job_get
from mlops.exceptions import Conflict, NotFound, UnsupportedMediaType
from mlops.storage import StorageError, is_local_uri, presigned_url, readable_local_path
from projects.models import Project
from projects.selectors import project_get
from tenancy.principal import Principal

# Long enough to open an image; short enough that a detail page never shows a stale one.
DATAROW_IMAGE_URL_SECONDS = 3600


def dataset_list(*, project: Project) -> QuerySet[Dataset]:
    return Dataset.objects.filter(project=project).exclude(status=Dataset.Status.DELETING)


def dataset_get(*, project: Project, dataset_id: int) -> Dataset:
    dataset = dataset_list(project=project).filter(pk=dataset_id).first()
    if dataset is None:
        raise NotFound(f"Dataset {dataset_id} does not exist in project {project.pk}.")
    return dataset


def dataset_get_for_caller(*, principal: Principal, project_id: int, dataset_id: int) -> Dataset:
    """The dataset, if its project is in the caller's workspace (the tenant is the connection's schema)."""
    return dataset_get(project=project_get(principal=principal, project_id=project_id), dataset_id=dataset_id)


@dataclass(frozen=True)
class DatarowFilters:
    """Filters on a dataset's datarows; each one but media_type (a single value today) has an index of DataRow."""

    external_id: str | None = None
    external_id_prefix: str | None = None
    uri_prefix: str | None = None
    width_min: int | None = None
    width_max: int | None = None
    height_min: int | None = None
    height_max: int | None = None
    media_type: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    tags: tuple[str, ...] = ()


def datarow_list(*, dataset: Dataset, filters: DatarowFilters = DatarowFilters()) -> QuerySet[DataRow]:
    """The dataset's datarows that pass `filters`, by id. A pure read: in a request the router sends it to the
    reader unless the caller has just written (read-your-writes); exports read it on the writer."""
    datarows = DataRow.objects.filter(dataset=dataset)
    if filters.external_id is not None:
        datarows = datarows.filter(external_id=filters.external_id)
    if filters.external_id_prefix is not None:
        datarows = datarows.filter(external_id__startswith=filters.external_id_prefix)
    if filters.uri_prefix is not None:
        # The index holds the URI's head (a whole URI may be too long for a btree entry): match the head with
        # the index, and the whole URI only when the prefix is longer than the head.
        datarows = datarows.alias(uri_head=Left("uri", DATAROW_URI_INDEXED_CHARS)).filter(
            uri_head__startswith=filters.uri_prefix[:DATAROW_URI_INDEXED_CHARS]
        )
        if len(filters.uri_prefix) > DATAROW_URI_INDEXED_CHARS:
            datarows = datarows.filter(uri__startswith=filters.uri_prefix)
    for field, lookup, value in (
        ("width", "gte", filters.width_min),
        ("width", "lte", filters.width_max),
        ("height", "gte", filters.height_min),
        ("height", "lte", filters.height_max),
        ("created_at", "gte", filters.created_after),
        ("created_at", "lt", filters.created_before),
    ):
        if value is not None:
            datarows = datarows.filter(**{f"{field}__{lookup}": value})
    if filters.media_type is not None:
        datarows = datarows.filter(media_type=filters.media_type)
    if filters.tags:
        datarows = datarows.filter(tags__contains=list(filters.tags))
    return datarows.order_by("id")


def datarow_page(*, datarows: QuerySet[DataRow], after_id: int | None, size: int) -> tuple[list[DataRow], int | None]:
    """One keyset page: the first `size` datarows with an id above `after_id`, and the id to continue after
    (None on the last page). An index range scan however deep the page: never an OFFSET."""
    if after_id is not None:
        datarows = datarows.filter(id__gt=after_id)
    rows = list(datarows.order_by("id")[: size + 1])
    return rows[:size], (rows[size - 1].pk if len(rows) > size else None)


def datarow_get(*, dataset: Dataset, datarow_id: int) -> DataRow:
    datarow = DataRow.objects.filter(dataset=dataset, pk=datarow_id).select_related("dataset").first()
    if datarow is None:
        raise NotFound(f"Datarow {datarow_id} does not exist in dataset {dataset.pk}.")
    return datarow


def datarow_labels(*, datarow: DataRow) -> QuerySet[Label]:
    return Label.objects.filter(datarow=datarow).select_related("ontology_class").order_by("id")


@dataclass(frozen=True)
class ModelVersionPredictions:
    model_version: ModelVersion
    predictions: list[Prediction]


def datarow_predictions_by_model_version(*, datarow: DataRow) -> list[ModelVersionPredictions]:
    """The datarow's predictions, one group per model version (oldest version first), best score first."""
    predictions = (
        Prediction.objects.filter(datarow=datarow)
        .select_related("model_version", "ontology_class")
        .order_by("model_version_id", "-score", "id")
    )
    return [
        ModelVersionPredictions(model_version=group[0].model_version, predictions=group)
        for group in (list(items) for _, items in groupby(predictions, key=lambda p: p.model_version_id))
    ]


@dataclass(frozen=True)
class DatarowImageLink:
    """What the frontend shows the datarow's image with: a URL, or why there is none."""

    url: str | None
    error: str | None = None


def datarow_image_link(*, datarow: DataRow, served_url: str) -> DatarowImageLink:
    """s3 objects presigned (under the tenant's S3 prefixes only), http(s) as is, local files of the tenant's
    folder through `served_url` (our image endpoint for this datarow); for anything else, no URL and the reason."""
    scheme = urlsplit(datarow.uri).scheme
    try:
        if scheme == "s3":
            return DatarowImageLink(presigned_url(datarow.uri, expires_seconds=DATAROW_IMAGE_URL_SECONDS))
        if scheme in ("http", "https"):
            return DatarowImageLink(datarow.uri)
        if is_local_uri(datarow.uri):
            readable_local_path(datarow.uri)
            return DatarowImageLink(served_url)
    except StorageError as error:
        return DatarowImageLink(None, error.message)
    return DatarowImageLink(None, f"'{scheme}' URIs cannot be shown.")


@dataclass(frozen=True)
class DatarowImage:
    file: BinaryIO
    content_type: str


def datarow_image(*, datarow: DataRow) -> DatarowImage:
    """The datarow's local image file, opened, and its type told by its first bytes. Only a file of the tenant's
    folder (links resolved), and only an image: any other file is refused, whatever its name says."""
    if not is_local_uri(datarow.uri):
        raise NotFound(f"The image of datarow {datarow.pk} is not a local file; use its image_url.")
    try:
        path = readable_local_path(datarow.uri)
    except StorageError as error:
        raise NotFound(f"The image of datarow {datarow.pk} cannot be served: {error.message}") from error
    file = open(path, "rb")  # noqa: SIM115 (the response streams it and closes it; closed here only when refused)
    content_type = sniff_image_type(file.read(SNIFF_BYTES))
    if content_type is None:
        file.close()
        raise UnsupportedMediaType(
            f"The file of datarow {datarow.pk} is not a JPEG, PNG, GIF, WebP, BMP or TIFF "
            "image; only images are served."
        )
    file.seek(0)
    return DatarowImage(file, content_type)


def label_get(*, datarow: DataRow, label_id: int) -> Label:
    label = (
        Label.objects.filter(datarow=datarow, pk=label_id).select_related("ontology_class", "datarow__dataset").first()
    )
    if label is None:
        raise NotFound(f"Label {label_id} does not exist on datarow {datarow.pk}.")
    return label


def field_catalog_types(*, project_id: int, using: str) -> dict[str, str]:
    """The project's metadata paths and their types, which query validation, mappings and facets go by."""
    return dict(FieldCatalogEntry.objects.using(using).filter(project_id=project_id).values_list("path", "field_type"))


def ontology_class_list(*, project: Project) -> QuerySet[OntologyClass]:
    return OntologyClass.objects.filter(project=project).select_related("parent").order_by("name")


def object_attribute_list(*, project: Project) -> QuerySet[ObjectAttribute]:
    return ObjectAttribute.objects.filter(project=project).order_by("name")


def dataset_export_file(*, principal: Principal, dataset: Dataset, job_id) -> tuple[Path, str]:
    """The finished export file of the dataset's export job `job_id`, and the format it is in."""
    job = job_get(principal=principal, job_id=job_id)
    if job.kind != DATASET_EXPORT_JOB_KIND or job.params.get("dataset_id") != dataset.pk:
        raise NotFound(f"Job {job_id} is not an export of dataset {dataset.pk}.")
    if job.status != Job.Status.SUCCEEDED:
        raise Conflict(
            f"Export {job_id} has {job.status}; its file is ready once it has succeeded.", {"status": job.status}
        )
    export_format = job.params["export_format"]
    path = export_path(job_id=job.pk, export_format=export_format, create=False)
    if not path.exists():
        raise NotFound(f"The file of export {job_id} is gone.")
    return path, export_format


def dataset_import_error_report(*, principal: Principal, dataset: Dataset, job_id) -> Path:
    """The error report of the dataset's import job `job_id`: the job is checked as an export's is, so another
    workspace's report is never served."""
    from datasets.services.imports import error_report_path  # imported here: the services import this module

    job = job_get(principal=principal, job_id=job_id)
    if job.kind != DATASET_IMPORT_JOB_KIND or job.params.get("dataset_id") != dataset.pk:
        raise NotFound(f"Job {job_id} is not an import of dataset {dataset.pk}.")
    path = error_report_path(f"import:{job.pk}", create=False)
    if not path.exists():
        raise NotFound(f"Import {job_id} has no error report.")
    return path


class ProjectModelVersionRefs(Set[str]):
    """A project's model versions as queries name them, 'name@version', read only when a query names one."""

    def __init__(self, project_id: int, using: str):
        self.project_id, self.using = project_id, using

    def _refs(self) -> QuerySet:
        # The same expression the search engines compare with, so what validates is what matches.
        return (
            ModelVersion.objects.using(self.using)
            .filter(project_id=self.project_id)
            .annotate(ref=Concat("name", Value("@"), "version"))
        )

    def __contains__(self, ref: object) -> bool:
        return isinstance(ref, str) and self._refs().filter(ref=ref).exists()

    def __iter__(self) -> Iterator[str]:
        return iter(self._refs().order_by("ref").values_list("ref", flat=True))

    def __len__(self) -> int:
        return self._refs().count()


def model_version_refs(*, project_id: int, using: str) -> Set[str]:
    """What `validate(..., model_versions=...)` checks `model = 'name@version'` against, in this project."""
    return ProjectModelVersionRefs(project_id, using)
