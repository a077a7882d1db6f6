"""Hypothesis strategies for query trees over the random dataset's fields and values."""

from hypothesis import strategies as st

from search.engines.statistics import Statistic
from search.ql import ast
from tests.search.dataset import CLASSES, COLORS, MODELS, ODD_KEY, TAGS, TIMES, WEATHER, WORDS

AT = ast.Pos(1, 1)
IDS = [f"img-{i:03d}" for i in (0, 7, 10, 39, 41, 79)] + ["img-", "img-100", "a"]
URIS = ["s3://bucket/a/1.jpg", "s3://bucket/b/", "s3://bucket/c_d/", "s3://bucket/b/7.jpg", "t"]
NUMBERS = [0, 1, 40, 40.5, -12.25, 48.1, 89.9, 320, 480, 640, 1024, 1000, 2.5e3, 0.5, 0.25, 0.9]
SIZES = [0, 240, 320, 479.5, 480, 640, 768, 1024]
BOX_NUMBERS = [0, 10, 50.5, 100, 300, 1000, 5000, 20000, 50000]
SCORES = [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1]
DATETIMES = [*TIMES, "2024-05-01", "2024-05-01T10:00:00+00:00", "2100-01-01", "2000-01-01T00:00:00Z"]
PATTERNS = [
    "r%",
    "%a%",
    "_un",
    "%",
    "rain\\_x",
    "50\\%",
    "R%",
    "%x",
    "s3://bucket/a/%",
    "img-0%",
    "img-01_",
    "vehicle/%",
    "n\\_%",
    "%car%",
    "N\\%",
    "%e%",
    "b%",
]
CLASS_NAMES = [*CLASSES, "vehicle/car/", "car"]
MODEL_NAMES = [f"{n}@{v}" for n, v in MODELS] + ["nope@1"]
# field path, kind, the values drawn for it
ROW_FIELDS = [
    (("external_id",), "string", IDS),
    (("uri",), "string", URIS),
    (("width",), "number", SIZES),
    (("height",), "number", SIZES),
    (("created_at",), "datetime", DATETIMES),
    (("tags",), "tags", TAGS),
    (("metadata", "weather"), "string", WEATHER),
    (("metadata", "capture", "gps", "lat"), "number", NUMBERS),
    (("metadata", "capture", "time"), "datetime", DATETIMES),
    (("metadata", "night"), "boolean", [True, False]),
    (("metadata", "caption"), "string", [*WORDS, "red car", "blue"]),
    (("metadata", "objects_seen"), "string", WORDS),
    (("metadata", "people", "name"), "string", ["ann", "bob", "b", "carl"]),
    (("metadata", "people", "age"), "number", [1, 18, 30, 45, 65, 90]),
    (("metadata", ODD_KEY), "string", WEATHER),
]
OBJECT_FIELDS = [
    (("class",), "class", CLASS_NAMES),
    (("kind",), "string", ["box", "classification", "polygon"]),
    (("x",), "number", BOX_NUMBERS),
    (("w",), "number", BOX_NUMBERS),
    (("area",), "number", BOX_NUMBERS),
    (("attributes", "occluded"), "boolean", [True, False]),
    (("attributes", "color"), "string", COLORS),
    (("attributes", "parts"), "string", COLORS),
    (("attributes", "truncation"), "number", [0, 0.25, 0.5, 1]),
]
PREDICTION_FIELDS = [(("score",), "number", SCORES), (("model",), "model", MODEL_NAMES)]
IOUS = [0, 0.05, 0.1, 0.3, 0.45, 0.5, 0.75, 0.9, 1]
EVALUATION_FIELDS = [
    (("side",), "string", ["label", "prediction"]),
    (("outcome",), "string", ["tp", "fp", "fn"]),
    (("class",), "class", CLASS_NAMES),
    (("predicted_class",), "class", CLASS_NAMES),
    (("iou",), "number", IOUS),
    (("score",), "number", SCORES),
]
OPERATORS = list(ast.COMPARISON_OPERATORS)


def predicates(path: tuple[str, ...], kind: str, pool: list):
    """Every predicate form that fits a field of this kind, with values from the pool."""
    field = ast.Field(path, AT)
    values = st.sampled_from(pool).map(lambda v: ast.Value(v, AT))
    ordered = kind in ("string", "number", "datetime")
    operators = OPERATORS if ordered else ["=", "!="]
    forms = [
        st.builds(ast.Compare, st.just(field), st.sampled_from(operators), values, st.just(AT)),
        st.builds(ast.InList, st.just(field), st.lists(values, min_size=1, max_size=3).map(tuple), st.just(AT)),
        st.just(ast.Exists(field, AT)),
    ]
    if ordered:
        forms.append(st.builds(ast.Between, st.just(field), values, values, st.just(AT)))
    if kind in ("string", "tags", "class", "model"):
        forms.append(
            st.builds(ast.Like, st.just(field), st.sampled_from(PATTERNS).map(lambda p: ast.Value(p, AT)), st.just(AT))
        )
    if kind == "class":
        forms.append(st.builds(ast.Under, st.just(field), values, st.just(AT)))
    return st.one_of(forms)


def row_predicates(dataset_ids: list[int]):
    forms = [predicates(path, kind, pool) for path, kind, pool in ROW_FIELDS]
    forms.append(predicates(("dataset",), "number", dataset_ids))
    forms.append(
        st.builds(
            ast.Match,
            st.just(ast.Field(("metadata", "caption"), AT)),
            st.lists(st.sampled_from(WORDS), min_size=1, max_size=2).map(lambda words: ast.Value(" ".join(words), AT)),
            st.just(AT),
        )
    )
    return st.one_of(forms)


def object_predicates(kind: str):
    fields = OBJECT_FIELDS + (PREDICTION_FIELDS if kind == "prediction" else [])
    return st.one_of([predicates(path, field_kind, pool) for path, field_kind, pool in fields])


def _combine(children):
    return st.one_of(
        st.builds(ast.And, st.lists(children, min_size=2, max_size=3).map(tuple), st.just(AT)),
        st.builds(ast.Or, st.lists(children, min_size=2, max_size=3).map(tuple), st.just(AT)),
        st.builds(ast.Not, children, st.just(AT)),
    )


def object_conditions():
    def for_kind(kind: str):
        condition = st.recursive(object_predicates(kind), _combine, max_leaves=4)
        return st.one_of(
            st.builds(ast.ObjectMatch, st.just(kind), condition, st.just(AT)),
            st.builds(
                ast.ObjectCount,
                st.just(kind),
                st.none() | condition,
                st.sampled_from(OPERATORS),
                st.integers(0, 4).map(lambda n: ast.Value(n, AT)),
                st.just(AT),
            ),
        )

    return for_kind("label") | for_kind("prediction")


def _naming_run(run: int | str) -> ast.Compare:
    name = ("run",) if isinstance(run, int) else ("model",)
    return ast.Compare(ast.Field(name, AT), "=", ast.Value(run, AT), AT)


def evaluation_conditions(runs: tuple[int | str, ...]):
    """evaluation(...) and COUNT(evaluation WHERE ...) naming one of `runs` (a run id, or a model version's latest
    run), AND-ed with a random condition on the matches or alone."""
    predicates_ = st.one_of([predicates(path, kind, pool) for path, kind, pool in EVALUATION_FIELDS])
    rest = st.none() | st.recursive(predicates_, _combine, max_leaves=3)
    condition = st.tuples(st.sampled_from(runs).map(_naming_run), rest).map(
        lambda parts: parts[0] if parts[1] is None else ast.And(parts, AT)
    )
    return st.one_of(
        st.builds(ast.ObjectMatch, st.just("evaluation"), condition, st.just(AT)),
        st.builds(
            ast.ObjectCount,
            st.just("evaluation"),
            condition,
            st.sampled_from(OPERATORS),
            st.integers(0, 4).map(lambda n: ast.Value(n, AT)),
            st.just(AT),
        ),
    )


def queries(dataset_ids: list[int], slice_names: tuple[str, ...] = (), runs: tuple[int | str, ...] = ()):
    """Whole query trees: row predicates (IN SLICE of the given slices among them) and object conditions (evaluation
    conditions over the given runs among them) under AND / OR / NOT."""
    # A coin picks the kind of leaf: one_of would pick object conditions for about one leaf in ten.
    rows, objects = row_predicates(dataset_ids), object_conditions()
    if runs:
        objects = objects | evaluation_conditions(runs)
    if slice_names:
        in_slice = st.sampled_from(slice_names).map(lambda name: ast.InSlice(ast.Value(name, AT), AT))
        row_leaves = rows
        rows = st.integers(0, 4).flatmap(lambda pick: in_slice if pick == 0 else row_leaves)
    leaves = st.booleans().flatmap(lambda object_leaf: objects if object_leaf else rows)
    return st.recursive(leaves, _combine, max_leaves=5)


# Statistics (search.engines.statistics) over the random dataset's fields.
COUNT_FIELDS = [
    "label.class",
    "prediction.class",
    "prediction.model",
    "label.attributes.color",
    "label.attributes.parts",
    "label.attributes.occluded",
    "label.attributes.truncation",
    "prediction.attributes.color",
    "label.attributes.none_such",
]
HISTOGRAM_FIELDS = [
    "label.area",
    "label.w",
    "label.x",
    "prediction.h",
    "prediction.score",
    "width",
    "height",
    "metadata.capture.gps.lat",
    "metadata.people.age",
]


def statistics(slice_ids: list[int] = (), *, by_split: bool = True):
    """One statistic: a count or a histogram, with or without a model (prediction fields), a range, a slice."""
    slices = st.none() | st.sampled_from(list(slice_ids)) if by_split and slice_ids else st.none()
    models = st.none() | st.sampled_from(MODEL_NAMES[:3])

    def model_for(field: str):
        return models if field.startswith("prediction.") else st.none()

    counts = st.sampled_from(COUNT_FIELDS).flatmap(
        lambda field: st.builds(
            Statistic,
            name=st.just("s"),
            kind=st.just("count"),
            field=st.just(field),
            count=st.sampled_from(["objects", "images"]),
            model=model_for(field),
            limit=st.integers(1, 8),
            slice_id=slices,
        )
    )
    ranges = st.none() | st.lists(st.sampled_from(NUMBERS + SIZES + SCORES), min_size=2, max_size=2, unique=True).map(
        lambda pair: tuple(sorted(float(n) for n in pair))
    )
    histograms = st.sampled_from(HISTOGRAM_FIELDS).flatmap(
        lambda field: st.builds(
            Statistic,
            name=st.just("s"),
            kind=st.just("histogram"),
            field=st.just(field),
            model=model_for(field),
            bins=st.integers(1, 12),
            range=ranges,
            slice_id=slices,
        )
    )
    return counts | histograms
