"""Import formats. Each one turns a source into batches of validated records:

    format(uri, writer, batch_lines, options) -> Iterator[BatchBuffers]

(`options`: the FormatOptions some formats read, such as where a COCO file's images are.)

Formats never touch the database while they parse: the import service stages each batch (COPY of its
buffers, or its `stage_sql` for formats that join their parts in SQL, like COCO) on the import connection
in a second thread, so parsing the next batch overlaps the SQL of this one.
"""

from collections.abc import Callable, Iterator
from typing import BinaryIO

from datasets.importers import coco, image_folder, yolo
from datasets.importers.records import BatchBuffers, FormatOptions, LineError, RecordWriter
from datasets.importers.sources import csv_records, jsonl_records
from mlops.storage import open_uri

Format = Callable[[str, RecordWriter, int, FormatOptions], Iterator[BatchBuffers]]
Records = Callable[[str, FormatOptions], Iterator[tuple[int, object]]]


def record_format(records: Records) -> Format:
    """A format whose source, given the URI and options, yields `(line_no, record | LineError)`, batched by line
    count."""

    def batches(uri: str, writer: RecordWriter, batch_lines: int, options: FormatOptions) -> Iterator[BatchBuffers]:
        batch = BatchBuffers()
        for line_no, record in records(uri, options):
            if isinstance(record, LineError):
                batch.errors.append(record)
            else:
                writer.add(batch, line_no, record)
            if batch.size >= batch_lines:
                yield batch
                batch = BatchBuffers()
        if batch.size or batch.errors:
            yield batch

    return batches


def line_format(records: Callable[[BinaryIO], Iterator[tuple[int, object]]]) -> Format:
    """A record format over one file read as a stream (JSONL, CSV)."""

    def file_records(uri: str, options: FormatOptions) -> Iterator[tuple[int, object]]:
        with open_uri(uri) as stream:
            yield from records(stream)

    return record_format(file_records)


FORMATS: dict[str, Format] = {
    "jsonl": line_format(jsonl_records),
    "csv": line_format(csv_records),
    "coco": coco.coco_batches,
    "coco_results": coco.coco_results_batches,
    "yolo": record_format(lambda uri, options: yolo.yolo_records(uri, images_uri=options.images_uri)),
    "images": record_format(lambda uri, options: image_folder.image_folder_records(uri)),
}
# Formats whose predictions carry no model of their own: the import's model_name/model_version are required.
FORMATS_NEEDING_MODEL = frozenset({"coco_results"})
# Formats whose files name images that images_uri may hold (check_images: COCO only; YOLO reads every image).
FORMATS_WITH_IMAGES = frozenset({"coco", "yolo"})
