"""Realistic synthetic datasets at any size, as an import manifest (JSONL) and as COCO.

    python bench/generate.py --rows 1000000 --out bench/out/1m

COCO-like classes with a long tail (Zipf), 0-12 objects per image, tags, a nested metadata tree (camera,
weather, city, capture time, GPS), a free-text caption, and predictions from three model versions whose
boxes jitter and whose classes are sometimes wrong. Deterministic for a seed.
"""

import argparse
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

# COCO's 80 classes under a few parents, so hierarchy queries (`under 'vehicle'`) have something to do.
CLASSES = (
    ["person"]
    + [f"vehicle/{c}" for c in ("car", "truck", "bus", "motorcycle", "bicycle", "train", "boat", "airplane")]
    + [f"animal/{c}" for c in ("dog", "cat", "bird", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")]
    + [f"outdoor/{c}" for c in ("traffic light", "fire hydrant", "stop sign", "parking meter", "bench")]
    + [
        f"object/{c}"
        for c in (
            "backpack",
            "umbrella",
            "handbag",
            "tie",
            "suitcase",
            "frisbee",
            "skis",
            "snowboard",
            "sports ball",
            "kite",
            "baseball bat",
            "skateboard",
            "surfboard",
            "tennis racket",
            "bottle",
            "wine glass",
            "cup",
            "fork",
            "knife",
            "spoon",
            "bowl",
            "banana",
            "apple",
            "sandwich",
            "orange",
            "broccoli",
            "carrot",
            "hot dog",
            "pizza",
            "donut",
            "cake",
            "chair",
            "couch",
            "potted plant",
            "bed",
            "dining table",
            "toilet",
            "tv",
            "laptop",
            "mouse",
            "remote",
            "keyboard",
            "cell phone",
            "microwave",
            "oven",
            "toaster",
            "sink",
            "refrigerator",
            "book",
            "clock",
            "vase",
            "scissors",
            "teddy bear",
            "hair drier",
            "toothbrush",
        )
    ]
)
CLASS_WEIGHTS = [1 / (rank + 1) ** 1.1 for rank in range(len(CLASSES))]
TAGS = [
    "night",
    "day",
    "dusk",
    "urban",
    "rural",
    "highway",
    "indoor",
    "blurry",
    "occluded",
    "crowded",
    "rainy",
    "reviewed",
    "needs-review",
    "hard",
    "easy",
    "train-candidate",
    "edge-case",
    "golden",
    "low-light",
    "glare",
]
WEATHER = ["sunny", "cloudy", "rain", "fog", "snow", "storm"]
CITIES = [
    "Berlin",
    "Paris",
    "Tokyo",
    "New York",
    "Lagos",
    "Sao Paulo",
    "Mumbai",
    "Sydney",
    "Toronto",
    "Madrid",
    "Seoul",
    "Cairo",
    "Lima",
    "Oslo",
    "Austin",
    "Nairobi",
    "Hanoi",
    "Dublin",
    "Zurich",
    "Denver",
]
CAMERAS = [("Canon", "EOS R5"), ("Sony", "A7 IV"), ("Nikon", "Z6"), ("GoPro", "Hero 11"), ("Axis", "P1465")]
WORDS = [
    "a",
    "the",
    "red",
    "blue",
    "small",
    "large",
    "car",
    "person",
    "dog",
    "street",
    "road",
    "near",
    "under",
    "over",
    "next",
    "to",
    "parked",
    "walking",
    "crossing",
    "traffic",
    "light",
    "building",
    "tree",
    "sky",
    "night",
    "rain",
    "wet",
    "shiny",
    "crowded",
    "empty",
    "busy",
    "quiet",
    "city",
    "park",
    "bridge",
    "river",
]
MODELS = [("yolo", "8.1"), ("detr", "2.0"), ("rtdetr", "1.3")]
START = datetime(2023, 1, 1, tzinfo=UTC)


def _box(rng: random.Random, width: int, height: int) -> list[float]:
    w = rng.uniform(8, width / 3)
    h = rng.uniform(8, height / 3)
    return [round(rng.uniform(0, width - w), 1), round(rng.uniform(0, height - h), 1), round(w, 1), round(h, 1)]


def _jitter(rng: random.Random, box: list[float], width: int, height: int) -> list[float]:
    x, y, w, h = box
    nx, ny = max(0.0, x + rng.uniform(-4, 4)), max(0.0, y + rng.uniform(-4, 4))
    nw, nh = min(width - nx, max(2.0, w + rng.uniform(-6, 6))), min(height - ny, max(2.0, h + rng.uniform(-6, 6)))
    return [round(nx, 1), round(ny, 1), round(nw, 1), round(nh, 1)]


def datarow(rng: random.Random, index: int, prediction_fraction: float = 0.2) -> dict:
    width, height = 640, 480
    make, model = rng.choice(CAMERAS)
    n_objects = min(12, int(rng.expovariate(1 / 4.7)))  # about 4 objects an image on average
    classes = rng.choices(CLASSES, weights=CLASS_WEIGHTS, k=n_objects)
    labels = [
        {
            "class": cls,
            "box": _box(rng, width, height),
            "attributes": {"occluded": rng.random() < 0.2, "truncated": rng.random() < 0.1},
        }
        for cls in classes
    ]
    predictions = []
    # Models run on part of the data (a pool), as in a real loop; every model version on the same part.
    for name, version in MODELS if rng.random() < prediction_fraction else ():
        for label in labels:
            if rng.random() < 0.85:
                wrong = rng.random() < 0.1
                predictions.append(
                    {
                        "model": name,
                        "version": version,
                        "class": rng.choices(CLASSES, weights=CLASS_WEIGHTS)[0] if wrong else label["class"],
                        "score": round(rng.uniform(0.05, 0.6) if wrong else rng.uniform(0.4, 0.99), 3),
                        "box": _jitter(rng, label["box"], width, height),
                    }
                )
    return {
        "external_id": f"img-{index:09d}",
        "uri": f"s3://cv-bench/images/{index % 1000:03d}/{index:09d}.jpg",
        "width": width,
        "height": height,
        "tags": rng.sample(TAGS, k=rng.randint(0, 4)),
        "metadata": {
            "camera": {
                "make": make,
                "model": model,
                "iso": rng.choice([100, 200, 400, 800, 1600, 3200]),
                "exposure_ms": round(rng.uniform(0.5, 40), 2),
            },
            "weather": rng.choice(WEATHER),
            "city": rng.choice(CITIES),
            "capture": {
                "time": (START + timedelta(seconds=rng.randint(0, 3 * 365 * 86400))).isoformat(),
                "gps": {"lat": round(rng.uniform(-60, 70), 5), "lon": round(rng.uniform(-180, 180), 5)},
            },
            "caption": " ".join(rng.choices(WORDS, k=rng.randint(5, 14))),
        },
        "labels": labels,
        "predictions": predictions,
    }


def write_jsonl(path: Path, rows: int, seed: int, offset: int = 0, prediction_fraction: float = 0.2) -> None:
    rng = random.Random(seed)
    with open(path, "wb") as out:
        for index in range(offset, offset + rows):
            out.write(orjson.dumps(datarow(rng, index, prediction_fraction)) + b"\n")


def write_coco(path: Path, rows: int, seed: int, offset: int = 0) -> None:
    """The same kind of data as COCO detection JSON, written piecewise (never held whole in memory)."""
    rng = random.Random(seed)
    category_ids = {name: i + 1 for i, name in enumerate(CLASSES)}
    annotation_id = 0
    with open(path, "wb") as out, open(path.with_suffix(".annotations.part"), "w+b") as annotations:
        out.write(b'{"info": {"description": "mlops bench"}, "images": [')
        for n, index in enumerate(range(offset, offset + rows)):
            row = datarow(rng, index)
            image_id = index + 1
            out.write(
                (b"," if n else b"")
                + orjson.dumps(
                    {
                        "id": image_id,
                        "file_name": row["uri"].rsplit("/", 2)[-2] + "/" + row["uri"].rsplit("/", 1)[-1],
                        "width": row["width"],
                        "height": row["height"],
                    }
                )
            )
            for label in row["labels"]:
                annotation_id += 1
                x, y, w, h = label["box"]
                annotations.write(
                    (b"," if annotation_id > 1 else b"")
                    + orjson.dumps(
                        {
                            "id": annotation_id,
                            "image_id": image_id,
                            "category_id": category_ids[label["class"]],
                            "bbox": label["box"],
                            "area": round(w * h, 2),
                            "iscrowd": 0,
                        }
                    )
                )
        out.write(b'], "annotations": [')
        annotations.seek(0)
        while chunk := annotations.read(1 << 20):
            out.write(chunk)
        out.write(b'], "categories": ')
        out.write(
            orjson.dumps(
                [
                    {"id": i, "name": name.rsplit("/", 1)[-1], "supercategory": name.split("/")[0]}
                    for name, i in category_ids.items()
                ]
            )
        )
        out.write(b"}")
    path.with_suffix(".annotations.part").unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for manifest.jsonl and coco.json")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--offset", type=int, default=0, help="first image index (to make a disjoint second set)")
    parser.add_argument(
        "--prediction-fraction",
        type=float,
        default=0.2,
        help="share of images that carry predictions of every model version",
    )
    parser.add_argument("--coco", action="store_true", help="also write coco.json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out / "manifest.jsonl", args.rows, args.seed, args.offset, args.prediction_fraction)
    if args.coco:
        write_coco(args.out / "coco.json", args.rows, args.seed, args.offset)


if __name__ == "__main__":
    main()
