from evaluations.models import EvaluationRun
from evaluations.services import EVALUATION_RUN_JOB_KIND, evaluation_run_execute
from jobs.models import Job
from jobs.runner import job_task
from mlops.db_routing import WRITER


@job_task(kind=EVALUATION_RUN_JOB_KIND)
def evaluation_run_execute_task(job: Job, *, evaluation_run_id: int) -> None:
    evaluation_run_execute(run=EvaluationRun.objects.using(WRITER).get(pk=evaluation_run_id), job=job)
