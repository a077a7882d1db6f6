"""Line-oriented manifests (JSONL, CSV) as a stream of `(line_no, record | LineError)`, in constant memory."""

import csv
import io
import math
from collections.abc import Iterator
from contextlib import suppress
from typing import BinaryIO

import orjson
from django.conf import settings

from datasets.importers.json_depth import exceeds_depth, too_deep_message
from datasets.importers.records import LineError, decode_json_record, record_from_dict

_READ_CHUNK = 1024 * 1024


def too_long_message(limit: int) -> str:
    return f"is longer than {limit} bytes (the limit is IMPORT_MAX_LINE_BYTES)"


def _raw_lines(stream: BinaryIO, max_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """Physical lines; a line over `max_bytes` is skipped without being held in memory (yields None)."""
    line_no = 0
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        line_no += 1
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while True:
                rest = stream.readline(_READ_CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            yield line_no, None
            continue
        yield line_no, line


def jsonl_records(stream: BinaryIO) -> Iterator[tuple[int, object]]:
    max_bytes = settings.IMPORT_MAX_LINE_BYTES
    for line_no, line in _raw_lines(stream, max_bytes):
        if line is None:
            yield line_no, LineError(line_no, "(line)", too_long_message(max_bytes))
            continue
        if line.strip():
            yield line_no, decode_json_record(line_no, line)


CSV_JSON_COLUMNS = ("metadata", "labels", "predictions")
CSV_PLAIN_COLUMNS = ("external_id", "uri", "media_type")
CSV_INT_COLUMNS = ("width", "height")


def _csv_scalar(text: str):
    """`metadata.<path>` cells: numbers and booleans typed, everything else a string, empty = missing."""
    if text == "":
        return None
    if text in ("true", "false"):
        return text == "true"
    with suppress(ValueError):
        return int(text)
    with suppress(ValueError):
        value = float(text)
        if math.isfinite(value):  # "nan" and "inf" stay strings: JSON has no such numbers
            return value
    return text


def _csv_record(header: list[str], cells: list[str], line_no: int, max_depth: int):
    if len(cells) != len(header):
        return LineError(line_no, "(line)", f"has {len(cells)} cells but the header has {len(header)}")
    record: dict = {}
    for column, cell in zip(header, cells):
        try:
            cell.encode("utf-8")  # undecodable input bytes survive as surrogates, which do not encode
        except UnicodeEncodeError:
            return LineError(line_no, column, "is not valid UTF-8")
        if column in CSV_JSON_COLUMNS:
            if cell:
                # The cell sits one level below the row, as the same value would in a JSONL line.
                if exceeds_depth(cell, max_depth - 1):
                    return LineError(line_no, column, too_deep_message(max_depth))
                try:
                    record[column] = orjson.loads(cell)
                except orjson.JSONDecodeError as error:
                    return LineError(line_no, column, f"is not valid JSON ({error})")
        elif column == "tags":
            record["tags"] = [t for t in cell.split("|") if t]
        elif column in CSV_INT_COLUMNS:
            if cell:
                try:
                    record[column] = int(cell)
                except ValueError:
                    return LineError(line_no, column, "must be a whole number")
        elif column in CSV_PLAIN_COLUMNS:
            record[column] = cell or None
        else:
            value = _csv_scalar(cell)
            if value is not None:
                node = record.setdefault("metadata", {})
                *parents, leaf = column.removeprefix("metadata.").split(".")
                for part in parents:
                    node = node.setdefault(part, {}) if type(node) is dict else None
                if type(node) is not dict:
                    return LineError(line_no, column, "is inside a metadata value that is not an object")
                node[leaf] = value
    return record


def csv_records(stream: BinaryIO) -> Iterator[tuple[int, object]]:
    """Columns: external_id, uri, width, height, media_type, tags (a|b), metadata/labels/predictions (JSON),
    and `metadata.<path>` columns. Undecodable bytes are kept as surrogates so the line can be reported."""
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
    max_depth = settings.IMPORT_MAX_JSON_DEPTH
    csv.field_size_limit(settings.IMPORT_MAX_LINE_BYTES)
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    unknown = [
        c
        for c in header
        if c not in (*CSV_JSON_COLUMNS, *CSV_PLAIN_COLUMNS, *CSV_INT_COLUMNS, "tags") and not c.startswith("metadata.")
    ]
    if unknown or "external_id" not in header or "uri" not in header:
        yield (
            1,
            LineError(
                1,
                "(header)",
                "needs external_id and uri; other columns are width, height, media_type, "
                f"tags, metadata, labels, predictions or metadata.<path> (unknown: {unknown})",
            ),
        )
        return
    # `metadata.a.b` nests a row, its metadata, then one level per part but the last.
    deep = [c for c in header if c.startswith("metadata.") and c.count(".") + 1 > max_depth]
    if deep:
        yield 1, LineError(1, deep[0], too_deep_message(max_depth))
        return
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield reader.line_num, LineError(reader.line_num, "(line)", f"is not valid CSV ({error})")
            continue
        if cells:
            record = _csv_record(header, cells, reader.line_num, max_depth)
            yield (
                reader.line_num,
                record if isinstance(record, LineError) else record_from_dict(reader.line_num, record),
            )
