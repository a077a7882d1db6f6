"""Detection in the loop over the REST API: `make demo-detection`.

Write images of coloured shapes whose boxes are known (demo.shapes), import them as COCO (its categories become
the ontology's classes), freeze a slice and split it, train a small detector on the CPU with the progress
streamed from the job websocket, predict the slice, and score the held-out (test) split with COCO mAP; the same
for an untrained model (one epoch at a learning rate of 1e-9: its random initial weights), the baseline the
trained one must beat. Tests run the same at a small scale against their live server and workers.

    python -m demo.detection [--images 240] [--epochs 12] [--trainer detector-fcos]
"""

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from demo.loop import Platform, frozen_slice
from demo.shapes import write_coco, write_shapes

UNTRAINED_LEARNING_RATE = 1e-9


@dataclass(frozen=True)
class DetectionSettings:
    images: int = 240
    epochs: int = 12
    trainer: str = "detector-fcos"
    min_size: int = 96
    batch_size: int = 4  # more, smaller steps: a randomly initialised FCOS needs a few hundred to place boxes
    learning_rate: float = 1e-3
    seed: int = 7


@dataclass(frozen=True)
class DetectionOutcome:
    trained: dict  # the detection-metrics answer: map, map_50, map_75, per_class, images
    untrained: dict

    def table(self) -> str:
        lines = [f"{'model':<10} {'mAP':>7} {'mAP50':>7} {'mAP75':>7} {'test images':>12}"]
        lines += [
            f"{name:<10} {m['map']:>7.3f} {m['map_50']:>7.3f} {m['map_75']:>7.3f} {m['images']:>12}"
            for name, m in (("untrained", self.untrained), ("trained", self.trained))
        ]
        return "\n".join(lines)


def write_detection_files(folder: Path, count: int, *, seed: int = 0, sides: tuple[int, int] = (64, 128)) -> Path:
    """The shapes' PNGs and their COCO file in `folder`; returns the COCO file's path. Its file_names are relative
    (images/shape-00001.png), as COCO files come from labelling tools."""
    images = write_shapes(folder, count, seed=seed, sides=sides)
    coco = folder / "coco.json"
    write_coco(coco, images)
    return coco


def run_detection(
    platform: Platform,
    coco: Path,
    settings: DetectionSettings = DetectionSettings(),
    *,
    project_name: str = "shapes detection",
) -> DetectionOutcome:
    say = platform.say
    p = platform.call("POST", "projects/", json={"name": project_name})["id"]
    dataset = platform.call("POST", f"projects/{p}/datasets/", json={"name": "shapes"})
    say(f"Importing {coco} (COCO, its categories as the ontology's classes, its images under {coco.parent})...")
    # images_uri is the annotation file's folder, which is also the default: said here to show the option.
    job = platform.call(
        "POST",
        f"projects/{p}/datasets/{dataset['id']}/imports",
        json={
            "uri": str(coco),
            "format": "coco",
            "images_uri": str(coco.parent),
            "create_classes": True,
            "check_images": True,
        },
    )
    platform.follow_job(job["id"], "import")
    shapes = frozen_slice(platform, p, "shapes", f"dataset = {dataset['id']}")
    platform.call(
        "POST",
        f"projects/{p}/slices/{shapes['id']}/split",
        json={"seed": settings.seed, "fractions": {"train": 0.7, "validation": 0.1, "test": 0.2}},
    )
    say(f"Slice 'shapes': {shapes['member_count']} images split 70/10/20 into train, validation and test.")
    scores = {}
    for name, learning_rate, epochs in (
        ("untrained", UNTRAINED_LEARNING_RATE, 1),
        ("trained", settings.learning_rate, settings.epochs),
    ):
        version_id = train_detector(
            platform, p, shapes, settings, name=name, learning_rate=learning_rate, epochs=epochs
        )
        scores[name] = _test_map(platform, p, version_id, shapes)
        say(f"{name}: test mAP {scores[name]['map']:.3f}, mAP50 {scores[name]['map_50']:.3f}")
    return DetectionOutcome(**scores)


def train_detector(
    platform: Platform,
    project_id: int,
    train: dict,
    settings: DetectionSettings,
    *,
    name: str,
    learning_rate: float | None = None,
    epochs: int | None = None,
) -> int:
    """Train a detector on the slice's train split (validation on its validation split); its model version's id."""
    model = platform.call(
        "POST",
        f"projects/{project_id}/models",
        json={
            "name": f"shapes-{name}",
            "trainer": settings.trainer,
            "hyperparameters": {
                "min_size": settings.min_size,
                "max_size": settings.min_size * 2,
                "epochs": settings.epochs if epochs is None else epochs,
                "batch_size": settings.batch_size,
                "learning_rate": settings.learning_rate if learning_rate is None else learning_rate,
                "seed": settings.seed,
                "device": "cpu",
            },
        },
    )
    run = platform.call("POST", f"projects/{project_id}/models/{model['id']}/runs", json={"slice_id": train["id"]})
    platform.follow_job(run["job"]["id"], f"train {name}")
    return platform.get_when(
        f"projects/{project_id}/training-runs/{run['id']}", lambda r: r["model_version_id"] is not None
    )["model_version_id"]


def _test_map(platform: Platform, project_id: int, version_id: int, shapes: dict) -> dict:
    run = platform.call(
        "POST",
        f"projects/{project_id}/prediction-runs",
        json={"model_version_id": version_id, "slice_id": shapes["id"], "top_k": 100, "score_threshold": 0.01},
    )
    platform.follow_job(run["job"]["id"], "predict")
    platform.get_when(
        f"projects/{project_id}/prediction-runs/{run['id']}", lambda r: r["datarow_count"] == shapes["member_count"]
    )
    return platform.call(
        "GET",
        f"projects/{project_id}/model-versions/{version_id}/detection-metrics",
        params={"slice_id": shapes["id"], "splits": "test"},
    )


def main() -> int:
    from demo.serving import serving_platform
    from devstack.__main__ import DEMO_TENANT, LOCAL_READ_ROOT

    parser = argparse.ArgumentParser(
        prog="python -m demo.detection", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=DetectionSettings.images)
    parser.add_argument("--epochs", type=int, default=DetectionSettings.epochs)
    parser.add_argument(
        "--trainer", default=DetectionSettings.trainer, choices=("detector-fcos", "detector-faster-rcnn")
    )
    args = parser.parse_args()
    # The images go in the demo tenant's folder of the local read root, the only one its imports may read.
    coco = write_detection_files(LOCAL_READ_ROOT / DEMO_TENANT / "demo-shapes", args.images)
    started = time.monotonic()
    with serving_platform() as platform:
        outcome = run_detection(
            platform,
            coco,
            DetectionSettings(images=args.images, epochs=args.epochs, trainer=args.trainer),
            project_name=f"shapes detection {time.strftime('%Y-%m-%d %H:%M:%S')}",
        )
    print(f"\nCOCO mAP on the held-out test split ({time.monotonic() - started:.0f} s in all):")
    print(outcome.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
