"""Trainers by registered name: the built-ins and the operator's plugins; a name is never imported as a path."""

import sys
from pathlib import Path

import pytest

from trainers.image_classifier import ImageClassifierTrainer
from trainers.interface import EpochMetrics, TrainResult
from trainers.registry import TrainerLoadError, UnknownTrainerError, get_trainer, registered_trainers

HERE = "tests.training.test_core_registry"


class ConstantTrainer:
    """A plugin trainer as a third party would write one: it learns nothing and predicts class 0."""

    name = "constant"

    def validate_config(self, config: dict) -> dict:
        return {"answer": 0, **config}

    def train(self, *, train, validation, classes, config, opener, output_dir: Path, on_step, on_epoch, log):
        metrics = EpochMetrics(
            epoch=1,
            train_loss=0.0,
            train_accuracy=0.0,
            validation_loss=None,
            validation_accuracy=None,
            seconds=0.0,
            images_per_second=0.0,
        )
        on_epoch(metrics)
        return TrainResult(epochs=[metrics], device="cpu", artifact_files=[])

    def predict(self, *, artifact_dir, items, opener, batch_size, top_k, device="auto"):
        yield [(item.key, [(0, 1.0)]) for item in items]


class NotATrainer:
    name = "half"

    def train(self, **arguments):
        """Present, unlike predict and validate_config: the registry must still refuse the class."""


class InterruptingTrainer(ConstantTrainer):
    def __init__(self):
        raise KeyboardInterrupt("raised by the plugin's __init__")


def test_the_built_in_image_classifier_is_found_by_name():
    trainer = get_trainer("image-classifier")

    assert isinstance(trainer, ImageClassifierTrainer) and trainer.name == "image-classifier"


def test_a_registered_plugin_is_found_by_its_name_and_each_call_gives_a_new_instance():
    plugins = {"constant": f"{HERE}:ConstantTrainer"}

    trainer = get_trainer("constant", plugins)

    assert isinstance(trainer, ConstantTrainer)
    assert trainer.validate_config({}) == {"answer": 0}
    assert get_trainer("constant", plugins) is not trainer
    assert registered_trainers(plugins) == {
        "image-classifier": "trainers.image_classifier:ImageClassifierTrainer",
        "detector-fcos": "trainers.detector:FCOSDetector",
        "detector-faster-rcnn": "trainers.detector:FasterRCNNDetector",
        "constant": f"{HERE}:ConstantTrainer",
    }


@pytest.mark.parametrize(
    "name",
    [
        "no-such-trainer",
        "sys:exit",
        "this:x",
        ".x:Y",
        "os:system",
        f"{HERE}:ConstantTrainer",
        "trainers.image_classifier:ImageClassifierTrainer",
        "",
        None,
        3,
    ],
)
def test_anything_but_a_registered_name_is_unknown_and_nothing_is_imported(name):
    # given: `this` prints the Zen of Python when imported, so it must stay out of sys.modules
    sys.modules.pop("this", None)
    # when
    with pytest.raises(UnknownTrainerError) as raised:
        get_trainer(name, {"constant": f"{HERE}:ConstantTrainer"})
    # then: the error lists the registered names, and no module was imported on the name's behalf
    assert (
        str(raised.value)
        == f"Unknown trainer {name!r}: use one of constant, detector-faster-rcnn, detector-fcos, image-classifier."
    )
    assert raised.value.name == name
    assert "this" not in sys.modules


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("tests.training.no_such_module:Trainer", "could not be loaded: ModuleNotFoundError: No module named"),
        (f"{HERE}:Missing", "could not be loaded: AttributeError"),
        ("tests.training.exiting_plugin:Trainer", "could not be loaded: SystemExit: this plugin exits on import"),
        (f"{HERE}:InterruptingTrainer", "could not be loaded: KeyboardInterrupt: raised by the plugin's __init__"),
        (f"{HERE}:NotATrainer", "is not a class with validate_config, train, predict"),
        ("sys:exit", "is not a class with validate_config, train, predict"),
        ("os:system", "is not a class with validate_config, train, predict"),
    ],
)
def test_a_registered_plugin_that_fails_to_load_fails_the_lookup_only(path, reason):
    # when: whatever the plugin raises, SystemExit and KeyboardInterrupt included, or whatever it is
    with pytest.raises(TrainerLoadError) as raised:
        get_trainer("plugin", {"plugin": path})
    # then: a function is never called, and the error names the plugin and what went wrong
    assert str(raised.value).startswith(f"Trainer 'plugin' ({path}) ") and reason in str(raised.value)
    assert "tests.training.exiting_plugin" not in sys.modules


@pytest.mark.parametrize(
    ("plugins", "reason"),
    [
        ({"image-classifier": f"{HERE}:ConstantTrainer"}, "would replace the built-in trainer"),
        ({"x": "not a path"}, "is not a name and a 'package.module:ClassName'"),
        ({"x": ".relative:Trainer"}, "is not a name and a 'package.module:ClassName'"),
        ({"x": "module.without.class"}, "is not a name and a 'package.module:ClassName'"),
        ({"": f"{HERE}:ConstantTrainer"}, "is not a name and a 'package.module:ClassName'"),
        ({"x": 3}, "is not a name and a 'package.module:ClassName'"),
        (["x"], "must be a mapping of names to paths"),
    ],
)
def test_a_malformed_plugin_setting_is_refused(plugins, reason):
    with pytest.raises(ValueError, match=reason):
        registered_trainers(plugins)
