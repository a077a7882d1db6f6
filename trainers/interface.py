"""The one small interface every trainer implements, and the records it reports progress with."""

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

Opener = Callable[[str], AbstractContextManager[BinaryIO]]


class ConfigError(ValueError):
    """Trainer config values that are missing, unknown or out of range. `problems` maps every bad key to what is
    wrong with it, so a caller fixes them all at once; `key` and `message` are the first."""

    def __init__(self, key: str, message: str, *, problems: dict[str, list[str]] | None = None):
        self.problems = problems or {key: [message]}
        super().__init__("; ".join(f"{name}: {text}" for name, texts in self.problems.items() for text in texts))
        self.key = key
        self.message = message


Box = tuple[int, float, float, float, float]  # (class index, x, y, w, h): the top-left corner and size in pixels


class ConfigProblems:
    """Collects a config's problems as a validator walks it; `raise_if_any` raises one ConfigError naming them all."""

    def __init__(self) -> None:
        self.problems: dict[str, list[str]] = {}

    def add(self, key: str, message: str) -> None:
        self.problems.setdefault(key, []).append(message)

    def raise_if_any(self) -> None:
        if self.problems:
            key, messages = next(iter(self.problems.items()))
            raise ConfigError(key, messages[0], problems=self.problems)


@dataclass(frozen=True)
class Example:
    key: int  # the datarow id
    uri: str
    target: int  # the class index; -1 when unknown (prediction) or for a detector
    boxes: tuple[Box, ...] = ()  # a detector's ground truth


@dataclass(frozen=True)
class StepProgress:
    """After one optimiser step; loss, its parts, accuracy and images_per_second are running values over the epoch
    so far. A detector has no accuracy (None) and reports each loss part (classification, box regression, ...)."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    accuracy: float | None
    images_per_second: float
    eta_seconds: float
    loss_parts: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float | None  # None for a detector
    validation_loss: float | None  # None without validation examples
    validation_accuracy: float | None
    seconds: float
    images_per_second: float  # training images over the epoch's training time (validation excluded)


@dataclass(frozen=True)
class TrainResult:
    epochs: list[EpochMetrics]
    device: str
    artifact_files: list[str]  # names inside output_dir: weights, class map, metrics, the exact config


Prediction = tuple[int, list[tuple[int, float]]]  # (example key, [(class index, probability)] best first)
# A detector's: (example key, [(class index, score, (x, y, w, h) in the image's pixels)] best first).
BoxPrediction = tuple[int, list[tuple[int, float, tuple[float, float, float, float]]]]


@runtime_checkable
class Trainer(Protocol):
    name: str
    # "classification" or "detection" (a detector's predict also takes score_threshold and yields BoxPredictions,
    # top_k being the most boxes per image); a trainer without the attribute is a classifier.

    def validate_config(self, config: dict) -> dict:
        """The config with defaults filled in; raises ConfigError naming every bad key."""

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
        """Train and write the artifacts into output_dir. on_step runs after every optimiser step; an
        exception it raises (a cancelled job) stops training at once and propagates unchanged."""

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
        """One list per batch, in the order of `items`: (key, top_k (class index, probability), best first)."""
