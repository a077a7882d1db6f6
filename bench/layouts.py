"""Storage layouts for labels and predictions, compared on the search issue's query kinds.

    .venv/bin/python -m devstack run -- .venv/bin/python bench/layouts.py --rows 1000000

Loads generated data with the import service into a throwaway tenant (layout A: one row per object in
datasets_label / predictions_prediction, as built), derives layout B from it (the objects as JSON arrays on
the datarow row, with GIN jsonb_path_ops indexes), then times each query kind on both: the exact count and
the first page of 50 ids, warm, median of 3 runs, with the top of the plan.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, ensure_generated, machine, postgres_settings, print_table, setup_django, throwaway_tenant

BUILD_JSON_LAYOUT = """
CREATE TABLE layout_json AS
SELECT d.id, d.dataset_id, d.metadata, d.tags,
       coalesce((SELECT jsonb_agg(jsonb_build_object('class', c.name, 'area', l.area, 'x', l.x, 'y', l.y,
                                                     'w', l.w, 'h', l.h, 'attributes', l.attributes))
                 FROM datasets_label l JOIN datasets_ontologyclass c ON c.id = l.ontology_class_id
                 WHERE l.datarow_id = d.id), '[]') AS labels,
       coalesce((SELECT jsonb_agg(jsonb_build_object('model', m.name || '@' || m.version, 'class', c.name,
                                                     'score', p.score, 'area', p.area))
                 FROM predictions_prediction p JOIN datasets_ontologyclass c ON c.id = p.ontology_class_id
                 JOIN predictions_modelversion m ON m.id = p.model_version_id
                 WHERE p.datarow_id = d.id), '[]') AS predictions
FROM datasets_datarow d;
ALTER TABLE layout_json ADD PRIMARY KEY (id);
CREATE INDEX layout_json_labels ON layout_json USING gin (labels jsonb_path_ops);
CREATE INDEX layout_json_predictions ON layout_json USING gin (predictions jsonb_path_ops);
ANALYZE layout_json;
"""


def class_id(name: str) -> str:
    return f"(SELECT id FROM datasets_ontologyclass WHERE name = '{name}')"


PERSON, CAR, TOOTHBRUSH = class_id("person"), class_id("vehicle/car"), class_id("object/toothbrush")
YOLO = "(SELECT id FROM predictions_modelversion WHERE name = 'yolo' AND version = '8.1')"

# (kind, relational condition on datarow d, JSON-array condition on layout_json j)
QUERIES = [
    ("tag", "d.tags @> ARRAY['night']", "j.tags @> ARRAY['night']"),
    ("metadata equality", """d.metadata @> '{"weather": "rain"}'""", """j.metadata @> '{"weather": "rain"}'"""),
    (
        "any label of a class (common)",
        f"EXISTS (SELECT 1 FROM datasets_label l WHERE l.datarow_id = d.id AND l.ontology_class_id = {PERSON})",
        """j.labels @> '[{"class": "person"}]'""",
    ),
    (
        "any label of a class (rare)",
        f"EXISTS (SELECT 1 FROM datasets_label l WHERE l.datarow_id = d.id AND l.ontology_class_id = {TOOTHBRUSH})",
        """j.labels @> '[{"class": "object/toothbrush"}]'""",
    ),
    (
        "same object: class, area, attribute",
        f"""EXISTS (SELECT 1 FROM datasets_label l WHERE l.datarow_id = d.id
         AND l.ontology_class_id = {CAR} AND l.area > 5000
         AND l.attributes @> '{{"occluded": true}}')""",
        """j.labels @> '[{"class": "vehicle/car", "attributes": {"occluded": true}}]' AND EXISTS (
         SELECT 1 FROM jsonb_array_elements(j.labels) e WHERE e->>'class' = 'vehicle/car'
         AND (e->>'area')::float8 > 5000 AND e->'attributes' @> '{"occluded": true}')""",
    ),
    (
        "at least 3 persons",
        f"""d.id IN (SELECT datarow_id FROM datasets_label WHERE ontology_class_id = {PERSON}
         GROUP BY datarow_id HAVING count(*) >= 3)""",
        """j.labels @> '[{"class": "person"}]' AND (SELECT count(*) FROM jsonb_array_elements(j.labels) e
         WHERE e->>'class' = 'person') >= 3""",
    ),
    (
        "class under 'vehicle'",
        """EXISTS (SELECT 1 FROM datasets_label l WHERE l.datarow_id = d.id AND l.ontology_class_id IN (
         SELECT id FROM datasets_ontologyclass WHERE name = 'vehicle' OR name LIKE 'vehicle/%'))""",
        """jsonb_path_exists(j.labels, '$[*] ? (@.class == "vehicle" || @.class starts with "vehicle/")')""",
    ),
    (
        "prediction of a model, class, score > 0.9",
        f"""EXISTS (SELECT 1 FROM predictions_prediction p WHERE p.datarow_id = d.id AND p.model_version_id = {YOLO}
         AND p.ontology_class_id = {CAR} AND p.score > 0.9)""",
        """j.predictions @> '[{"model": "yolo@8.1", "class": "vehicle/car"}]' AND EXISTS (
         SELECT 1 FROM jsonb_array_elements(j.predictions) e WHERE e->>'model' = 'yolo@8.1'
         AND e->>'class' = 'vehicle/car' AND (e->>'score')::float8 > 0.9)""",
    ),
    (
        "labelled car, no predicted car of yolo",
        f"""EXISTS (SELECT 1 FROM datasets_label l WHERE l.datarow_id = d.id AND l.ontology_class_id = {CAR})
         AND NOT EXISTS (SELECT 1 FROM predictions_prediction p WHERE p.datarow_id = d.id
         AND p.model_version_id = {YOLO} AND p.ontology_class_id = {CAR})""",
        """j.labels @> '[{"class": "vehicle/car"}]'
         AND NOT j.predictions @> '[{"model": "yolo@8.1", "class": "vehicle/car"}]'""",
    ),
]


def _timed(cursor, sql: str, runs: int = 3) -> tuple[float, object]:
    timings, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        cursor.execute(sql)
        result = cursor.fetchall()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), result


def _plan_top(cursor, sql: str) -> str:
    cursor.execute("EXPLAIN " + sql)
    lines = [row[0].strip() for row in cursor.fetchall()]
    scans = [line.split("  (")[0].lstrip("-> ") for line in lines if "Scan" in line]
    return "; ".join(dict.fromkeys(scans))[:90]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    setup_django()
    from django.db import connection

    from datasets.models import Dataset
    from datasets.services.imports import ImportOptions, dataset_import_run
    from projects.models import Project

    manifest = ensure_generated(args.rows, 0) / "manifest.jsonl"
    rows = []
    with throwaway_tenant("bench_layouts", files=OUT):
        project = Project.objects.create(workspace_id="bench", name="bench", created_by="bench")
        dataset = Dataset.objects.create(project=project, name="layouts", created_by="bench")
        started = time.monotonic()
        dataset_import_run(
            dataset=dataset,
            uri=str(manifest),
            options=ImportOptions(create_classes=True),
            source="import:layouts",
            user="bench",
            progress=lambda counters, errors: None,
        )
        print(f"imported {args.rows:,} rows in {time.monotonic() - started:.0f}s", file=sys.stderr)
        with connection.cursor() as cursor:
            started = time.monotonic()
            cursor.execute(BUILD_JSON_LAYOUT)
            cursor.execute("VACUUM ANALYZE datasets_datarow, datasets_label, predictions_prediction")
            print(f"built the JSON layout in {time.monotonic() - started:.0f}s", file=sys.stderr)
            for kind, relational, json_array in QUERIES:
                for layout, table, condition in (
                    ("relational", "datasets_datarow d", relational),
                    ("JSON array", "layout_json j", json_array),
                ):
                    alias = table.split()[-1]
                    count_ms, count = _timed(cursor, f"SELECT count(*) FROM {table} WHERE {condition}")
                    page_sql = f"SELECT {alias}.id FROM {table} WHERE {condition} ORDER BY {alias}.id LIMIT 50"
                    page_ms, _ = _timed(cursor, page_sql)
                    rows.append(
                        [
                            kind,
                            layout,
                            f"{count[0][0]:,}",
                            f"{page_ms:,.0f}",
                            f"{count_ms:,.0f}",
                            _plan_top(cursor, page_sql),
                        ]
                    )
            pg = postgres_settings()
    print_table(
        f"Layouts at {args.rows:,} datarows ({time.strftime('%Y-%m-%d')}, {machine()}); ms, warm, median of 3",
        ["query kind", "layout", "matches", "first page ms", "exact count ms", "first-page plan scans"],
        rows,
    )
    print(f"\nPostgreSQL: {pg}")


if __name__ == "__main__":
    main()
