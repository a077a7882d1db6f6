import pytest

from tests.factories import datarows_make, dataset_make


@pytest.fixture
def make_rows(project):
    """`make_rows(count, dataset=None, **fields)`: datarows written in one statement; returns their ids in order.
    Row i gets metadata {"i": i, "parity": "even"|"odd"} and the tags given."""
    from datasets.models import DataRow

    datasets = {}

    def make(count: int, dataset: str = "main", tags: tuple[str, ...] = ()) -> list[int]:
        if dataset not in datasets:
            datasets[dataset] = dataset_make(project=project, name=dataset)
        rows = datarows_make(
            dataset=datasets[dataset],
            count=count,
            start=DataRow.objects.filter(dataset=datasets[dataset]).count(),
            external_id=lambda i: f"{dataset}-{i}",
            uri=lambda i: f"s3://b/{dataset}/{i}.jpg",
            metadata=lambda i: {"i": i, "parity": "even" if i % 2 == 0 else "odd"},
            tags=lambda i: list(tags),
        )
        return [row.pk for row in rows]

    make.datasets = datasets
    return make


@pytest.fixture
def catalog(project):
    """Register the metadata paths make_rows writes, as an import would."""
    from datasets.models import FieldCatalogEntry

    FieldCatalogEntry.objects.create(project=project, path="i", field_type="number")
    FieldCatalogEntry.objects.create(project=project, path="parity", field_type="string")
