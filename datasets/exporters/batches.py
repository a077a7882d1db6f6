"""Datarows with their labels and predictions, read in keyset batches by id."""

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from django.db.models import QuerySet

from datasets.models import DataRow, Label, Prediction
from mlops.db_routing import WRITER

# A datarow may carry thousands of labels: batches stay small enough for that to fit in memory.
BATCH_ROWS = 1_000

DATAROW_FIELDS = ("id", "external_id", "uri", "media_type", "width", "height", "metadata", "tags")
GEOMETRY_FIELDS = ("kind", "x", "y", "w", "h", "area", "polygon", "attributes")


@dataclass
class ExportCounters:
    """What an export wrote: a format adds to it as it writes, so progress can be reported between batches."""

    datarows: int = 0
    labels: int = 0
    predictions: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Category:
    """An ontology class as export formats list it."""

    id: int
    name: str
    parent_name: str | None


@dataclass
class ExportBatch:
    """One batch: datarows in id order, and each one's labels and predictions (as dicts, by datarow id)."""

    datarows: list[dict]
    labels: dict[int, list[dict]]
    predictions: dict[int, list[dict]]


def _by_datarow(items) -> dict[int, list[dict]]:
    grouped: dict[int, list[dict]] = defaultdict(list)
    for item in items:
        grouped[item.pop("datarow_id")].append(item)
    return grouped


def export_batches(datarows: QuerySet[DataRow], batch_rows: int = BATCH_ROWS) -> Iterator[ExportBatch]:
    """Walk `datarows` by id, `batch_rows` at a time: three short index reads per batch, never one long cursor.

    Reads go to the writer: an export must hold every edit made before it started, and the reader may lag.
    """
    after_id = 0
    while True:
        rows = list(datarows.using(WRITER).filter(id__gt=after_id).order_by("id").values(*DATAROW_FIELDS)[:batch_rows])
        if not rows:
            return
        ids = [row["id"] for row in rows]
        labels = (
            Label.objects.using(WRITER)
            .filter(datarow_id__in=ids)
            .order_by("datarow_id", "id")
            .values("datarow_id", "id", "ontology_class_id", "ontology_class__name", *GEOMETRY_FIELDS)
        )
        predictions = (
            Prediction.objects.using(WRITER)
            .filter(datarow_id__in=ids)
            .order_by("datarow_id", "model_version_id", "id")
            .values(
                "datarow_id",
                "model_version__name",
                "model_version__version",
                "ontology_class__name",
                "score",
                *GEOMETRY_FIELDS,
            )
        )
        yield ExportBatch(datarows=rows, labels=_by_datarow(labels), predictions=_by_datarow(predictions))
        after_id = ids[-1]
