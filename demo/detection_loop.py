"""Detection rounds over the REST API: `make demo-detection-loop`.

Shapes in three groups: a labelled seed set, a held-out test set (labelled too) and an unlabelled pool whose boxes
only the oracle knows. Each round trains a detector on what is labelled, evaluates it on the test set (an
evaluation run: COCO mAP and every object's match stored), queries the test images where it missed an object,
then predicts the pool, picks the next batch by box uncertainty or at random (the same budget), reveals the
picked images' boxes through the label API and trains again. The mAP of every round is printed for both.

    python -m demo.detection_loop [--rounds 2] [--batch 20] [--epochs 12]
"""

import argparse
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from demo.detection import DetectionSettings, train_detector
from demo.loop import Platform, frozen_slice
from demo.shapes import CLASSES, write_coco, write_shapes

ARMS = ("box_least_confidence", "random")


@dataclass(frozen=True)
class DetectionLoopSettings:
    seed_images: int = 40
    pool_images: int = 80
    test_images: int = 40
    rounds: int = 2
    batch: int = 20  # images whose boxes are revealed per round
    sides: tuple[int, int] = (64, 96)
    # Smaller images than demo.detection's: the rounds train five detectors on the CPU.
    detector: DetectionSettings = field(default_factory=lambda: DetectionSettings(min_size=64))


@dataclass(frozen=True)
class LoopFiles:
    labelled: Path  # COCO: the seed and test images with their boxes
    pool: Path  # COCO: the pool's images, no boxes
    oracle: dict[str, list[dict]]  # the pool's boxes by external id, as the label API takes them


@dataclass
class DetectionLoopOutcome:
    # (arm, round, labelled images, test mAP, test mAP50, test images with a missed object); round 0 is shared.
    scores: list[tuple[str, int, int, float, float, int]] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{'strategy':<22} {'round':>5} {'labelled':>9} {'mAP':>7} {'mAP50':>7} {'images missed':>14}"]
        lines += [
            f"{arm:<22} {round_:>5} {labelled:>9} {map_:>7.3f} {map50:>7.3f} {missed:>14}"
            for arm, round_, labelled, map_, map50, missed in self.scores
        ]
        return "\n".join(lines)


def write_loop_files(folder: Path, settings: DetectionLoopSettings, *, seed: int = 0) -> LoopFiles:
    """The three groups' PNGs under folder/images (external ids images/seed-*, images/test-*, images/pool-*)."""
    groups = {
        name: write_shapes(folder, count, seed=seed + offset, prefix=name, sides=settings.sides)
        for offset, (name, count) in enumerate(
            (("seed", settings.seed_images), ("test", settings.test_images), ("pool", settings.pool_images))
        )
    }
    labelled, pool = folder / "labelled.json", folder / "pool.json"
    write_coco(labelled, groups["seed"] + groups["test"])
    write_coco(pool, [replace(image, boxes=()) for image in groups["pool"]])
    oracle = {
        image.file_name: [{"class": CLASSES[label], "box": [x, y, w, h]} for label, x, y, w, h in image.boxes]
        for image in groups["pool"]
    }
    return LoopFiles(labelled=labelled, pool=pool, oracle=oracle)


def run_detection_loop(
    platform: Platform,
    files: LoopFiles,
    settings: DetectionLoopSettings = DetectionLoopSettings(),
    *,
    project_name: str = "shapes detection loop",
) -> DetectionLoopOutcome:
    say = platform.say
    p = platform.call("POST", "projects/", json={"name": project_name})["id"]
    dataset = platform.call("POST", f"projects/{p}/datasets/", json={"name": "shapes"})["id"]
    for coco in (files.labelled, files.pool):
        job = platform.call(
            "POST",
            f"projects/{p}/datasets/{dataset}/imports",
            json={"uri": str(coco), "format": "coco", "create_classes": True},
        )
        platform.follow_job(job["id"], f"import {coco.name}")
    test = frozen_slice(platform, p, "test", "external_id LIKE 'images/test-%'")
    say(f"Seed {settings.seed_images} labelled images, pool {settings.pool_images}, test {test['member_count']}.")

    outcome = DetectionLoopOutcome()
    seed_score = seed_version = None
    for arm in ARMS:
        picked_tag = f"picked-{arm}"
        for round_ in range(settings.rounds + 1):
            if round_ == 0 and seed_version is not None:  # both strategies start from the same seed model
                version_id = seed_version
                outcome.scores.append((arm, 0, *seed_score))
            else:
                train = frozen_slice(
                    platform, p, f"{arm}-train-{round_}", f"external_id LIKE 'images/seed-%' OR tags = '{picked_tag}'"
                )
                platform.call(
                    "POST",
                    f"projects/{p}/slices/{train['id']}/split",
                    json={"seed": settings.detector.seed, "fractions": {"train": 0.85, "validation": 0.15}},
                )
                version_id = train_detector(platform, p, train, settings.detector, name=f"{arm}-{round_}")
                score = (train["member_count"], *_evaluate(platform, p, version_id, test))
                outcome.scores.append((arm, round_, *score))
                say(
                    f"{arm} round {round_}: {score[0]} labelled images -> test mAP {score[1]:.3f}, mAP50 {score[2]:.3f}"
                )
                if round_ == 0:
                    seed_score, seed_version = score, version_id
            if round_ == settings.rounds:
                break
            pool = frozen_slice(
                platform, p, f"{arm}-pool-{round_}", f"external_id LIKE 'images/pool-%' AND NOT tags = '{picked_tag}'"
            )
            run = _predict(platform, p, version_id, pool)
            picked = platform.call(
                "POST",
                f"projects/{p}/prediction-runs/{run['id']}/selections",
                json={
                    "name": f"{arm}-picked-{round_}",
                    "strategy": arm,
                    "k": settings.batch,
                    "seed": settings.detector.seed + round_,
                    "pool_slice_id": pool["id"],
                },
            )
            _reveal_boxes(platform, p, dataset, picked["id"], files.oracle, picked_tag)
            say(f"{arm} round {round_}: picked {picked['member_count']} images and revealed their boxes")
    return outcome


def _predict(platform: Platform, project_id: int, version_id: int, target: dict) -> dict:
    run = platform.call(
        "POST",
        f"projects/{project_id}/prediction-runs",
        json={"model_version_id": version_id, "slice_id": target["id"], "top_k": 100, "score_threshold": 0.01},
    )
    platform.follow_job(run["job"]["id"], f"predict {target['name']}")
    return platform.get_when(
        f"projects/{project_id}/prediction-runs/{run['id']}", lambda r: r["datarow_count"] == target["member_count"]
    )


def _evaluate(platform: Platform, project_id: int, version_id: int, test: dict) -> tuple[float, float, int]:
    """The test set's mAP and mAP50 from an evaluation run, and how many test images have a missed object (a query
    over the run's stored matches)."""
    _predict(platform, project_id, version_id, test)
    run = platform.call(
        "POST",
        f"projects/{project_id}/evaluation-runs",
        json={"model_version_id": version_id, "slice_id": test["id"], "iou_threshold": 0.5},
    )
    platform.follow_job(run["job"]["id"], "evaluate")
    metrics = platform.get_when(
        f"projects/{project_id}/evaluation-runs/{run['id']}", lambda r: r["status"] == "succeeded"
    )["metrics"]
    missed = platform.call(
        "POST",
        f"projects/{project_id}/search",
        json={"query": f"evaluation(run = {run['id']} AND outcome = 'fn')", "page_size": 1},
    )["total"]["value"]
    return metrics["map"], metrics["ap50"], missed


def _reveal_boxes(
    platform: Platform, project_id: int, dataset_id: int, slice_id: int, oracle: dict[str, list[dict]], tag: str
) -> None:
    """The annotator's part: draw each picked image's boxes from the oracle (unless the other strategy did), tag it."""
    members = platform.members(project_id, slice_id)
    for row in members:
        labels = f"projects/{project_id}/datasets/{dataset_id}/datarows/{row['id']}/labels"
        if not platform.call("GET", f"projects/{project_id}/datasets/{dataset_id}/datarows/{row['id']}")["labels"]:
            for box in oracle[row["external_id"]]:
                platform.call("POST", labels, json=box)
    platform.call(
        "POST",
        f"projects/{project_id}/datasets/{dataset_id}/datarows/tags",
        json={"datarow_ids": [row["id"] for row in members], "add": [tag]},
    )


def main() -> int:
    from demo.serving import serving_platform
    from devstack.__main__ import DEMO_TENANT, LOCAL_READ_ROOT

    parser = argparse.ArgumentParser(
        prog="python -m demo.detection_loop", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=DetectionLoopSettings.rounds)
    parser.add_argument("--batch", type=int, default=DetectionLoopSettings.batch)
    parser.add_argument("--epochs", type=int, default=DetectionSettings.epochs)
    args = parser.parse_args()
    settings = DetectionLoopSettings(
        rounds=args.rounds, batch=args.batch, detector=DetectionSettings(min_size=64, epochs=args.epochs)
    )
    # The images go in the demo tenant's folder of the local read root, the only one its imports may read.
    files = write_loop_files(LOCAL_READ_ROOT / DEMO_TENANT / "demo-shapes-loop", settings)
    started = time.monotonic()
    with serving_platform() as platform:
        outcome = run_detection_loop(
            platform, files, settings, project_name=f"shapes detection loop {time.strftime('%Y-%m-%d %H:%M:%S')}"
        )
    print(f"\nCOCO mAP on the test set per round ({time.monotonic() - started:.0f} s in all):")
    print(outcome.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
