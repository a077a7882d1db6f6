"""Trainers by name: the built-ins, and plugins named by a dotted path "package.module:ClassName"."""

import importlib

from training.core.interface import Trainer

# Names resolve to dotted paths, so a trainer's module (and torch) is imported only when it is used.
TRAINERS: dict[str, str] = {
    "image-classifier": "training.core.image_classifier:ImageClassifierTrainer",
}


class UnknownTrainerError(LookupError):
    def __init__(self, name: str, reason: str):
        super().__init__(f"Unknown trainer '{name}': {reason}")
        self.name = name


def get_trainer(name: str) -> Trainer:
    """A new instance of the trainer registered as `name`, or of the class at the dotted path `name`."""
    path = TRAINERS.get(name, name)
    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name:
        raise UnknownTrainerError(name, f"use one of {sorted(TRAINERS)} or a dotted path 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UnknownTrainerError(name, f"module '{module_name}' cannot be imported ({error})") from error
    trainer_class = getattr(module, class_name, None)
    if trainer_class is None:
        raise UnknownTrainerError(name, f"module '{module_name}' has no '{class_name}'")
    trainer = trainer_class()
    if not isinstance(trainer, Trainer):
        raise UnknownTrainerError(name, f"'{path}' does not implement name, validate_config, train and predict")
    return trainer
