"""The built-in detectors, torchvision's detection models on a ResNet-18 with a feature pyramid (FPN), randomly
initialised or from user-supplied weights (`init_weights`): "detector-fcos" (one-stage, FCOS) and
"detector-faster-rcnn" (two-stage, Faster R-CNN).

No pretrained weights are ever downloaded: every torchvision builder is called with weights=None and
weights_backbone=None. This module holds the config and imports no torch, so a web process validates configs
without the training workers' dependencies; training and prediction (trainers.detection_training) load
lazily.
"""

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from trainers.interface import (
    BoxPrediction,
    ConfigError,
    ConfigProblems,
    EpochMetrics,
    Example,
    Opener,
    StepProgress,
    TrainResult,
)
from trainers.weights import check_weights_uri

WEIGHTS_FILE = "model.safetensors"

DEFAULTS = {
    # The shorter image side the model sees (torchvision resizes each image, keeping its aspect ratio, up to
    # max_size on the longer side); images of any size go in, boxes come out in the image's own pixels.
    "min_size": 128,
    "max_size": 256,
    # torchvision's default of 256 is four times the work, more than a few classes need; a multiple of 32 (FCOS's
    # head normalises in 32 groups).
    "fpn_channels": 64,
    "epochs": 10,
    "batch_size": 8,
    "learning_rate": 1e-3,
    "weight_decay": 1e-4,
    "seed": 0,
    "device": "auto",
    "augment": True,  # a random horizontal flip and a random shorter side from 80% to 120% of min_size
    "init_weights": None,  # a URI of a safetensors file or a torch state_dict of this architecture
}
CHOICES = {"device": ("auto", "cpu", "cuda")}
INTEGER_RANGES = {
    "min_size": (32, 2048),
    "max_size": (32, 4096),
    "fpn_channels": (32, 512),
    "epochs": (1, 10_000),
    "batch_size": (1, 1024),
    "seed": (0, 2**63 - 1),
}
FLOAT_RANGES = {"learning_rate": (0.0, 10.0), "weight_decay": (0.0, 1.0)}


def validate_config(config: dict) -> dict:
    """Defaults filled in; every bad value is reported at once (ConfigProblems)."""
    if not isinstance(config, dict):
        raise ConfigError("config", "must be a JSON object")
    problems = ConfigProblems()
    for key in config:
        if key not in DEFAULTS:
            problems.add(key, f"unknown key; expected some of {', '.join(DEFAULTS)}")
    valid: dict = {**DEFAULTS, **config}
    for key, choices in CHOICES.items():
        if valid[key] not in choices:
            problems.add(key, f"must be one of {', '.join(choices)}, not {valid[key]!r}")
    for key, (low, high) in INTEGER_RANGES.items():
        value = valid[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.add(key, f"must be an integer from {low} to {high}, not {value!r}")
    for key, (low_bound, high_bound) in FLOAT_RANGES.items():
        number = valid[key]
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not low_bound <= number <= high_bound:
            problems.add(key, f"must be a number from {low_bound} to {high_bound}, not {number!r}")
        else:
            valid[key] = float(number)
    problems.raise_if_any()  # the checks below compare values the ones above have typed
    if valid["learning_rate"] == 0:
        problems.add("learning_rate", "must be greater than 0")
    if valid["fpn_channels"] % 32:
        problems.add("fpn_channels", f"must be a multiple of 32, not {valid['fpn_channels']}")
    if valid["max_size"] < valid["min_size"]:
        problems.add("max_size", f"must be at least min_size ({valid['min_size']})")
    if not isinstance(valid["augment"], bool):
        problems.add("augment", f"must be true or false, not {valid['augment']!r}")
    try:
        check_weights_uri(valid["init_weights"])
    except ConfigError as error:
        problems.add(error.key, error.message)
    problems.raise_if_any()
    return valid


class _Detector:
    task = "detection"
    architecture: str

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
        from trainers.detection_training import train_detector

        return train_detector(
            architecture=self.architecture,
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
        score_threshold: float = 0.05,
    ) -> Iterator[list[BoxPrediction]]:
        """top_k: the most boxes kept per image (best first), of those scoring at least score_threshold."""
        from trainers.detection_training import predict_detector

        return predict_detector(
            architecture=self.architecture,
            artifact_dir=Path(artifact_dir),
            items=items,
            opener=opener,
            batch_size=batch_size,
            top_k=top_k,
            device=device,
            score_threshold=score_threshold,
        )


class FCOSDetector(_Detector):
    """FCOS (Tian et al. 2019): one-stage and anchor-free, a dense per-location class, box and centerness head."""

    name = "detector-fcos"
    architecture = "fcos"


class FasterRCNNDetector(_Detector):
    """Faster R-CNN (Ren et al. 2015): two-stage, a region proposal network, then per-region class and box."""

    name = "detector-faster-rcnn"
    architecture = "faster-rcnn"
