"""Training throughput of the built-in image classifier (the real trainer, no Django) on synthetic JPEGs.

    .venv/bin/python bench/training.py                        # CPU: small-cnn and resnet18 at 64 and 128 px
    .venv/bin/python bench/training.py --device cuda --images 5000 --batch 256 --sizes 224

Each configuration trains two epochs with config cache="decoded": epoch 1 decodes every JPEG with PIL in
the DataLoader (and fills the cache), epoch 2 reads the decoded uint8 cache. images/s counts training steps
only (no validation). For the GPU-starvation check at 224 px see bench/gpu_training_check.py.
"""

import argparse
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPO)  # not bench/: this file's name would shadow the training package
from bench.common import machine, print_table  # noqa: E402
from bench.gpu_training_check import CLASSES, write_synthetic_jpegs  # noqa: E402
from trainers.image_classifier import ImageClassifierTrainer  # noqa: E402
from trainers.opener import open_uri  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--source", default="640x480", help="the JPEGs' width x height")
    parser.add_argument("--architectures", nargs="+", default=["small-cnn", "resnet18"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader decoding processes")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, one per core)")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    width, height = map(int, arguments.source.split("x"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-training-") as temporary:
        examples = write_synthetic_jpegs(Path(temporary, "jpegs"), arguments.images, width, height)
        for architecture in arguments.architectures:
            for size in arguments.sizes:
                run = f"{architecture} {size}px"
                config = {
                    "architecture": architecture,
                    "image_size": size,
                    "batch_size": arguments.batch,
                    "epochs": 2,
                    "device": arguments.device,
                    "num_workers": arguments.workers,
                    "augment": True,
                    "cache": "decoded",
                }
                result = ImageClassifierTrainer().train(
                    train=examples,
                    validation=[],
                    classes=CLASSES,
                    config=config,
                    opener=open_uri,
                    output_dir=Path(temporary, f"{architecture}-{size}"),
                    on_step=lambda progress: None,
                    on_epoch=lambda metrics, run=run: print(f"  {run} {metrics}", file=sys.stderr),
                    log=lambda message: None,
                )
                cold, warm = (epoch.images_per_second for epoch in result.epochs)
                rows.append([architecture, size, arguments.batch, arguments.workers, f"{cold:,.1f}", f"{warm:,.1f}"])
    print_table(
        f"Training throughput, {arguments.images} JPEGs {width}x{height}, device {arguments.device}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); {machine()}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        ["architecture", "px", "batch", "workers", "epoch 1 images/s (PIL decode)", "epoch 2 images/s (decoded cache)"],
        rows,
    )


if __name__ == "__main__":
    main()
