from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "tenancy"

    def ready(self):
        from tenancy import schema  # noqa: F401 registers the bearer scheme with drf-spectacular
