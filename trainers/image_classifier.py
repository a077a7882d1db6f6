"""The built-in "image-classifier" trainer: a small CNN or a ResNet-18 from random initialisation, on the
GPU when there is one (bf16 autocast), else on the CPU, where a seed makes a run exactly repeatable.

This module holds the config and imports no torch, so a web process validates configs without the
training workers' dependencies; training and prediction (trainers.classifier_training) load lazily.
"""

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from trainers.interface import (
    ConfigError,
    ConfigProblems,
    EpochMetrics,
    Example,
    Opener,
    Prediction,
    StepProgress,
    TrainResult,
)
from trainers.weights import check_weights_uri

ARCHITECTURES = ("small-cnn", "resnet18")

WEIGHTS_FILE = "model.pt"

DEFAULTS = {
    "architecture": "small-cnn",
    "image_size": 64,
    "epochs": 5,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "weight_decay": 1e-4,
    "seed": 0,
    "device": "auto",
    "num_workers": 0,
    "augment": False,
    # "decoded": keep every decoded, resized image in a memory-mapped file after the first epoch, so later
    # epochs (and later runs given the same cache_dir) skip JPEG decoding: what keeps a GPU fed.
    "cache": "none",
    "cache_dir": None,  # None: a temporary folder inside output_dir, removed when training ends
    # Fine-tuning: a URI of a safetensors file or a torch state_dict of this architecture and class count (a
    # previous run's model.pt fits), read through the caller's opener.
    "init_weights": None,
}
CHOICES = {"architecture": ARCHITECTURES, "device": ("auto", "cpu", "cuda"), "cache": ("none", "decoded")}
INTEGER_RANGES = {
    "image_size": (16, 1024),
    "epochs": (1, 10_000),
    "batch_size": (1, 8192),
    "seed": (0, 2**63 - 1),
    "num_workers": (0, 256),
}
FLOAT_RANGES = {"learning_rate": (0.0, 10.0), "weight_decay": (0.0, 1.0)}


def validate_config(config: dict) -> dict:
    if not isinstance(config, dict):
        raise ConfigError("config", "must be a JSON object")
    problems = ConfigProblems()
    for key in config:
        if key not in DEFAULTS:
            problems.add(key, f"unknown key; expected some of {', '.join(DEFAULTS)}")
    valid = {**DEFAULTS, **config}
    low: float  # the integer and the float ranges share these names
    high: float
    for key, choices in CHOICES.items():
        if valid[key] not in choices:
            problems.add(key, f"must be one of {', '.join(choices)}, not {valid[key]!r}")
    for key, (low, high) in INTEGER_RANGES.items():
        value = valid[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.add(key, f"must be an integer from {low} to {high}, not {value!r}")
    for key, (low, high) in FLOAT_RANGES.items():
        value = valid[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            problems.add(key, f"must be a number from {low} to {high}, not {value!r}")
        else:
            valid[key] = float(value)
    if valid["learning_rate"] == 0:
        problems.add("learning_rate", "must be greater than 0")
    if not isinstance(valid["augment"], bool):
        problems.add("augment", f"must be true or false, not {valid['augment']!r}")
    if valid["cache_dir"] is not None and not (isinstance(valid["cache_dir"], str) and valid["cache_dir"]):
        problems.add("cache_dir", f"must be a folder path or null, not {valid['cache_dir']!r}")
    try:
        check_weights_uri(valid["init_weights"])
    except ConfigError as error:
        problems.add(error.key, error.message)
    problems.raise_if_any()
    return valid


class ImageClassifierTrainer:
    name = "image-classifier"

    def validate_config(self, config: dict) -> dict:
        return validate_config(config)

    def train(
        self,
        *,
        train: Sequence[Example],
        validation: Sequence[Example],
        classes: Sequence[str],
        config: dict,
        opener: Opener,
        output_dir: Path,
        on_step: Callable[[StepProgress], None],
        on_epoch: Callable[[EpochMetrics], None],
        log: Callable[[str], None],
    ) -> TrainResult:
        from trainers.classifier_training import train_classifier

        return train_classifier(
            train=train,
            validation=validation,
            classes=classes,
            config=validate_config(config),
            opener=opener,
            output_dir=Path(output_dir),
            on_step=on_step,
            on_epoch=on_epoch,
            log=log,
        )

    def predict(
        self,
        *,
        artifact_dir: Path,
        items: Sequence[Example],
        opener: Opener,
        batch_size: int,
        top_k: int,
        device: str = "auto",
    ) -> Iterator[list[Prediction]]:
        from trainers.classifier_training import predict_classifier

        return predict_classifier(
            artifact_dir=Path(artifact_dir),
            items=items,
            opener=opener,
            batch_size=batch_size,
            top_k=top_k,
            device=device,
        )
