"""Synthetic detection images whose boxes are known: coloured shapes on textured backgrounds, 64 to 128 px by default.

Each image holds one to three objects (a square, a disc or a triangle, each in its own hue family, of 16 to
40 px) on a background of random stripes and speckle, so a detector must find edges rather than a colour mean.
Written as PNG files with a COCO file whose `file_name`s are relative to the COCO file's folder.
"""

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

CLASSES = ("square", "disc", "triangle")
HUES = {"square": (210, 50, 40), "disc": (40, 190, 60), "triangle": (50, 80, 220)}


@dataclass(frozen=True)
class ShapeImage:
    file_name: str
    width: int
    height: int
    boxes: tuple[tuple[int, float, float, float, float], ...]  # (class index, x, y, w, h)


def _background(noise: random.Random, width: int, height: int) -> Image.Image:
    base = tuple(noise.randint(90, 170) for _ in range(3))
    image = Image.new("RGB", (width, height), base)
    draw = ImageDraw.Draw(image)
    for _ in range(noise.randint(3, 8)):  # stripes at random angles
        shade = tuple(max(0, min(255, channel + noise.randint(-50, 50))) for channel in base)
        x0, y0 = noise.randint(-width, width), noise.randint(-height, height)
        draw.line(
            (x0, y0, x0 + noise.randint(-2, 2) * width, y0 + noise.randint(-2, 2) * height),
            fill=shade,
            width=noise.randint(2, 6),
        )
    pixels = image.load()
    for _ in range(width * height // 6):  # speckle
        x, y = noise.randrange(width), noise.randrange(height)
        pixels[x, y] = tuple(max(0, min(255, channel + noise.randint(-60, 60))) for channel in pixels[x, y])
    return image


def _overlaps(box: tuple, others: list[tuple]) -> bool:
    x, y, w, h = box
    return any(x < ox + ow and ox < x + w and y < oy + oh and oy < y + h for ox, oy, ow, oh in others)


def draw_image(noise: random.Random, *, sides: tuple[int, int] = (64, 128)) -> tuple[Image.Image, tuple]:
    width, height = noise.randint(*sides), noise.randint(*sides)
    image = _background(noise, width, height)
    draw = ImageDraw.Draw(image)
    boxes, placed = [], []
    for _ in range(noise.randint(1, 3)):
        size = noise.randint(16, min(40, width - 4, height - 4))
        for _attempt in range(20):
            x, y = noise.randint(2, width - size - 2), noise.randint(2, height - size - 2)
            if not _overlaps((x, y, size, size), placed):
                break
        else:
            continue
        label = noise.randrange(len(CLASSES))
        colour = tuple(max(0, min(255, channel + noise.randint(-30, 30))) for channel in HUES[CLASSES[label]])
        corners = (x, y, x + size - 1, y + size - 1)
        if CLASSES[label] == "square":
            draw.rectangle(corners, fill=colour)
        elif CLASSES[label] == "disc":
            draw.ellipse(corners, fill=colour)
        else:
            draw.polygon([(x + size / 2, y), (x, y + size - 1), (x + size - 1, y + size - 1)], fill=colour)
        placed.append((x, y, size, size))
        boxes.append((label, float(x), float(y), float(size), float(size)))
    return image, tuple(boxes)


def write_shapes(
    folder: Path, count: int, *, seed: int = 0, prefix: str = "shape", sides: tuple[int, int] = (64, 128)
) -> list[ShapeImage]:
    """`count` PNG files in folder/images, each side drawn from `sides` (pixels); their boxes are returned."""
    noise = random.Random(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    written = []
    for number in range(count):
        image, boxes = draw_image(noise, sides=sides)
        file_name = f"images/{prefix}-{number:05d}.png"
        image.save(folder / file_name)
        written.append(ShapeImage(file_name, image.width, image.height, boxes))
    return written


def write_coco(path: Path, images: list[ShapeImage]) -> None:
    """A COCO file of the images and their boxes, each file_name relative to the folder the images were written to."""
    coco = {
        "images": [],
        "annotations": [],
        "categories": [{"id": index + 1, "name": name} for index, name in enumerate(CLASSES)],
    }
    for image_id, image in enumerate(images, start=1):
        coco["images"].append(
            {"id": image_id, "file_name": image.file_name, "width": image.width, "height": image.height}
        )
        for label, x, y, w, h in image.boxes:
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": label + 1,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    path.write_text(json.dumps(coco))
