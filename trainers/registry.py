"""Trainers by registered name: the built-ins and the operator's plugins {"name": "package.module:ClassName"}.

A name is only ever looked up: nothing given as a name is imported, so only the paths in these two mappings
(code the operator installed) ever run."""

import importlib
import re
from collections.abc import Mapping

from trainers.interface import Trainer

# Names resolve to dotted paths, so a trainer's module (and torch) is imported only when it is used.
BUILT_IN_TRAINERS: dict[str, str] = {
    "image-classifier": "trainers.image_classifier:ImageClassifierTrainer",
    "detector-fcos": "trainers.detector:FCOSDetector",
    "detector-faster-rcnn": "trainers.detector:FasterRCNNDetector",
}
PLUGIN_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", re.ASCII)
TRAINER_METHODS = ("validate_config", "train", "predict")


class TrainerError(Exception):
    """A trainer that cannot be had: `name` is the name asked for."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


class UnknownTrainerError(TrainerError, LookupError):
    pass


class TrainerLoadError(TrainerError):
    """A registered trainer whose module, class or instance failed: the plugin's fault, never the caller's."""


def registered_trainers(plugins: Mapping[str, str] | None = None) -> dict[str, str]:
    """Name -> "package.module:ClassName" of the built-ins and `plugins`; a malformed plugin entry is a ValueError."""
    if not isinstance(plugins, Mapping | None):
        raise ValueError(f"Trainer plugins must be a mapping of names to paths, not {type(plugins).__name__}.")
    plugins = dict(plugins or {})
    for name, path in plugins.items():
        if not (isinstance(name, str) and name.strip() and isinstance(path, str) and PLUGIN_PATH.fullmatch(path)):
            raise ValueError(f"Trainer plugin {name!r}: {path!r} is not a name and a 'package.module:ClassName'.")
        if name in BUILT_IN_TRAINERS:
            raise ValueError(f"Trainer plugin {name!r} would replace the built-in trainer of that name.")
    return {**BUILT_IN_TRAINERS, **plugins}


def get_trainer(name: str, plugins: Mapping[str, str] | None = None) -> Trainer:
    """A new instance of the trainer registered as `name` among the built-ins and `plugins`."""
    trainers = registered_trainers(plugins)
    path = trainers.get(name) if isinstance(name, str) else None
    if path is None:
        raise UnknownTrainerError(name, f"Unknown trainer {name!r}: use one of {', '.join(sorted(trainers))}.")
    module_name, _, class_name = path.partition(":")
    # Plugin code may raise anything at import or in __init__, SystemExit included: that fails this lookup only.
    try:
        trainer_class = getattr(importlib.import_module(module_name), class_name)
    except BaseException as error:
        raise _load_error(name, path, error) from error
    if not isinstance(trainer_class, type) or not all(
        callable(getattr(trainer_class, method, None)) for method in TRAINER_METHODS
    ):
        raise TrainerLoadError(name, f"Trainer {name!r} ({path}) is not a class with {', '.join(TRAINER_METHODS)}.")
    try:
        trainer = trainer_class()
    except BaseException as error:
        raise _load_error(name, path, error) from error
    if not isinstance(trainer, Trainer):
        raise TrainerLoadError(name, f"Trainer {name!r} ({path}) has no name besides {', '.join(TRAINER_METHODS)}.")
    return trainer


def _load_error(name: str, path: str, error: BaseException) -> TrainerLoadError:
    return TrainerLoadError(name, f"Trainer {name!r} ({path}) could not be loaded: {type(error).__name__}: {error}")
