"""`make demo`'s loop at a small scale, against a real ASGI server, a worker and a training worker on Redis: import
the digits, slice, split, train, predict, pick by least confidence and at random, reveal, retrain."""

import json
import uuid

import pytest

from datasets.models import DataRow, Label, ModelVersion, Prediction
from demo.digits import write_digits
from demo.loop import ARMS, LoopSettings, Platform, run_loop
from slices.models import Slice, SliceMember
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.live_services import live_environment, purge_task_queues, start_asgi_server, start_celery_worker

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "reader"]),
    pytest.mark.usefixtures("committed_tenants"),
]

SETTINGS = LoopSettings(rounds=1, batch=12, epochs=3, image_size=16)


@pytest.fixture
def digits(tmp_path):
    # in tenant A's folder of the read root, the only one its imports may read
    return write_digits(tmp_path / "imports" / TENANT_A / "digits", limit=160, seed_per_class=2, holdout_fraction=0.25)


@pytest.fixture
def platform_processes(django_db_setup, auth0, platform, live_log_dir, digits, tmp_path):
    env = live_environment(
        auth0, platform, MLOPS_LOCAL_READ_ROOT=tmp_path / "imports", MLOPS_STORAGE_ROOT=tmp_path / "storage"
    )
    purge_task_queues()
    processes = []
    try:
        processes.append(start_celery_worker(env, live_log_dir, name="worker"))
        processes.append(start_celery_worker(env, live_log_dir, name="training", queues=("training",), pool="solo"))
        processes.append(start_asgi_server(env, live_log_dir))
        yield processes[-1]
    finally:
        for process in processes:
            process.stop()


def test_the_loop_runs_over_rest_and_each_strategy_labels_what_it_picked(platform_processes, digits, make_token):
    lines: list[str] = []
    # when
    project_name = f"digits loop {uuid.uuid4().hex[:8]}"
    outcome = run_loop(
        Platform(platform_processes.url, make_token(TENANT_A), say=lines.append),
        digits,
        SETTINGS,
        project_name=project_name,
    )
    # then every model is scored on the held-out slice, and each round adds the batch to the labelled rows
    assert [(arm, round_, labelled) for arm, round_, labelled, _ in outcome.scores] == [
        (arm, round_, digits.seed_rows + round_ * SETTINGS.batch) for arm in ARMS for round_ in (0, 1)
    ]
    assert all(0 <= accuracy <= 1 for *_, accuracy in outcome.scores)
    assert any("[train least_confidence round 0] epoch 3/3" in line and "images/s" in line for line in lines)
    oracle = json.loads(digits.oracle.read_text())
    with tenant_scope(TENANT_A):
        slices = Slice.objects.filter(project__name=project_name)
        for arm in ARMS:
            picked = slices.get(name=f"{arm}-picked-0")
            rows = DataRow.objects.filter(slice_memberships__slice=picked)
            # the picked rows came from the pool, got their true class and the arm's tag
            assert rows.count() == SETTINGS.batch
            assert all("pool" in row.tags and f"picked-{arm}" in row.tags for row in rows)
            labels = Label.objects.filter(datarow__in=rows).values_list("datarow__external_id", "ontology_class__name")
            assert sorted(labels) == sorted((row.external_id, oracle[row.external_id]) for row in rows)
        # least confidence picked the pool rows whose best prediction of the seed model was lowest
        pool = slices.get(name="least_confidence-pool-0")
        seed_model = ModelVersion.objects.get(project__name=project_name, name="digits-least_confidence-0")
        best = {}
        for datarow_id, score in Prediction.objects.filter(
            model_version=seed_model, datarow__slice_memberships__slice=pool
        ).values_list("datarow_id", "score"):
            best[datarow_id] = max(score, best.get(datarow_id, 0))
        assert len(best) == SliceMember.objects.filter(slice=pool).count()
        picked_ids = set(
            SliceMember.objects.filter(slice=slices.get(name="least_confidence-picked-0")).values_list(
                "datarow_id", flat=True
            )
        )
        least_confident = sorted(best, key=lambda datarow_id: (best[datarow_id], datarow_id))
        assert max(best[i] for i in picked_ids) <= min(best[i] for i in least_confident[SETTINGS.batch :])
