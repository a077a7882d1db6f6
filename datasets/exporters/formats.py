"""Export formats: `write(out, batches, categories, counters)` writes the batches to the binary stream `out`
as they arrive and adds what it wrote to `counters`; `categories` are the project's ontology classes."""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from datasets.exporters import coco, jsonl
from datasets.exporters.batches import Category, ExportBatch, ExportCounters
from mlops.storage import tenant_path

Writer = Callable[[BinaryIO, Iterator[ExportBatch], Iterable[Category], ExportCounters], None]


@dataclass(frozen=True)
class ExportFormat:
    write: Writer
    extension: str
    content_type: str


EXPORT_FORMATS: dict[str, ExportFormat] = {
    "jsonl": ExportFormat(jsonl.write, "jsonl", "application/x-ndjson"),
    "coco": ExportFormat(coco.write, "coco.json", "application/json"),
}


def export_path(*, job_id, export_format: str, create: bool = True) -> Path:
    """Where the file of the export job `job_id` lives in the tenant's storage (create=False: only to read it)."""
    return tenant_path("exports", f"{job_id}.{EXPORT_FORMATS[export_format].extension}", create=create)
