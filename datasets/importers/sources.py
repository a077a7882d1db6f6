"""Line-oriented manifests (JSONL, CSV) as a stream of `(line_no, record | LineError)`, in constant memory."""

import csv
import io
import math
from collections.abc import Iterator
from contextlib import suppress
from typing import BinaryIO

import orjson

from datasets.importers.records import LineError, decode_json_record, record_from_dict

MAX_LINE_BYTES = 8 * 1024 * 1024
_READ_CHUNK = 1024 * 1024


def _raw_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """Physical lines; a line over MAX_LINE_BYTES is skipped without being held in memory (yields None)."""
    line_no = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        line_no += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:
                rest = stream.readline(_READ_CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            yield line_no, None
            continue
        yield line_no, line


def jsonl_records(stream: BinaryIO) -> Iterator[tuple[int, object]]:
    for line_no, line in _raw_lines(stream):
        if line is None:
            yield line_no, LineError(line_no, "(line)", f"is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB")
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


def _csv_record(header: list[str], cells: list[str], line_no: int):
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
                    node = node.setdefault(part, {})
                node[leaf] = value
    return record


def csv_records(stream: BinaryIO) -> Iterator[tuple[int, object]]:
    """Columns: external_id, uri, width, height, media_type, tags (a|b), metadata/labels/predictions (JSON),
    and `metadata.<path>` columns. Undecodable bytes are kept as surrogates so the line can be reported."""
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
    csv.field_size_limit(MAX_LINE_BYTES)
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    unknown = [c for c in header if c not in (*CSV_JSON_COLUMNS, *CSV_PLAIN_COLUMNS, *CSV_INT_COLUMNS, "tags")
               and not c.startswith("metadata.")]
    if unknown or "external_id" not in header or "uri" not in header:
        yield 1, LineError(1, "(header)", "needs external_id and uri; other columns are width, height, media_type, "
                                          f"tags, metadata, labels, predictions or metadata.<path> (unknown: {unknown})")
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
            record = _csv_record(header, cells, reader.line_num)
            yield reader.line_num, record if isinstance(record, LineError) else record_from_dict(reader.line_num, record)
