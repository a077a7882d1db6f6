"""What every trainer writes beside its weights: the class names, the exact config and the metrics of each epoch."""

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from trainers.interface import EpochMetrics, TrainResult

CLASSES_FILE = "classes.json"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.json"


def run_artifacts_write(
    *,
    output_dir: Path,
    weights_file: str,
    classes: Sequence[str],
    config: dict,
    device: str,
    train_examples: int,
    validation_examples: int,
    epochs: list[EpochMetrics],
) -> TrainResult:
    """The files beside `weights_file` (already written), and the result naming all of them."""
    (output_dir / CLASSES_FILE).write_text(json.dumps(list(classes)))
    (output_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    metrics = {
        "device": device,
        "train_examples": train_examples,
        "validation_examples": validation_examples,
        "epochs": [asdict(epoch) for epoch in epochs],
    }
    (output_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    return TrainResult(
        epochs=epochs, device=device, artifact_files=[weights_file, CLASSES_FILE, METRICS_FILE, CONFIG_FILE]
    )
