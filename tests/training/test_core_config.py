"""The image classifier's config: defaults filled in, and every bad value named by its key."""

import pytest

from trainers.image_classifier import DEFAULTS, ImageClassifierTrainer
from trainers.interface import ConfigError, Example


def test_defaults_fill_what_is_not_given_and_numbers_become_floats():
    config = ImageClassifierTrainer().validate_config({"architecture": "resnet18", "learning_rate": 1})

    assert config == {**DEFAULTS, "architecture": "resnet18", "learning_rate": 1.0}
    assert isinstance(config["learning_rate"], float)


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ({"architecture": "vgg16"}, "architecture", "must be one of small-cnn, resnet18"),
        ({"image_size": 8}, "image_size", "from 16 to 1024"),
        ({"epochs": "3"}, "epochs", "must be an integer"),
        ({"batch_size": True}, "batch_size", "must be an integer"),
        ({"seed": -1}, "seed", "from 0"),
        ({"num_workers": 1.5}, "num_workers", "must be an integer"),
        ({"learning_rate": 0}, "learning_rate", "greater than 0"),
        ({"weight_decay": "0.1"}, "weight_decay", "must be a number"),
        ({"device": "tpu"}, "device", "auto, cpu, cuda"),
        ({"augment": "yes"}, "augment", "true or false"),
        ({"cache": "disk"}, "cache", "none, decoded"),
        ({"cache_dir": 3}, "cache_dir", "folder path or null"),
        ({"learnig_rate": 0.1}, "learnig_rate", "unknown key"),
    ],
)
def test_a_bad_value_is_refused_naming_its_key(config, key, message):
    with pytest.raises(ConfigError) as raised:
        ImageClassifierTrainer().validate_config(config)

    assert raised.value.key == key
    assert message in raised.value.message
    assert isinstance(raised.value, ValueError) and str(raised.value).startswith(f"{key}: ")


def test_asking_for_cuda_on_a_machine_without_it_names_the_device_key(tmp_path, monkeypatch):
    import torch

    # A machine without CUDA, whatever this one has, so the test runs everywhere.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as raised:
        ImageClassifierTrainer().train(
            train=[Example(key=1, uri="a.jpg", target=0)],
            validation=[],
            classes=["a"],
            config={"device": "cuda"},
            opener=open,
            output_dir=tmp_path,
            on_step=print,
            on_epoch=print,
            log=print,
        )
    assert raised.value.key == "device"


def test_every_bad_value_is_reported_at_once_each_under_its_key():
    with pytest.raises(ConfigError) as raised:
        ImageClassifierTrainer().validate_config(
            {"epochs": 0, "learning_rate": "fast", "architecture": "vgg16", "colour": "red", "augment": "yes"}
        )

    assert raised.value.problems.keys() == {"epochs", "learning_rate", "architecture", "colour", "augment"}
    assert "from 1 to 10000" in raised.value.problems["epochs"][0]
    assert "must be a number" in raised.value.problems["learning_rate"][0]
    assert all(f"{key}: " in str(raised.value) for key in raised.value.problems)
