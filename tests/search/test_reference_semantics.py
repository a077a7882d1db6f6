"""The documented semantics (docs/query-language.md), pinned on the reference evaluator with hand-made rows.
The PostgreSQL engine is held to the same answers by test_postgres_engine."""

from datetime import UTC, datetime

import pytest

from search.ql import parse, validate
from search.ql.validation import EvaluationRuns
from tests.search.reference import datarow_ids

CATALOG = {"weather": "string", "time": "datetime", "seen": "string", "people.age": "number", "caption": "string"}


def _object(name, **fields):
    return {"class": name, "kind": "box", "x": 0, "y": 0, "w": 10, "h": 10, "area": 100, "attributes": {}, **fields}


def _row(row_id, metadata=None, tags=(), labels=(), predictions=(), width=640):
    return {
        "id": row_id,
        "external_id": f"img-{row_id}",
        "uri": f"s3://b/{row_id}.jpg",
        "width": width,
        "height": width and 480,
        "created_at": datetime(2024, 1, row_id, tzinfo=UTC),
        "updated_at": datetime(2024, 1, row_id, tzinfo=UTC),
        "dataset_id": 1,
        "metadata": metadata or {},
        "tags": list(tags),
        "labels": list(labels),
        "predictions": list(predictions),
    }


ROWS = [
    _row(
        1,
        {"weather": "rain", "time": "2024-05-01T12:00:00+02:00", "seen": ["car", "bus"], "caption": "A red car"},
        tags=["night", "city"],
        labels=[_object("vehicle/car", area=5000, attributes={"occluded": True}), _object("person")],
        predictions=[_object("vehicle/car", score=0.9, model="yolo@1")],
    ),
    _row(
        2,
        {"weather": None, "time": "2024-05-01", "people": [{"age": 30}, {"age": 70}], "caption": "red bus"},
        tags=["city"],
        labels=[_object("vehicle/car", area=50), _object("vehicle", area=5000)],
        width=None,
    ),
    _row(
        3,
        {"weather": "sun", "seen": "truck", "caption": "Car, red!"},
        labels=[
            _object("vehicle_x", attributes={"occluded": "true"}),
            _object("vehicle/car"),
            _object("vehicle/car"),
            _object("vehicle/car/sedan"),
        ],
        predictions=[_object("vehicle/car", score=0.3, model="yolo@1"), _object("person", score=0.8, model="detr@2")],
    ),
    _row(4),
]


def ids(text: str) -> list[int]:
    return datarow_ids(validate(parse(text), catalog=CATALOG, text=text), ROWS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a comparison on a missing or null value is false; NOT, != and NOT IN are its complement
        ("metadata.weather = 'rain'", [1]),
        ("metadata.weather != 'rain'", [2, 3, 4]),
        ("NOT metadata.weather IN ('rain', 'sun')", [2, 4]),
        ("metadata.weather IS NULL", [2, 4]),
        ("metadata.weather IS NOT NULL", [1, 3]),
        ("width > 100", [1, 3, 4]),
        ("NOT width > 100", [2]),
        ("width IS NULL", [2]),
        # a list value: a condition holds when any element satisfies it, at the end of the path or on the way
        ("metadata.seen = 'car'", [1]),
        ("metadata.seen != 'car'", [2, 3, 4]),
        ("metadata.seen LIKE 'tr%'", [3]),
        ("metadata.people.age > 60", [2]),
        ("metadata.people.age BETWEEN 40 AND 60", []),
        # datetimes compare as instants; a date alone is midnight UTC
        ("metadata.time = '2024-05-01T10:00:00Z'", [1]),
        ("metadata.time < '2024-05-01T10:00:00Z'", [2]),
        ("created_at BETWEEN '2024-01-02' AND '2024-01-03T00:00:00Z'", [2, 3]),
        # tags
        ("tags = 'city'", [1, 2]),
        ("tags IN ('night', 'nope')", [1]),
        ("tags != 'city'", [3, 4]),
        ("tags IS NULL", [3, 4]),
        # LIKE is case-sensitive, whole value, backslash escapes
        ("external_id LIKE 'img-_'", [1, 2, 3, 4]),
        ("uri LIKE 'S3%'", []),
        ("metadata.weather LIKE 'r\\%'", []),
        # full text: every word, any order, case-insensitive, punctuation ignored
        ("MATCH(metadata.caption, 'car red')", [1, 3]),
        ("MATCH(metadata.caption, 'bus')", [2]),
        # the same object vs any objects
        ("label(class = 'vehicle/car' AND area > 1000)", [1]),
        ("label(class = 'vehicle/car') AND label(area > 1000)", [1, 2]),
        ("label(class = 'vehicle/car' AND attributes.occluded = true)", [1]),
        ("label(attributes.occluded = 'true')", [3]),
        ("label(attributes.occluded != true)", [1, 2, 3]),
        # hierarchy: the class itself and its descendants, not a name that merely starts the same
        ("label(class UNDER 'vehicle')", [1, 2, 3]),
        ("label(class UNDER 'vehicle/car' AND NOT class = 'vehicle/car')", [3]),
        ("label(class UNDER 'vehicle_x')", [3]),
        ("label(class UNDER 'vehicle') AND NOT label(class UNDER 'vehicle/car')", []),
        # counts: rows without objects count 0
        ("COUNT(label WHERE class = 'vehicle/car') >= 2", [3]),
        ("COUNT(label WHERE class = 'vehicle/car') = 0", [4]),
        ("COUNT(label) < 2", [4]),
        ("COUNT(prediction) != 1", [2, 3, 4]),
        # predictions per model version, scores, and ground truth against predictions
        ("prediction(model = 'yolo@1' AND class = 'vehicle/car' AND score >= 0.5)", [1]),
        ("prediction(model = 'yolo@1') AND prediction(model = 'detr@2' AND score > 0.5)", [3]),
        ("label(class = 'vehicle/car') AND NOT prediction(model = 'yolo@1' AND class = 'vehicle/car')", [2]),
        (
            "label(class = 'vehicle/car') AND NOT prediction(model = 'yolo@1' AND class = 'vehicle/car' AND score >= 0.5)",
            [2, 3],
        ),
    ],
)
def test_semantics(text, expected):
    assert ids(text) == expected


def _match(run, side, outcome, name, predicted=None, iou=None, score=None):
    return {
        "run": run,
        "side": side,
        "outcome": outcome,
        "class": name,
        "predicted_class": predicted,
        "iou": iou,
        "score": score,
    }


# Run 7 (det@2's latest) over rows 1-3; run 5, an older one, over row 4.
EVALUATED = [
    {**_row(1), "evaluation_matches": [_match(7, "label", "fn", "vehicle/car", "vehicle/bus", 0.3, 0.6)]},
    {
        **_row(2),
        "evaluation_matches": [
            _match(7, "label", "fn", "person"),
            _match(7, "prediction", "fp", "person", iou=0.2, score=0.9),
        ],
    },
    {**_row(3), "evaluation_matches": [_match(7, "label", "tp", "vehicle/car", "vehicle/car", 0.8, 0.7)] * 2},
    {**_row(4), "evaluation_matches": [_match(5, "label", "fn", "vehicle/car")]},
    _row(5),
]
RUNS = EvaluationRuns({5: "succeeded", 7: "succeeded"}, {"det@2": 7})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # every condition is on the matches of the run named; a model names its latest succeeded run
        ("evaluation(model = 'det@2' AND outcome = 'fn' AND class UNDER 'vehicle')", [1]),
        ("evaluation(run = 5 AND outcome = 'fn')", [4]),
        # one match satisfies all of the condition: row 2's person FN has no score, its FP is no FN
        ("evaluation(run = 7 AND outcome = 'fn' AND score > 0.5)", [1]),
        ("evaluation(run = 7 AND class = 'person' AND score > 0.8)", [2]),
        # a missing predicted class, IoU or score satisfies no comparison; != and NOT are their complement
        ("evaluation(run = 7 AND side = 'label' AND predicted_class != 'vehicle/bus')", [2, 3]),
        ("evaluation(run = 7 AND predicted_class IS NULL)", [2]),
        ("evaluation(run = 7 AND NOT iou BETWEEN 0.1 AND 0.5)", [2, 3]),
        ("evaluation(run = 7 AND outcome = 'fn' AND predicted_class UNDER 'vehicle')", [1]),
        # counts: rows the run did not see count 0
        ("COUNT(evaluation WHERE run = 7 AND outcome = 'tp') = 2", [3]),
        ("COUNT(evaluation WHERE run = 7) = 0", [4, 5]),
        ("NOT evaluation(run = 7 AND outcome IN ('fn', 'fp'))", [3, 4, 5]),
    ],
)
def test_evaluation_semantics(text, expected):
    query = validate(parse(text), catalog=CATALOG, text=text, evaluation_runs=RUNS)
    assert datarow_ids(query, EVALUATED) == expected
