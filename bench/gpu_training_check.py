"""Does the GPU starve? ResNet-18 from random initialisation at 224 px, bf16, batch 256, side by side:

  (a) ceiling   the model's own speed, the batch already on the device (the trainer's step, nothing to load)
  (b) pil       the real trainer reading JPEGs through a PIL DataLoader with --workers processes
  (c) nvjpeg    JPEG bytes read by threads, decoded on the GPU by torchvision.io.decode_jpeg and resized there
                (only where torchvision imports beside this torch)
  (d) cache     the real trainer with config cache="decoded": the first (cold) epoch decodes with PIL and fills
                a memory-mapped uint8 file; warm epochs read that file, normalise and augment on the device
  (e) detectors the real detector trainers (FCOS and Faster R-CNN on a ResNet-18 FPN) on demo.shapes PNGs at
                --detector-size px, one epoch after a warm-up one: images/s beside the classifier's, no target

Target (issue 5): warm epochs of (d) at no less than half of (a), and its cold epoch no slower than (b).
Standalone apart from trainers (torch, numpy, Pillow), for a lent GPU machine with no network; try it
on the CPU first with small sizes:

    python bench/gpu_training_check.py                                  # on the GPU: 10,000 JPEGs 640x480
    python bench/gpu_training_check.py --device cpu --images 256 --batch 32
"""

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPO)  # not bench/: bench/training.py would shadow the training package
from bench.common import machine, print_table  # noqa: E402
from trainers.classifier_training import make_optimizer, train_step  # noqa: E402
from trainers.image_classifier import ImageClassifierTrainer  # noqa: E402
from trainers.images import DeviceImages  # noqa: E402
from trainers.interface import Example  # noqa: E402
from trainers.networks import build_network  # noqa: E402
from trainers.opener import open_uri  # noqa: E402
from trainers.registry import get_trainer  # noqa: E402

CLASSES = [f"class-{number}" for number in range(10)]


def _write_jpeg(arguments: tuple[Path, int, int, int]) -> None:
    path, width, height, seed = arguments
    rng = np.random.default_rng(seed)
    # Smooth colour fields with a little grain: about the bytes per pixel of a photo, not of pure noise.
    coarse = Image.fromarray(rng.integers(0, 256, (height // 32, width // 32, 3), dtype=np.uint8))
    pixels = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    pixels = np.clip(pixels + rng.integers(-12, 13, pixels.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def write_synthetic_jpegs(folder: Path, count: int, width: int, height: int) -> list[Example]:
    """`count` JPEGs of width x height in `folder` (made in parallel; kept if already there), as Examples
    with classes drawn at random."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{number:07d}.jpg" for number in range(count)]
    missing = [(path, width, height, number) for number, path in enumerate(paths) if not path.exists()]
    if missing:
        with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
            list(pool.map(_write_jpeg, missing, chunksize=64))
    targets = np.random.default_rng(0).integers(0, len(CLASSES), count)
    return [
        Example(key=number, uri=str(path), target=int(target))
        for number, (path, target) in enumerate(zip(paths, targets, strict=True))
    ]


def measure_ceiling(device: torch.device, batch: int, size: int, steps: int) -> float:
    """(a) images/s of the trainer's own step on one batch that already sits on the device."""
    network = build_network("resnet18", len(CLASSES)).to(device, memory_format=torch.channels_last)
    optimizer, schedule = make_optimizer(network, {"learning_rate": 1e-3, "weight_decay": 1e-4}, steps * 4)
    to_input = DeviceImages(device, augment_seed=0)
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, device=device)
    targets = torch.randint(0, len(CLASSES), (batch,), device=device)
    for _ in range(max(3, steps // 5)):  # warm-up: cuDNN autotuning, allocator
        train_step(network, optimizer, schedule, to_input, images, targets, augment=True)
    started = time.perf_counter()
    for _ in range(steps):
        train_step(network, optimizer, schedule, to_input, images, targets, augment=True)
    return batch * steps / (time.perf_counter() - started)


def run_trainer(examples: list[Example], config: dict, output_dir: Path) -> list[float]:
    """(b) and (d): the real trainer; images/s of each epoch's training."""
    result = ImageClassifierTrainer().train(
        train=examples,
        validation=[],
        classes=CLASSES,
        config=config,
        opener=open_uri,
        output_dir=output_dir,
        on_step=lambda progress: None,
        on_epoch=lambda metrics: print(f"  {metrics}", file=sys.stderr),
        log=lambda message: print(f"  {message}", file=sys.stderr),
    )
    return [epoch.images_per_second for epoch in result.epochs]


def measure_gpu_decode(examples: list[Example], device: torch.device, batch: int, size: int) -> float | str:
    """(c) one epoch with JPEGs decoded by nvJPEG on the GPU; a reason instead when that is not possible."""
    try:
        from torchvision.io import decode_jpeg  # optional: PyPI's torchvision does not import beside every torch
    except Exception as error:  # noqa: BLE001 - a broken torchvision raises more than ImportError
        return f"not measured: torchvision does not import here ({type(error).__name__}: {str(error)[:60]})"
    if device.type != "cuda":
        return "not measured: needs CUDA"
    network = build_network("resnet18", len(CLASSES)).to(device, memory_format=torch.channels_last)
    steps = len(examples) // batch
    optimizer, schedule = make_optimizer(network, {"learning_rate": 1e-3, "weight_decay": 1e-4}, steps)
    to_input = DeviceImages(device, augment_seed=0)

    def read(example: Example) -> torch.Tensor:
        with open_uri(example.uri) as stream:
            return torch.frombuffer(bytearray(stream.read()), dtype=torch.uint8)

    order = torch.randperm(len(examples)).tolist()
    batches = [[examples[i] for i in order[start : start + batch]] for start in range(0, steps * batch, batch)]
    with ThreadPoolExecutor(max_workers=16) as readers:
        pending = [readers.map(read, batches[0])]
        started = time.perf_counter()
        for number, members in enumerate(batches):
            if number + 1 < len(batches):
                pending.append(readers.map(read, batches[number + 1]))
            encoded = list(pending.pop(0))
            decoded = torch.stack(decode_jpeg(encoded, device=device))  # all sources share one size
            resized = F.interpolate(decoded.float(), size=(size, size), mode="bilinear", antialias=True)
            images = resized.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
            targets = torch.tensor([example.target for example in members])
            train_step(network, optimizer, schedule, to_input, images, targets, augment=True)
        return steps * batch / (time.perf_counter() - started)


def measure_detectors(folder: Path, device: torch.device, count: int, size: int, batch: int) -> list[tuple[str, float]]:
    """(e) images/s of each detector's second epoch (the first warms up) through its real trainer."""
    from demo.shapes import CLASSES, write_shapes

    shapes = write_shapes(folder / "shapes", count, seed=0, sides=(size // 2, size))
    examples = [
        Example(key=number, uri=str(folder / "shapes" / image.file_name), target=-1, boxes=image.boxes)
        for number, image in enumerate(shapes)
    ]
    measured = []
    for name in ("detector-fcos", "detector-faster-rcnn"):
        trainer = get_trainer(name)
        config = trainer.validate_config(
            {"min_size": size, "max_size": size * 2, "epochs": 2, "batch_size": batch, "device": device.type}
        )
        result = trainer.train(
            train=examples,
            validation=[],
            classes=list(CLASSES),
            config=config,
            opener=open_uri,
            output_dir=folder / f"run-{name}",
            on_step=lambda progress: None,
            on_epoch=lambda metrics: print(f"  {metrics}", file=sys.stderr),
            log=lambda message: print(f"  {message}", file=sys.stderr),
        )
        measured.append((name, result.epochs[-1].images_per_second))
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--source", default="640x480", help="the JPEGs' width x height")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2), help="PIL DataLoader workers")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of (d): one cold, the rest warm")
    parser.add_argument("--ceiling-steps", type=int, help="timed steps of (a) (default: 30 on CUDA, 3 on the CPU)")
    parser.add_argument("--detector-images", type=int, help="shapes for (e) (default: 2,048 on CUDA, 32 on the CPU)")
    parser.add_argument("--detector-size", type=int, default=512, help="(e): the detectors' shorter side")
    parser.add_argument("--detector-batch", type=int, default=16)
    parser.add_argument("--folder", type=Path, help="where the JPEGs and the cache go (default: a temporary folder)")
    arguments = parser.parse_args()
    device = torch.device(arguments.device)
    ceiling_steps = arguments.ceiling_steps or (30 if device.type == "cuda" else 3)
    width, height = map(int, arguments.source.split("x"))
    shm = os.statvfs("/dev/shm") if os.path.exists("/dev/shm") else None
    if shm and shm.f_bsize * shm.f_blocks < 4 * 2**30:
        print(
            f"warning: /dev/shm holds {shm.f_bsize * shm.f_blocks / 2**30:.1f} GiB; DataLoader workers pass "
            "batches through it",
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as temporary:
        folder = arguments.folder or Path(temporary)
        started = time.perf_counter()
        examples = write_synthetic_jpegs(folder / "jpegs", arguments.images, width, height)
        print(f"{len(examples)} JPEGs {width}x{height} ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        config = {
            "architecture": "resnet18",
            "image_size": arguments.size,
            "batch_size": arguments.batch,
            "device": arguments.device,
            "num_workers": arguments.workers,
            "augment": True,
        }

        ceiling = measure_ceiling(device, arguments.batch, arguments.size, ceiling_steps)
        print(f"(a) ceiling {ceiling:.0f} images/s", file=sys.stderr)
        pil = run_trainer(examples, {**config, "epochs": 1}, folder / "run-pil")[0]
        print(f"(b) PIL DataLoader {pil:.0f} images/s", file=sys.stderr)
        try:  # the one path that cannot be tried on the CPU beforehand must not cost the others their run
            gpu_decode = measure_gpu_decode(examples, device, arguments.batch, arguments.size)
        except Exception as error:  # noqa: BLE001
            gpu_decode = f"failed: {type(error).__name__}: {str(error)[:80]}"
        print(f"(c) GPU decode {gpu_decode}", file=sys.stderr)
        cached = run_trainer(
            examples,
            {**config, "epochs": arguments.epochs, "cache": "decoded", "cache_dir": str(folder / "cache")},
            folder / "run-cache",
        )
        try:  # a detector failing here must not cost the classifier's figures
            detectors = measure_detectors(
                folder,
                device,
                arguments.detector_images or (2048 if device.type == "cuda" else 32),
                arguments.detector_size,
                arguments.detector_batch,
            )
        except Exception as error:  # noqa: BLE001
            detectors = [("detectors", f"failed: {type(error).__name__}: {str(error)[:80]}")]

    def row(name: str, images_per_second: float | str) -> list[str]:
        if isinstance(images_per_second, str):
            return [name, images_per_second, "-"]
        decimals = 0 if images_per_second >= 100 else 1
        return [name, f"{images_per_second:,.{decimals}f}", f"{images_per_second / ceiling:.2f}"]

    rows = [
        row("(a) ceiling: batch on the device", ceiling),
        row(f"(b) PIL DataLoader, {arguments.workers} workers", pil),
        row("(c) GPU decode (nvJPEG)", gpu_decode),
        row("(d) decoded cache: cold epoch 1", cached[0]),
    ]
    rows += [row(f"(d) decoded cache: warm epoch {number}", value) for number, value in enumerate(cached[1:], start=2)]
    rows += [
        [
            f"(e) {name}, {arguments.detector_size} px, batch {arguments.detector_batch}",
            value if isinstance(value, str) else f"{value:,.1f}",
            "-",
        ]
        for name, value in detectors
    ]
    warm = min(cached[1:]) if len(cached) > 1 else float("nan")
    gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    precision = "bf16 autocast" if device.type == "cuda" else "float32"
    print_table(
        f"ResNet-18, {arguments.size} px, {precision}, batch {arguments.batch}, {len(examples)} JPEGs "
        f"{width}x{height}; {gpu_name}; torch {torch.__version__}; {machine()}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        ["pipeline", "images/s", "of ceiling"],
        rows,
    )
    print(
        f"\nwarm epochs >= half the ceiling: {'yes' if warm >= ceiling / 2 else 'NO'} ({warm / ceiling:.2f}); "
        f"cold epoch no slower than the PIL DataLoader: {'yes' if cached[0] >= pil else 'NO'} ({cached[0] / pil:.2f}x)"
    )


if __name__ == "__main__":
    main()
