from jobs.models import Job
from jobs.runner import job_task
from mlops.db_routing import WRITER
from predictions.models import PredictionRun
from predictions.services import PREDICTION_RUN_JOB_KIND, prediction_run_execute


@job_task(kind=PREDICTION_RUN_JOB_KIND)
def prediction_run_execute_task(job: Job, *, prediction_run_id: int) -> None:
    prediction_run = (
        PredictionRun.objects.using(WRITER)
        .select_related("model_version__training_run__model")
        .get(pk=prediction_run_id)
    )
    prediction_run_execute(prediction_run=prediction_run, job=job)
