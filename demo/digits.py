"""The handwritten digits scikit-learn ships, written out as PNG files and an import manifest for the demo loop.

Every image is a datarow; only a labelled seed set and a fixed held-out set carry their classification label
in the manifest (tagged `seed` and `holdout`). The other rows, tagged `pool`, are unlabelled: their true classes go
to an oracle file, which the demo reads to "reveal" the labels of the rows a strategy picks, as an annotator would.
"""

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from PIL import Image
from sklearn.datasets import load_digits

# The 8x8 originals, scaled up so the images look like images and the CNN has room for a couple of poolings.
IMAGE_SIZE = 32


@dataclass(frozen=True)
class DigitsFiles:
    manifest: Path
    oracle: Path  # {external_id: class name} for every image, the pool's included
    rows: int
    seed_rows: int
    holdout_rows: int


def class_name(digit: int) -> str:
    return f"digit/{digit}"


def write_digits(
    out: Path, *, limit: int | None = None, seed_per_class: int = 5, holdout_fraction: float = 0.25, seed: int = 0
) -> DigitsFiles:
    """Write `limit` digits (all 1,797 by default) under `out`: PNGs in images/, manifest.jsonl, oracle.json."""
    digits = load_digits()
    order = list(range(len(digits.images)))
    random.Random(seed).shuffle(order)
    order = order[:limit] if limit else order
    holdout = set(order[: int(len(order) * holdout_fraction)])
    seeded: set[int] = set()
    per_class: dict[int, int] = {}
    for index in order:
        digit = int(digits.target[index])
        if index not in holdout and per_class.get(digit, 0) < seed_per_class:
            seeded.add(index)
            per_class[digit] = per_class.get(digit, 0) + 1

    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    oracle: dict[str, str] = {}
    with (out / "manifest.jsonl").open("wb") as manifest:
        for index in order:
            external_id = f"digit-{index:04d}"
            path = images / f"{external_id}.png"
            # The originals hold 0..16 ink levels; white background, dark ink, as a scan would look.
            pixels = (255 - digits.images[index] * (255 / 16)).astype(np.uint8)
            Image.fromarray(pixels).resize((IMAGE_SIZE, IMAGE_SIZE), Image.NEAREST).save(path)
            label = class_name(int(digits.target[index]))
            oracle[external_id] = label
            record = {
                "external_id": external_id,
                "uri": str(path.resolve()),
                "width": IMAGE_SIZE,
                "height": IMAGE_SIZE,
                "metadata": {"source": "sklearn-digits", "index": index},
                "tags": ["pool"],
            }
            if index in holdout or index in seeded:
                record["tags"] = ["holdout" if index in holdout else "seed"]
                record["labels"] = [{"class": label}]
            manifest.write(orjson.dumps(record) + b"\n")
    (out / "oracle.json").write_bytes(orjson.dumps(oracle))
    return DigitsFiles(
        manifest=out / "manifest.jsonl",
        oracle=out / "oracle.json",
        rows=len(order),
        seed_rows=len(seeded),
        holdout_rows=len(holdout),
    )
