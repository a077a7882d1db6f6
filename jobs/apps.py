from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self):
        from jobs.selectors import queued_jobs_across_tenants
        from mlops.metrics_server import queued_jobs_source_register

        queued_jobs_source_register(queued_jobs_across_tenants)
