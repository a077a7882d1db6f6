"""Training and prediction of the image classifier (torch): data in, the loop, artifacts out."""

import json
import math
import pickle
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import AbstractContextManager, closing, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from trainers.artifacts import CLASSES_FILE, CONFIG_FILE, run_artifacts_write
from trainers.image_classifier import WEIGHTS_FILE, validate_config
from trainers.images import (
    Batch,
    DecodedCache,
    DecodedImages,
    DeviceImages,
    ShuffledBatches,
    cached_batches,
    decoding_loader,
    epoch_batches,
    filling_cache,
    shuffle_seed,
)
from trainers.interface import ConfigError, EpochMetrics, Example, Opener, Prediction, StepProgress, TrainResult
from trainers.networks import build_network
from trainers.weights import load_into

WARMUP_FRACTION = 0.05


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda was asked for but this machine has no usable CUDA device")
    return torch.device("cuda" if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()) else "cpu")


def mixed_precision(device: torch.device) -> AbstractContextManager[Any]:
    """bf16 autocast on CUDA; plain float32 on the CPU, which keeps CPU runs exact and repeatable."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def train_classifier(
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
    """Train on a validated config (ImageClassifierTrainer.train's contract)."""
    device = resolve_device(config["device"])
    if not train:
        raise ValueError("There are no training examples.")
    _check_targets(train, len(classes), "train")
    _check_targets(validation, len(classes), "validation")
    output_dir.mkdir(parents=True, exist_ok=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    log(
        f"Training {config['architecture']} at {config['image_size']} px on {_describe(device)}: "
        f"{len(train)} training and {len(validation)} validation images, {len(classes)} classes."
    )

    with torch.random.fork_rng(devices=[]):  # the seed decides the initial weights without leaking globally
        torch.manual_seed(config["seed"])
        network = build_network(config["architecture"], len(classes))
    if config["init_weights"]:
        load_into(network, config["init_weights"], opener)
        log(f"Started from the weights at {config['init_weights']}.")
    # Module.to takes memory_format at run time; torch's overloads leave it out.
    network = network.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    loop = _TrainingLoop(network, device, config, train, validation, opener, on_step, on_epoch, log)
    if config["cache"] == "decoded" and config["cache_dir"] is None:
        with tempfile.TemporaryDirectory(prefix="decoded-cache-", dir=output_dir) as cache_dir:
            epochs = loop.run(Path(cache_dir))
    else:
        epochs = loop.run(Path(config["cache_dir"]) if config["cache"] == "decoded" else None)

    torch.save({name: tensor.cpu() for name, tensor in network.state_dict().items()}, output_dir / WEIGHTS_FILE)
    return run_artifacts_write(
        output_dir=output_dir,
        weights_file=WEIGHTS_FILE,
        classes=classes,
        config=config,
        device=str(device),
        train_examples=len(train),
        validation_examples=len(validation),
        epochs=epochs,
    )


def predict_classifier(
    *, artifact_dir: Path, items: Sequence[Example], opener: Opener, batch_size: int, top_k: int, device: str
) -> Iterator[list[Prediction]]:
    """Predictions of the model in artifact_dir (ImageClassifierTrainer.predict's contract)."""
    if batch_size < 1 or top_k < 1:
        raise ValueError(f"batch_size and top_k must be at least 1, not {batch_size} and {top_k}.")
    config = validate_config(json.loads((artifact_dir / CONFIG_FILE).read_text()))
    classes = json.loads((artifact_dir / CLASSES_FILE).read_text())
    target = resolve_device(device)
    network = build_network(config["architecture"], len(classes))
    network.load_state_dict(load_weights(artifact_dir / WEIGHTS_FILE))
    network = network.to(target, memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
    to_input = DeviceImages(target, augment_seed=None)
    top_k = max(1, min(top_k, len(classes)))
    loader = decoding_loader(
        DecodedImages(items, opener, config["image_size"]),
        ShuffledBatches(len(items), batch_size),
        num_workers=config["num_workers"],
        pin_memory=target.type == "cuda",
    )
    with torch.inference_mode():
        for indices, images, _ in loader:
            with mixed_precision(target):
                logits = network(to_input(images, augment=False))
            probabilities, class_indices = F.softmax(logits.float(), dim=1).topk(top_k, dim=1)
            yield [
                (items[index].key, list(zip(best, scores, strict=True)))
                for index, best, scores in zip(
                    indices.tolist(), class_indices.tolist(), probabilities.tolist(), strict=True
                )
            ]


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors saved in `path`. torch.load unpickles, and a pickle can run code: weights_only lets through
    tensors and plain containers only, so a file that carries anything else is refused before any of it runs."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"Refusing to load {path.name}: it holds more than tensors (a pickled object that could run code)."
        ) from error


def make_optimizer(
    network: torch.nn.Module, config: dict, total_steps: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with a short linear warm-up, then a cosine decay to zero over the run."""
    optimizer = torch.optim.AdamW(network.parameters(), lr=config["learning_rate"], weight_decay=config["weight_decay"])
    warmup = max(1, int(total_steps * WARMUP_FRACTION))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, step / total_steps))))
    )
    return optimizer, schedule


def train_step(
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    to_input: DeviceImages,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    augment: bool,
) -> tuple[float, int]:
    """One optimiser step on a uint8 (B, S, S, 3) batch: the batch's mean loss and how many it got right."""
    targets = targets.to(to_input.device, non_blocking=True)
    with mixed_precision(to_input.device):
        logits = network(to_input(images, augment=augment))
        loss = F.cross_entropy(logits, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()
    loss_value, correct = torch.stack(  # one device sync per step, for both numbers
        [loss.detach().float(), (logits.argmax(1) == targets).sum().float()]
    ).tolist()
    return loss_value, int(correct)


class _TrainingLoop:
    def __init__(
        self,
        network: torch.nn.Module,
        device: torch.device,
        config: dict,
        train: Sequence[Example],
        validation: Sequence[Example],
        opener: Opener,
        on_step: Callable[[StepProgress], None],
        on_epoch: Callable[[EpochMetrics], None],
        log: Callable[[str], None],
    ) -> None:
        self.network, self.device, self.config = network, device, config
        self.train_examples, self.validation_examples = train, validation
        self.opener, self.on_step, self.on_epoch, self.log = opener, on_step, on_epoch, log
        self.to_input = DeviceImages(device, augment_seed=config["seed"])
        self.pin_memory = device.type == "cuda"
        # A GPU step outruns one reader of 256 images; on the CPU more readers only take cores from the model.
        self.cache_readers = max(2, min(8, config["num_workers"])) if device.type == "cuda" else 1
        self.loaders: dict[str, DataLoader] = {}
        self.caches: dict[str, DecodedCache] = {}
        self.steps_per_epoch = len(epoch_batches(len(train), config["batch_size"], None))
        self.total_steps = self.steps_per_epoch * config["epochs"]
        self.optimizer, self.schedule = make_optimizer(network, config, self.total_steps)
        self.steps_done = 0

    def run(self, cache_dir: Path | None) -> list[EpochMetrics]:
        if cache_dir is not None:
            for split, examples in (("train", self.train_examples), ("validation", self.validation_examples)):
                if examples:
                    self.caches[split] = cache = DecodedCache(cache_dir, examples, self.config["image_size"])
                    size_gib = np.prod(cache.shape) / 2**30
                    self.log(
                        f"Decoded-image cache for {split}: {cache.path}, {size_gib:.2f} GiB "
                        f"({'reused' if cache.complete else 'filled during the first epoch'})."
                    )
        self.started = time.perf_counter()
        metrics = []
        try:
            for epoch in range(1, self.config["epochs"] + 1):
                metrics.append(self._epoch(epoch))
                self.on_epoch(metrics[-1])
        finally:
            self.loaders.clear()  # stops persistent DataLoader workers, also when on_step raised
        return metrics

    def _epoch(self, epoch: int) -> EpochMetrics:
        self.network.train()
        started = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        with closing(self._batches("train", epoch=epoch)) as batches:
            for step, (_, images, targets) in enumerate(batches, start=1):
                batch_loss, batch_correct = train_step(
                    self.network,
                    self.optimizer,
                    self.schedule,
                    self.to_input,
                    images,
                    targets,
                    augment=self.config["augment"],
                )
                loss_sum, correct = loss_sum + batch_loss * len(targets), correct + batch_correct
                seen += len(targets)
                self.steps_done += 1
                now = time.perf_counter()
                self.on_step(
                    StepProgress(
                        epoch=epoch,
                        epochs=self.config["epochs"],
                        step=step,
                        steps=self.steps_per_epoch,
                        loss=loss_sum / seen,
                        accuracy=correct / seen,
                        images_per_second=seen / (now - started),
                        eta_seconds=(now - self.started) / self.steps_done * (self.total_steps - self.steps_done),
                    )
                )
        train_seconds = time.perf_counter() - started
        validation_loss, validation_accuracy = self._validate()
        return EpochMetrics(
            epoch=epoch,
            train_loss=loss_sum / seen,
            train_accuracy=correct / seen,
            validation_loss=validation_loss,
            validation_accuracy=validation_accuracy,
            seconds=time.perf_counter() - started,
            images_per_second=seen / train_seconds,
        )

    def _validate(self) -> tuple[float | None, float | None]:
        if not self.validation_examples:
            return None, None
        self.network.eval()
        loss_sum, correct = 0.0, 0
        with torch.inference_mode(), closing(self._batches("validation", epoch=None)) as batches:
            for _, images, targets in batches:
                targets = targets.to(self.device, non_blocking=True)
                with mixed_precision(self.device):
                    logits = self.network(self.to_input(images, augment=False))
                batch_loss, batch_correct = torch.stack(
                    [
                        F.cross_entropy(logits.float(), targets, reduction="sum"),
                        (logits.argmax(1) == targets).sum().float(),
                    ]
                ).tolist()
                loss_sum, correct = loss_sum + batch_loss, correct + batch_correct
        count = len(self.validation_examples)
        return loss_sum / count, correct / count

    def _batches(self, split: str, *, epoch: int | None) -> Generator[Batch]:
        """One epoch of (indices, uint8 images, targets), shuffled for a training epoch: from the decoded
        cache when it is complete, else decoded by the DataLoader (filling the cache on the way if any)."""
        examples = self.train_examples if split == "train" else self.validation_examples
        order_seed = None if epoch is None else shuffle_seed(self.config["seed"], epoch)
        cache = self.caches.get(split)
        if cache is not None and cache.complete:
            self.loaders.pop(split, None)
            targets = torch.tensor([example.target for example in examples], dtype=torch.long)
            return cached_batches(
                cache,
                targets,
                epoch_batches(len(examples), self.config["batch_size"], order_seed),
                pin_memory=self.pin_memory,
                threads=self.cache_readers,
            )
        if split not in self.loaders:
            self.loaders[split] = decoding_loader(
                DecodedImages(examples, self.opener, self.config["image_size"]),
                ShuffledBatches(len(examples), self.config["batch_size"]),
                num_workers=self.config["num_workers"],
                pin_memory=self.pin_memory,
            )
        loader = self.loaders[split]
        assert isinstance(loader.batch_sampler, ShuffledBatches)
        loader.batch_sampler.shuffle_seed = order_seed
        return filling_cache(iter(loader), cache) if cache is not None else _closable(iter(loader))


def _closable(batches: Iterator[Batch]) -> Generator[Batch]:
    """A generator over the DataLoader's iterator, which has no close() for contextlib.closing."""
    yield from batches


def _check_targets(examples: Sequence[Example], class_count: int, split: str) -> None:
    for example in examples:
        if not 0 <= example.target < class_count:
            raise ValueError(
                f"{split} example {example.key} has target {example.target}, "
                f"outside the {class_count} classes (0..{class_count - 1})."
            )


def _describe(device: torch.device) -> str:
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"
