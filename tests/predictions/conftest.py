import uuid
from dataclasses import dataclass, field

import pytest

from tests.training.conftest import storage  # noqa: F401  (images and artifacts under tmp_path)


@dataclass
class World:
    """A project with datarows, classes, labels and predictions written straight to the tables."""

    project: object
    dataset: object
    classes: dict[str, int] = field(default_factory=dict)

    def rows(self, count: int) -> list[int]:
        from datasets.models import DataRow
        from tests.factories import datarows_make

        made = datarows_make(
            dataset=self.dataset,
            count=count,
            start=DataRow.objects.filter(dataset=self.dataset).count(),
            uri=lambda i: f"s3://bucket/{i}.png",
        )
        return [row.pk for row in made]

    def class_id(self, name: str) -> int:
        from datasets.models import OntologyClass

        if name not in self.classes:
            self.classes[name] = OntologyClass.objects.create(project=self.project, name=name).pk
        return self.classes[name]

    def label(self, datarow_id: int, name: str, *, box=None) -> None:
        from datasets.models import Label

        x, y, w, h = box or (None, None, None, None)
        Label.objects.create(
            datarow_id=datarow_id,
            ontology_class_id=self.class_id(name),
            kind="box" if box else "classification",
            x=x,
            y=y,
            w=w,
            h=h,
            area=w * h if box else None,
            source="test",
            updated_by="test",
        )

    def model_version(self, name: str = "m", version: str = "1"):
        from tests.factories import model_version_make

        return model_version_make(project=self.project, name=name, version=version)

    def prediction_run(self, model_version, *, status: str = "succeeded"):
        from predictions.models import PredictionRun
        from tests.factories import job_make

        job = job_make(kind="prediction-run", owner_id="test", status=status, celery_task_id=str(uuid.uuid4()))
        return PredictionRun.objects.create(
            model_version=model_version, job=job, dataset=self.dataset, top_k=3, batch_size=8, created_by="test"
        )

    def predict(self, model_version, datarow_id: int, scores: dict[str, float], *, run=None) -> None:
        from datasets.models import Prediction

        Prediction.objects.bulk_create(
            Prediction(
                datarow_id=datarow_id,
                model_version=model_version,
                run=run,
                kind="classification",
                ontology_class_id=self.class_id(name),
                score=score,
            )
            for name, score in scores.items()
        )

    def predict_box(self, model_version, datarow_id: int, name: str, box, score: float, *, run=None) -> None:
        from datasets.models import Prediction

        x, y, w, h = box
        Prediction.objects.create(
            datarow_id=datarow_id,
            model_version=model_version,
            run=run,
            kind="box",
            ontology_class_id=self.class_id(name),
            score=score,
            x=x,
            y=y,
            w=w,
            h=h,
            area=w * h,
        )

    def ids_slice(self, name: str, datarow_ids: list[int], splits: dict[int, int] | None = None):
        from slices.models import SliceMember
        from slices.services import slice_create_from_ids

        created = slice_create_from_ids(project=self.project, name=name, created_by="test", datarow_ids=datarow_ids)
        for datarow_id, split in (splits or {}).items():
            SliceMember.objects.filter(slice=created, datarow_id=datarow_id).update(split=split)
        return created


@pytest.fixture
def world(in_tenant_a) -> World:
    from tests.factories import dataset_make, project_make

    project = project_make()
    return World(project=project, dataset=dataset_make(project=project))
