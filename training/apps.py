from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class TrainingConfig(AppConfig):
    name = "training"

    def ready(self):
        from trainers.registry import registered_trainers

        # A malformed TRAINER_PLUGINS stops every process at start rather than failing the first request using it.
        try:
            registered_trainers(settings.TRAINER_PLUGINS)
        except ValueError as error:
            raise ImproperlyConfigured(f"TRAINER_PLUGINS: {error}") from error
