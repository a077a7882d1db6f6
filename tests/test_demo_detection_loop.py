"""The detection rounds (`make demo-detection-loop`) at a small scale, against a real ASGI server, a worker and a
training worker on Redis: train on the seed set, evaluate on the test set, query the misses, pick by box
uncertainty and at random with the same budget, reveal the boxes, retrain; mAP per round for both."""

import time

import pytest

from datasets.models import Label
from demo.detection import DetectionSettings
from demo.detection_loop import ARMS, DetectionLoopSettings, run_detection_loop, write_loop_files
from demo.loop import Platform
from evaluations.models import EvaluationRun, ObjectMatch
from tenancy.context import tenant_scope
from tests.conftest import TENANT_A
from tests.live_services import live_environment, purge_task_queues, start_asgi_server, start_celery_worker

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "reader"]),
    pytest.mark.usefixtures("committed_tenants"),
]

SETTINGS = DetectionLoopSettings(
    seed_images=16,
    pool_images=24,
    test_images=12,
    rounds=1,
    batch=8,
    sides=(64, 96),
    detector=DetectionSettings(epochs=12, min_size=64, batch_size=4, learning_rate=1e-3),
)
PROJECT = "shapes detection loop test"


@pytest.fixture
def files(tmp_path):
    # in tenant A's folder of the read root, the only one its imports may read
    return write_loop_files(tmp_path / "imports" / TENANT_A / "shapes-loop", SETTINGS)


@pytest.fixture
def platform_processes(django_db_setup, auth0, platform, live_log_dir, files, tmp_path):
    env = live_environment(
        auth0, platform, MLOPS_LOCAL_READ_ROOT=tmp_path / "imports", MLOPS_STORAGE_ROOT=tmp_path / "storage"
    )
    purge_task_queues()
    processes = []
    try:
        processes.append(start_celery_worker(env, live_log_dir, name="worker"))
        # One torch thread: on a few shared cores torch's threads would wait on each other.
        processes.append(
            start_celery_worker(
                {**env, "OMP_NUM_THREADS": "1"}, live_log_dir, name="training", queues=("training",), pool="solo"
            )
        )
        processes.append(start_asgi_server(env, live_log_dir))
        yield processes[-1]
    finally:
        for process in processes:
            process.stop()


def test_each_round_is_evaluated_and_both_strategies_pick_the_same_budget(platform_processes, files, make_token):
    lines: list[str] = []
    started = time.monotonic()
    # when
    outcome = run_detection_loop(
        Platform(platform_processes.url, make_token(TENANT_A), say=lines.append), files, SETTINGS, project_name=PROJECT
    )
    # then
    print(f"\n{outcome.table()}\n({time.monotonic() - started:.0f} s)")
    rounds = {(arm, round_): labelled for arm, round_, labelled, *_ in outcome.scores}
    assert rounds == {
        **{(arm, 0): SETTINGS.seed_images for arm in ARMS},
        **{(arm, 1): SETTINGS.seed_images + SETTINGS.batch for arm in ARMS},
    }
    assert all(
        0 <= map_ <= map50 <= 1 and 0 <= missed <= SETTINGS.test_images for *_, map_, map50, missed in outcome.scores
    )
    with tenant_scope(TENANT_A):
        runs = EvaluationRun.objects.filter(project__name=PROJECT)
        # the seed model's, then one per strategy's round 1
        assert runs.count() == 1 + len(ARMS)
        test_boxes = Label.objects.filter(
            datarow__dataset__project__name=PROJECT, datarow__external_id__startswith="images/test-"
        ).count()
        for run in runs:
            assert ObjectMatch.objects.filter(run=run, side="label").count() == test_boxes
        # each strategy revealed the boxes of its batch: the pool images labelled are at most both batches
        revealed = set(
            Label.objects.filter(
                datarow__dataset__project__name=PROJECT, datarow__external_id__startswith="images/pool-"
            ).values_list("datarow__external_id", flat=True)
        )
        assert SETTINGS.batch <= len(revealed) <= 2 * SETTINGS.batch
        assert all(files.oracle[external_id] for external_id in revealed)
