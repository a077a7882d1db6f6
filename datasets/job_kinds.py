"""The kinds of datasets' jobs: the services start jobs by these names, the selectors check which kind a job is, the
tasks register under them (jobs.runner.job_task). Here, not in the services, because the services import the
selectors."""

DATASET_IMPORT_JOB_KIND = "dataset-import"
DATASET_EXPORT_JOB_KIND = "dataset-export"
DATASET_DELETE_JOB_KIND = "dataset-delete"
