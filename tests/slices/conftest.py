import uuid

import pytest


@pytest.fixture
def project(in_tenant_a):
    from projects.models import Project

    return Project.objects.create(workspace_id="ws-1", name=f"slices-{uuid.uuid4().hex[:8]}", created_by="tester")


@pytest.fixture
def make_rows(project):
    """`make_rows(count, dataset=None, **fields)`: datarows written in one statement; returns their ids in order.
    Row i gets metadata {"i": i, "parity": "even"|"odd"} and the tags given."""
    from datasets.models import DataRow, Dataset

    datasets = {}

    def make(count: int, dataset: str = "main", tags: tuple[str, ...] = ()) -> list[int]:
        if dataset not in datasets:
            datasets[dataset] = Dataset.objects.create(project=project, name=dataset, created_by="tester")
        start = DataRow.objects.filter(dataset=datasets[dataset]).count()
        rows = DataRow.objects.bulk_create(
            DataRow(dataset=datasets[dataset], external_id=f"{dataset}-{i}", uri=f"s3://b/{dataset}/{i}.jpg",
                    metadata={"i": i, "parity": "even" if i % 2 == 0 else "odd"}, tags=list(tags))
            for i in range(start, start + count))
        return [row.pk for row in rows]

    make.datasets = datasets
    return make


@pytest.fixture
def catalog(project):
    """Register the metadata paths make_rows writes, as an import would."""
    from datasets.models import FieldCatalogEntry

    FieldCatalogEntry.objects.create(project=project, path="i", field_type="number")
    FieldCatalogEntry.objects.create(project=project, path="parity", field_type="string")
