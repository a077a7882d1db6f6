"""Training and prediction of the detectors (torch, torchvision): data in, the loop, artifacts out."""

import io
import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.models import resnet18
from torchvision.models.detection import FCOS, FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7
from torchvision.transforms import v2

from trainers.artifacts import CLASSES_FILE, CONFIG_FILE, run_artifacts_write
from trainers.classifier_training import make_optimizer, mixed_precision, resolve_device
from trainers.detector import WEIGHTS_FILE, validate_config
from trainers.interface import BoxPrediction, EpochMetrics, Example, Opener, StepProgress, TrainResult
from trainers.weights import load_into

# Scale jitter: the shorter side is drawn from these fractions of min_size at each training step.
JITTER = (0.8, 0.9, 1.0, 1.1, 1.2)
MAX_GRAD_NORM = 10.0  # a from-scratch detector's first steps can throw huge box-regression gradients


def build_detector(architecture: str, num_classes: int, config: dict) -> nn.Module:
    """torchvision's model with a randomly initialised ResNet-18 FPN; never downloads weights. Class index i is
    label i + 1 (Faster R-CNN keeps 0 for the background; FCOS simply never sees label 0)."""
    # Trainable batch norm everywhere: torchvision's frozen default only makes sense with pretrained statistics.
    body = resnet18(weights=None, norm_layer=nn.BatchNorm2d)
    channels = config["fpn_channels"]
    if architecture == "fcos":
        layers, extra = {"layer2": "0", "layer3": "1", "layer4": "2"}, LastLevelP6P7(channels, channels)
        in_channels = [128, 256, 512]
    else:
        layers, extra = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}, LastLevelMaxPool()
        in_channels = [64, 128, 256, 512]
    backbone = BackboneWithFPN(body, layers, in_channels, channels, extra_blocks=extra)
    sizes = {"min_size": config["min_size"], "max_size": config["max_size"]}
    if architecture == "fcos":
        return FCOS(backbone, num_classes + 1, **sizes)
    # Anchors one octave smaller than torchvision's (32..512): objects here are often a few dozen pixels.
    anchors = AnchorGenerator(((16,), (32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * 5)
    return FasterRCNN(backbone, num_classes + 1, rpn_anchor_generator=anchors, **sizes)


def read_image(opener: Opener, uri: str) -> torch.Tensor:
    """uint8 (3, H, W) at the image's own size (boxes are in its pixels). Reads the whole object first, so the
    opener's stream need not be seekable."""
    with opener(uri) as stream:
        data = stream.read()
    # PIL: torchvision's decoders are deprecated from 0.29 (for TorchCodec, which is not installed here).
    with Image.open(io.BytesIO(data)) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)


class DetectionImages(Dataset):
    """Item i: (i, float image (3, H, W) in [0, 1], target {"boxes": xyxy, "labels"}), flipped at random
    when augmenting. Boxes are clipped to the image; one left without area is dropped (torchvision refuses it)."""

    def __init__(self, examples: Sequence[Example], opener: Opener, *, augment: bool):
        self.examples, self.opener = examples, opener
        self.flip = v2.RandomHorizontalFlip(0.5) if augment else None

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, dict]:
        example = self.examples[index]
        image = read_image(self.opener, example.uri)
        height, width = image.shape[-2:]
        boxes = tv_tensors.BoundingBoxes(
            torch.tensor([[x, y, x + w, y + h] for _, x, y, w, h in example.boxes], dtype=torch.float32).reshape(-1, 4),
            format="XYXY",
            canvas_size=(height, width),
        )
        labels = torch.tensor([label + 1 for label, *_ in example.boxes], dtype=torch.int64)
        if self.flip is not None:
            image, boxes = self.flip(tv_tensors.Image(image), boxes)
        boxes = v2.functional.clamp_bounding_boxes(boxes)
        keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        return (
            index,
            image.as_subclass(torch.Tensor).float() / 255,
            {"boxes": boxes.as_subclass(torch.Tensor)[keep], "labels": labels[keep]},
        )


def _collate(items: list) -> tuple:
    return tuple(zip(*items, strict=True))  # images of different sizes stay a list: the model pads each batch itself


def _loader(dataset: Dataset, batch_size: int, *, shuffle_seed: int | None) -> DataLoader:
    generator = torch.Generator().manual_seed(shuffle_seed) if shuffle_seed is not None else None
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle_seed is not None, generator=generator, collate_fn=_collate
    )


def _check_boxes(examples: Sequence[Example], class_count: int, split: str) -> None:
    for example in examples:
        for label, *_ in example.boxes:
            if not 0 <= label < class_count:
                raise ValueError(
                    f"{split} example {example.key} has a box of class {label}, outside the "
                    f"{class_count} classes (0..{class_count - 1})."
                )


def train_detector(
    *,
    architecture: str,
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
    """Train on a validated config (the detector trainers' train contract)."""
    device = resolve_device(config["device"])
    if not train:
        raise ValueError("There are no training examples.")
    _check_boxes(train, len(classes), "train")
    _check_boxes(validation, len(classes), "validation")
    output_dir.mkdir(parents=True, exist_ok=True)
    log(
        f"Training {architecture} (ResNet-18 FPN) at {config['min_size']} px on {device.type}: {len(train)} training "
        f"and {len(validation)} validation images, {len(classes)} classes."
    )
    # The seed decides the initial weights, the augmentation and the jitter, without leaking into the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config["seed"])
        model = build_detector(architecture, len(classes), config)
        if config["init_weights"]:
            load_into(model, config["init_weights"], opener)
            log(f"Started from the weights at {config['init_weights']}.")
        model.to(device)
        epochs = _TrainingLoop(model, device, config, train, validation, opener, on_step, log).run(on_epoch)

    save_file(
        {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()},
        output_dir / WEIGHTS_FILE,
    )
    return run_artifacts_write(
        output_dir=output_dir,
        weights_file=WEIGHTS_FILE,
        classes=classes,
        config={**config, "architecture": architecture},
        device=str(device),
        train_examples=len(train),
        validation_examples=len(validation),
        epochs=epochs,
    )


class _TrainingLoop:
    def __init__(
        self,
        model: Any,  # a torchvision detector: its transform and heads are attributes torch's types do not know
        device: torch.device,
        config: dict,
        train: Sequence[Example],
        validation: Sequence[Example],
        opener: Opener,
        on_step: Callable[[StepProgress], None],
        log: Callable[[str], None],
    ) -> None:
        self.model, self.device, self.config, self.on_step, self.log = model, device, config, on_step, log
        self.train_images = DetectionImages(train, opener, augment=config["augment"])
        self.validation_images = DetectionImages(validation, opener, augment=False) if validation else None
        self.steps_per_epoch = -(-len(train) // config["batch_size"])
        self.total_steps = self.steps_per_epoch * config["epochs"]
        self.optimizer, self.schedule = make_optimizer(model, config, self.total_steps)
        self.sizes = (config["min_size"],)
        self.jitter_sizes = tuple(round(config["min_size"] * f) for f in JITTER) if config["augment"] else self.sizes
        self.steps_done = 0

    def run(self, on_epoch: Callable[[EpochMetrics], None]) -> list[EpochMetrics]:
        self.started = time.perf_counter()
        metrics = []
        try:
            for epoch in range(1, self.config["epochs"] + 1):
                metrics.append(self._epoch(epoch))
                on_epoch(metrics[-1])
        finally:  # the saved model (and a cancelled one) predicts at min_size
            self.model.transform.min_size = self.sizes
        return metrics

    def _epoch(self, epoch: int) -> EpochMetrics:
        self.model.train()
        self.model.transform.min_size = self.jitter_sizes  # torchvision draws one per image while training
        started = time.perf_counter()
        seen, loss_sum, part_sums = 0, 0.0, dict[str, float]()
        order = _loader(self.train_images, self.config["batch_size"], shuffle_seed=self.config["seed"] * 10_007 + epoch)
        for step, (_, images, targets) in enumerate(order, start=1):
            images = [image.to(self.device, non_blocking=True) for image in images]
            targets = [{key: value.to(self.device) for key, value in target.items()} for target in targets]
            with mixed_precision(self.device):
                parts = self.model(images, targets)
            loss = sum(parts.values())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), MAX_GRAD_NORM)
            self.optimizer.step()
            self.schedule.step()
            values = torch.stack([loss.detach().float(), *(part.detach().float() for part in parts.values())]).tolist()
            count = len(images)
            seen, loss_sum = seen + count, loss_sum + values[0] * count
            for name, value in zip(parts, values[1:], strict=True):
                part_sums[name] = part_sums.get(name, 0.0) + value * count
            self.steps_done += 1
            now = time.perf_counter()
            self.on_step(
                StepProgress(
                    epoch=epoch,
                    epochs=self.config["epochs"],
                    step=step,
                    steps=self.steps_per_epoch,
                    loss=loss_sum / seen,
                    accuracy=None,
                    images_per_second=seen / (now - started),
                    eta_seconds=(now - self.started) / self.steps_done * (self.total_steps - self.steps_done),
                    loss_parts={name: total / seen for name, total in part_sums.items()},
                )
            )
        train_seconds = time.perf_counter() - started
        self.model.transform.min_size = self.sizes
        return EpochMetrics(
            epoch=epoch,
            train_loss=loss_sum / seen,
            train_accuracy=None,
            validation_loss=self._validation_loss(),
            validation_accuracy=None,
            seconds=time.perf_counter() - started,
            images_per_second=seen / train_seconds,
        )

    def _validation_loss(self) -> float | None:
        """The held-out loss: torchvision's detectors return losses only in training mode, so batch norm is
        switched to its running statistics and nothing is learnt."""
        if self.validation_images is None:
            return None
        self.model.train()
        for module in self.model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        loss_sum = 0.0
        with torch.no_grad():
            for _, images, targets in _loader(self.validation_images, self.config["batch_size"], shuffle_seed=None):
                images = [image.to(self.device) for image in images]
                targets = [{key: value.to(self.device) for key, value in target.items()} for target in targets]
                with mixed_precision(self.device):
                    loss_sum += float(sum(self.model(images, targets).values())) * len(images)
        return loss_sum / len(self.validation_images)


def predict_detector(
    *,
    architecture: str,
    artifact_dir: Path,
    items: Sequence[Example],
    opener: Opener,
    batch_size: int,
    top_k: int,
    device: str,
    score_threshold: float,
) -> Iterator[list[BoxPrediction]]:
    """Boxes of the model in artifact_dir (the detector trainers' predict contract), at most top_k per image."""
    if batch_size < 1 or top_k < 1 or not 0 <= score_threshold <= 1:
        raise ValueError(
            f"batch_size and top_k must be at least 1 and score_threshold within [0, 1], not "
            f"{batch_size}, {top_k} and {score_threshold}."
        )
    saved = json.loads((artifact_dir / CONFIG_FILE).read_text())
    if saved.pop("architecture", None) != architecture:
        raise ValueError(f"The artifacts in {artifact_dir} are not a {architecture} detector's.")
    config = validate_config(saved)
    classes = json.loads((artifact_dir / CLASSES_FILE).read_text())
    target = resolve_device(device)
    model = build_detector(architecture, len(classes), config)
    model.load_state_dict(load_file(artifact_dir / WEIGHTS_FILE))  # safetensors: tensors only, nothing to run
    heads: Any = model if architecture == "fcos" else model.roi_heads
    heads.score_thresh, heads.detections_per_img = score_threshold, top_k
    model = model.to(target).eval()
    images = DetectionImages(items, opener, augment=False)
    with torch.inference_mode():
        for indices, batch, _ in _loader(images, batch_size, shuffle_seed=None):
            with mixed_precision(target):
                outputs = model([image.to(target) for image in batch])
            predictions = []
            for index, output in zip(indices, outputs, strict=True):
                boxes = output["boxes"].float().cpu()
                boxes[:, 2:] -= boxes[:, :2]  # xyxy -> xywh
                predictions.append(
                    (
                        items[index].key,
                        [
                            (label - 1, score, tuple(box))
                            for label, score, box in zip(
                                output["labels"].tolist(),
                                output["scores"].float().tolist(),
                                boxes.tolist(),
                                strict=True,
                            )
                        ],
                    )
                )
            yield predictions
