"""The hand-written SQL reference of bench/search.py --reference: the generated rows in a minimal layout of their own.

The same manifest as the REST tenant (bench/search_data.py), loaded with COPY into two plain tables of a schema of
its own, `bench_ref_<rows>` (kept, so a later run at the same size reuses it): datarows with the metadata the shapes
read as typed columns, and objects with their class as an integer, the area and `occluded` typed; the indexes that
suit each shape, built after the load. Each shape is one search-language query, timed through REST, next to the SQL
a person would write for it: the page of 100 and the exact count, or for the three statistics the GROUP BY (the
histogram's range from the min and max, as the statistic computes it when none is given).
"""

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from generate import CLASSES  # noqa: E402

PAGE = 100
CLASS_IDS = {name: number for number, name in enumerate(CLASSES, 1)}
LAYOUT = """
CREATE TABLE {schema}.datarow (id bigint PRIMARY KEY, width int, height int, tags text[], city text, weather text,
                               iso int);
CREATE TABLE {schema}.object (datarow_id bigint NOT NULL, class smallint NOT NULL, area float8 NOT NULL,
                              occluded boolean NOT NULL);
"""
INDEXES = [
    "CREATE INDEX ON {schema}.datarow USING gin (tags)",
    "CREATE INDEX ON {schema}.datarow (city, iso, width)",
    "CREATE INDEX ON {schema}.datarow (weather)",
    "CREATE INDEX ON {schema}.object (class, datarow_id)",
    "CREATE INDEX ON {schema}.object (class, occluded, area) INCLUDE (datarow_id)",
]


@dataclass(frozen=True)
class Shape:
    """One query shape: its REST request body (page of 100 with the exact total unless it says otherwise) and its
    hand-written SQL, in the reference schema `{s}`: a page and a count, or one aggregate statement."""

    name: str
    rest: dict
    sql: tuple[str, ...]
    endpoint: str = "search"  # or "search/statistics": one statistic, whose counts add up to the SQL's

    @property
    def statistic(self) -> bool:
        return self.endpoint != "search"


def _page_and_count(where: str) -> tuple[str, str]:
    return (
        f"SELECT d.id FROM {{s}}.datarow AS d WHERE {where} ORDER BY d.id LIMIT {PAGE}",
        f"SELECT count(*) FROM {{s}}.datarow AS d WHERE {where}",
    )


def _has(class_name: str, condition: str = "true") -> str:
    return (
        f"EXISTS (SELECT 1 FROM {{s}}.object AS o WHERE o.datarow_id = d.id AND o.class = {CLASS_IDS[class_name]} "
        f"AND {condition})"
    )


def _rest(query: str, **more) -> dict:
    return {"query": query, "page_size": PAGE, "count": "exact", **more}


def _statistic(query: str, statistic: dict) -> dict:
    return {"query": query, "statistics": [statistic]}


HISTOGRAM_BINS = 20
PERSON_COUNT = (
    f"SELECT datarow_id FROM {{s}}.object WHERE class = {CLASS_IDS['person']} GROUP BY datarow_id HAVING count(*) >= 3"
)
SHAPES = [
    Shape("one tag", _rest("tags = 'golden'"), _page_and_count("d.tags @> ARRAY['golden']")),
    Shape(
        "two metadata values and a width range",
        _rest("metadata.city = 'Oslo' AND metadata.camera.iso = 3200 AND width BETWEEN 600 AND 700"),
        _page_and_count("d.city = 'Oslo' AND d.iso = 3200 AND d.width BETWEEN 600 AND 700"),
    ),
    Shape("images with a class", _rest("label(class = 'vehicle/car')"), _page_and_count(_has("vehicle/car"))),
    Shape(
        "same object: class, area > N, occluded",
        _rest("label(class = 'person' AND area > 10000 AND attributes.occluded = true)"),
        _page_and_count(_has("person", "o.occluded AND o.area > 10000")),
    ),
    Shape("a rare class", _rest("label(class = 'object/toothbrush')"), _page_and_count(_has("object/toothbrush"))),
    Shape(
        "three or more objects of a class",
        _rest("COUNT(label WHERE class = 'person') >= 3"),
        (f"{PERSON_COUNT} ORDER BY datarow_id LIMIT {PAGE}", f"SELECT count(*) FROM ({PERSON_COUNT}) AS c"),
    ),
    Shape(
        "(tag or metadata value) and no object of a class",
        _rest("(tags = 'night' OR metadata.weather = 'fog') AND NOT label(class = 'vehicle/car')"),
        _page_and_count(f"(d.tags @> ARRAY['night'] OR d.weather = 'fog') AND NOT {_has('vehicle/car')}"),
    ),
    # The statistics (POST .../search/statistics), next to the GROUP BY a person would write.
    Shape(
        "objects per class (statistic)",
        _statistic("tags = 'night'", {"kind": "count", "field": "label.class", "limit": len(CLASSES)}),
        (
            "SELECT o.class, count(*) FROM {s}.object AS o JOIN {s}.datarow AS d ON d.id = o.datarow_id "
            "WHERE d.tags @> ARRAY['night'] GROUP BY o.class",
        ),
        "search/statistics",
    ),
    Shape(
        "a metadata value's counts over images with a class (statistic)",
        _statistic("label(class = 'vehicle/car')", {"kind": "count", "field": "metadata.weather", "count": "images"}),
        (f"SELECT d.weather, count(*) FROM {{s}}.datarow AS d WHERE {_has('vehicle/car')} GROUP BY d.weather",),
        "search/statistics",
    ),
    Shape(
        "histogram of area over all objects (statistic)",
        _statistic("", {"kind": "histogram", "field": "label.area", "bins": HISTOGRAM_BINS}),
        (
            "WITH r AS (SELECT min(area) AS lo, max(area) AS hi FROM {s}.object) SELECT "
            f"width_bucket(o.area, r.lo, r.hi + (r.hi - r.lo) * 1e-9, {HISTOGRAM_BINS}), count(*) "
            "FROM {s}.object AS o, r GROUP BY 1",
        ),
        "search/statistics",
    ),
]


def capped_count(count_sql: str, cap: int) -> str:
    """A shape's count statement counting no further than `cap` rows, as count=estimate does."""
    head = "SELECT count(*) FROM "
    if not count_sql.startswith(head):
        raise ValueError(f"not a count statement: {count_sql}")
    return f"{head}(SELECT 1 FROM {count_sql.removeprefix(head)} LIMIT {cap}) AS capped"


def reference_schema(rows: int) -> str:
    return f"bench_ref_{rows}"


def _loaded(cursor, schema: str, rows: int) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{schema}.object"])
    if not cursor.fetchone()[0]:
        return False
    cursor.execute(f"SELECT count(*) FROM {schema}.datarow")
    return cursor.fetchone()[0] == rows


def _tsv(manifest: Path, folder: Path) -> tuple[Path, Path]:
    datarows, objects = folder / "ref_datarow.tsv", folder / "ref_object.tsv"
    with open(manifest, "rb") as source, open(datarows, "w") as rows_out, open(objects, "w") as objects_out:
        for datarow_id, line in enumerate(source, 1):  # the ids bench/search_data.py gives the same lines
            r = orjson.loads(line)
            tags = "{" + ",".join(f'"{tag}"' for tag in sorted(set(r["tags"]))) + "}"
            m = r["metadata"]
            rows_out.write(
                f"{datarow_id}\t{r['width']}\t{r['height']}\t{tags}\t{m['city']}\t{m['weather']}\t{m['camera']['iso']}\n"
            )
            for item in r["labels"]:
                _, _, w, h = item["box"]
                occluded = "t" if item["attributes"]["occluded"] else "f"
                objects_out.write(f"{datarow_id}\t{CLASS_IDS[item['class']]}\t{w * h}\t{occluded}\n")
    return datarows, objects


def load_reference(*, rows: int, manifest: Path, log=print) -> str:
    """The reference schema for `rows` datarows, loaded from the manifest unless it already holds them; waits until
    the replica (where the REST reads and the timed SQL run) has it."""
    from django.db import connections

    schema = reference_schema(rows)
    with connections["default"].cursor() as cursor:
        if not _loaded(cursor, schema, rows):
            started = time.monotonic()
            datarows, objects = _tsv(manifest, manifest.parent)
            _create(cursor, schema)
            for table, path in (("datarow", datarows), ("object", objects)):
                with open(path, "rb") as data, cursor.copy(f"COPY {schema}.{table} FROM STDIN") as copy:
                    while chunk := data.read(1 << 20):
                        copy.write(chunk)
                path.unlink()
            _index(cursor, schema)
            log(f"reference layout loaded with COPY and indexed in {time.monotonic() - started:.0f}s")
    _wait_for_reader(schema, rows)
    return schema


def replicate_reference(*, rows: int, source_rows: int, log=print) -> str:
    """The reference schema for `rows` datarows as copies of the loaded one of `source_rows`, each copy's ids shifted
    by `copy * source_rows` as bench/search_data.py's `replicate` shifts the tenant's: both hold the same rows."""
    from django.db import connections

    schema, source = reference_schema(rows), reference_schema(source_rows)
    with connections["default"].cursor() as cursor:
        if not _loaded(cursor, schema, rows):
            if not _loaded(cursor, source, source_rows):
                raise SystemExit(f"the reference {source} must be loaded first (--reference at {source_rows:,} rows)")
            started = time.monotonic()
            _create(cursor, schema)
            for copy in range(rows // source_rows):
                shift = copy * source_rows
                cursor.execute(
                    f"INSERT INTO {schema}.datarow SELECT id + {shift}, width, height, tags, city, weather, iso "
                    f"FROM {source}.datarow ORDER BY id"
                )
                cursor.execute(
                    f"INSERT INTO {schema}.object SELECT datarow_id + {shift}, class, area, occluded FROM {source}.object"
                )
            _index(cursor, schema)
            log(f"reference layout replicated and indexed in {time.monotonic() - started:.0f}s")
    _wait_for_reader(schema, rows)
    return schema


def _create(cursor, schema: str) -> None:
    cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    cursor.execute(f"CREATE SCHEMA {schema}")
    cursor.execute(LAYOUT.format(schema=schema))


def _index(cursor, schema: str) -> None:
    cursor.execute("SET maintenance_work_mem = '1GB'")
    for statement in INDEXES:
        cursor.execute(statement.format(schema=schema))
    for table in ("datarow", "object"):
        cursor.execute(f"VACUUM ANALYZE {schema}.{table}")


def _wait_for_reader(schema: str, rows: int) -> None:
    from django.db import connections

    with connections["reader"].cursor() as cursor:
        for _ in range(600):
            if _loaded(cursor, schema, rows):
                return
            time.sleep(1)
    raise SystemExit(f"the replica did not receive {schema} within 10 minutes")


def time_sql(schema: str, shape: Shape, repeat: int, warm: int = 2) -> list[float]:
    """Milliseconds of each run of the shape's statements, one after the other, on the replica (as REST reads)."""
    from django.db import connections

    statements = [statement.format(s=schema) for statement in shape.sql]
    times = []
    with connections["reader"].cursor() as cursor:
        for attempt in range(warm + repeat):
            started = time.perf_counter()
            for statement in statements:
                cursor.execute(statement)
                cursor.fetchall()
            if attempt >= warm:
                times.append((time.perf_counter() - started) * 1000)
    return times
