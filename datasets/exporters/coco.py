"""COCO detection JSON: images, the ontology as categories, and box and polygon labels as annotations, in the
mapping COCO imports read (datasets/importers/coco.py): file_name is the external id, coco_url the URI.

COCO keeps images and annotations in two arrays, so annotations are spooled to a temporary file while the
images are written, and appended at the end: one pass over the datarows, flat memory. Classifications have
no place in COCO detection and predictions are no ground truth: both are left out.
"""

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import orjson
from django.conf import settings

from datasets.exporters.batches import Category, ExportBatch, ExportCounters
from datasets.models import AnnotationKind

_COPY_CHUNK = 1024 * 1024


def _image(datarow: dict) -> dict:
    return {
        "id": datarow["id"],
        "file_name": datarow["external_id"],
        "coco_url": datarow["uri"],
        "width": datarow["width"],
        "height": datarow["height"],
    }


def _annotation(datarow_id: int, label: dict) -> dict:
    polygon = label["polygon"] if label["kind"] == AnnotationKind.POLYGON else None
    # Attributes are the annotation's extra keys, as COCO imports read them; COCO's own keys come last and win.
    return {
        **label["attributes"],
        "iscrowd": label["attributes"].get("iscrowd", 0),
        "id": label["id"],
        "image_id": datarow_id,
        "category_id": label["ontology_class_id"],
        "bbox": [label["x"], label["y"], label["w"], label["h"]],
        "area": label["area"],
        "segmentation": [[coordinate for point in polygon for coordinate in point]] if polygon else [],
    }


def write(
    out: BinaryIO, batches: Iterator[ExportBatch], categories: Iterable[Category], counters: ExportCounters
) -> None:
    out.write(b'{"info":{"description":"mlops dataset export"},"categories":')
    out.write(orjson.dumps([{"id": c.id, "name": c.name, "supercategory": c.parent_name or ""} for c in categories]))
    out.write(b',"images":[')
    image_separator = annotation_separator = b""
    with tempfile.TemporaryFile(dir=settings.STORAGE_ROOT) as annotations:
        for batch in batches:
            for datarow in batch.datarows:
                out.write(image_separator + orjson.dumps(_image(datarow)))
                image_separator = b","
                counters.datarows += 1
                for label in batch.labels.get(datarow["id"], []):
                    if label["kind"] == AnnotationKind.CLASSIFICATION:
                        continue
                    annotations.write(annotation_separator + orjson.dumps(_annotation(datarow["id"], label)))
                    annotation_separator = b","
                    counters.labels += 1
        out.write(b'],"annotations":[')
        annotations.seek(0)
        shutil.copyfileobj(annotations, out, _COPY_CHUNK)
    out.write(b"]}")
