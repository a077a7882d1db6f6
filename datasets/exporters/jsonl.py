"""JSONL in the manifest shape that imports read (datasets/importers/records.py), so an export imports back
as it was: one datarow per line with its labels and predictions."""

from collections.abc import Iterable, Iterator
from typing import BinaryIO

import orjson

from datasets.exporters.batches import Category, ExportBatch, ExportCounters
from datasets.models import AnnotationKind


def _geometry(item: dict) -> dict:
    """A polygon alone (imports derive its box); a box; nothing for a classification."""
    if item["kind"] == AnnotationKind.POLYGON:
        return {"polygon": item["polygon"]}
    if item["kind"] == AnnotationKind.BOX:
        return {"box": [item["x"], item["y"], item["w"], item["h"]]}
    return {}


def manifest_record(datarow: dict, labels: list[dict], predictions: list[dict]) -> dict:
    return {
        "external_id": datarow["external_id"],
        "uri": datarow["uri"],
        "media_type": datarow["media_type"],
        "width": datarow["width"],
        "height": datarow["height"],
        "metadata": datarow["metadata"],
        "tags": datarow["tags"],
        # Always present, even empty: re-importing the line replaces the datarow's labels and predictions.
        "labels": [
            {"class": label["ontology_class__name"], **_geometry(label), "attributes": label["attributes"]}
            for label in labels
        ],
        "predictions": [
            {
                "model": p["model_version__name"],
                "version": p["model_version__version"],
                "class": p["ontology_class__name"],
                "score": p["score"],
                **_geometry(p),
                "attributes": p["attributes"],
            }
            for p in predictions
        ],
    }


def write(
    out: BinaryIO, batches: Iterator[ExportBatch], categories: Iterable[Category], counters: ExportCounters
) -> None:
    for batch in batches:
        for datarow in batch.datarows:
            labels = batch.labels.get(datarow["id"], [])
            predictions = batch.predictions.get(datarow["id"], [])
            out.write(orjson.dumps(manifest_record(datarow, labels, predictions)) + b"\n")
            counters.datarows += 1
            counters.labels += len(labels)
            counters.predictions += len(predictions)
