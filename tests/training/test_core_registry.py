"""Trainers by name: the built-in, registered names and plugins by dotted path."""

from pathlib import Path

import pytest

from training.core import registry
from training.core.image_classifier import ImageClassifierTrainer
from training.core.interface import EpochMetrics, TrainResult
from training.core.registry import UnknownTrainerError, get_trainer


class ConstantTrainer:
    """A plugin trainer as a third party would write one: it learns nothing and predicts class 0."""

    name = "constant"

    def validate_config(self, config: dict) -> dict:
        return {"answer": 0, **config}

    def train(self, *, train, validation, classes, config, opener, output_dir: Path, on_step, on_epoch, log):
        metrics = EpochMetrics(epoch=1, train_loss=0.0, train_accuracy=0.0, validation_loss=None,
                               validation_accuracy=None, seconds=0.0, images_per_second=0.0)
        on_epoch(metrics)
        return TrainResult(epochs=[metrics], device="cpu", artifact_files=[])

    def predict(self, *, artifact_dir, items, opener, batch_size, top_k, device="auto"):
        yield [(item.key, [(0, 1.0)]) for item in items]


class NotATrainer:
    name = "half"

    def train(self, **arguments):
        """Present, unlike predict and validate_config: the registry must still refuse the class."""


def test_the_built_in_image_classifier_is_found_by_name():
    trainer = get_trainer("image-classifier")

    assert isinstance(trainer, ImageClassifierTrainer) and trainer.name == "image-classifier"


def test_a_plugin_is_found_by_its_dotted_path_and_each_call_gives_a_new_instance():
    trainer = get_trainer("tests.training.test_core_registry:ConstantTrainer")

    assert isinstance(trainer, ConstantTrainer)
    assert trainer.validate_config({}) == {"answer": 0}
    assert get_trainer("tests.training.test_core_registry:ConstantTrainer") is not trainer


def test_a_name_registered_in_the_mapping_resolves_to_its_path(monkeypatch):
    monkeypatch.setitem(registry.TRAINERS, "constant", "tests.training.test_core_registry:ConstantTrainer")

    assert isinstance(get_trainer("constant"), ConstantTrainer)


@pytest.mark.parametrize(("name", "reason"), [
    ("no-such-trainer", "use one of ['image-classifier'] or a dotted path"),
    ("tests.training.no_such_module:Trainer", "module 'tests.training.no_such_module' cannot be imported"),
    ("tests.training.test_core_registry:Missing", "has no 'Missing'"),
    ("tests.training.test_core_registry:NotATrainer", "does not implement name, validate_config, train and predict"),
])
def test_an_unknown_or_incomplete_trainer_is_refused_saying_why(name, reason):
    with pytest.raises(UnknownTrainerError) as raised:
        get_trainer(name)

    assert reason in str(raised.value) and raised.value.name == name
