from jobs.models import Job
from jobs.runner import job_task
from mlops.db_routing import WRITER
from mlops.metrics import training_observed
from training.models import TrainingRun
from training.services import TRAINING_RUN_JOB_KIND, training_run_execute


@job_task(kind=TRAINING_RUN_JOB_KIND)
def training_run_execute_task(job: Job, *, training_run_id: int) -> None:
    run = TrainingRun.objects.using(WRITER).select_related("model").get(pk=training_run_id)
    with training_observed():
        training_run_execute(run=run, job=job)
