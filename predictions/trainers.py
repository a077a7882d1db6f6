"""The trainers (trainers's registry) as the platform resolves them: by registered name, with the operator's
plugins. Here, not in training, because prediction runs need them too and predictions sit below training."""

from django.conf import settings

from mlops.exceptions import ApplicationError
from trainers.interface import Trainer
from trainers.registry import TrainerError, get_trainer


def trainer_resolve(*, name: str) -> Trainer:
    """The trainer registered as `name` (a built-in or one of the operator's TRAINER_PLUGINS); a name is never
    imported as a path. An unknown name, or a plugin that fails to load, is a 400 on the trainer field."""
    try:
        return get_trainer(name, settings.TRAINER_PLUGINS)
    except TrainerError as error:
        # The registry's message lists the registered names, or names the plugin and what it raised.
        raise ApplicationError(str(error), {"fields": {"trainer": [str(error)]}}) from error
