"""A datarow's evaluation matches go with it, however datasets deletes it (SQL in batches)."""

import pytest

from datasets.services.datarows import datarow_bulk_delete
from evaluations.models import ObjectMatch
from tests.factories import evaluation_run_make, model_version_make
from tests.predictions.conftest import world  # noqa: F401  (a project with datarows and classes)

pytestmark = pytest.mark.django_db


def test_deleting_datarows_deletes_their_matches_and_no_others(world):
    # given
    rows = world.rows(3)
    run = evaluation_run_make(model_version=model_version_make(project=world.project))
    ObjectMatch.objects.bulk_create(
        ObjectMatch(run=run, datarow_id=row, side="label", outcome="fn", ontology_class_id=world.class_id("car"))
        for row in rows
    )
    # when
    datarow_bulk_delete(dataset=world.dataset, datarow_ids=rows[:2])
    # then
    assert list(ObjectMatch.objects.values_list("datarow_id", flat=True)) == [rows[2]]
