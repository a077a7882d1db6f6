from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self):
        from jobs.selectors import queued_jobs_across_tenants
        from mlops.metrics_server import queued_jobs_source_register

        queued_jobs_source_register(queued_jobs_across_tenants)
        # Every app's tasks module, in every process (web, websockets, worker, commands): each registers its job
        # kinds (jobs.registry), which job_create looks up by name.
        autodiscover_modules("tasks")
