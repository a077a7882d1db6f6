"""The Elasticsearch side of a datarow: index names, the mapping (driven by the project's field catalog) and the
document built from a datarow dict of the reference evaluator's shape (tests/search/reference.py, plus
"slice_ids"). docs/design/search-elasticsearch.md explains the choices.

Metadata and attribute paths become single field names (keys percent-encoded, joined by "/"), never dotted ones,
so a key that is a string in one row and an object in another cannot clash in the mapping. Each field holds only
the values of its type: what the query language compares (search.ql.validation). Presence, which holds for a
non-null value of any type, is a separate keyword list of the paths a row has.
"""

from datetime import UTC, datetime
from urllib.parse import quote

from search.ql.validation import parse_datetime

WORD_ANALYZER = "words"
# Between two values of one multi-valued text field; MATCH allows fewer gaps, so its words come from one value.
TEXT_VALUE_GAP = 10_000
# Lucene refuses terms over 32,766 bytes: longer strings are kept in _source but not indexed (no term matches them).
KEYWORD_IGNORE_ABOVE = 8191
ATTRIBUTE_TYPES = ("string", "number", "boolean")
OBJECT_PATHS = {"label": "labels", "prediction": "predictions"}
# Evaluation runs' matches of the datarow's objects: nested like labels, with no attributes.
EVALUATION_PATH = "evaluation_matches"
NESTED_PATHS = {**OBJECT_PATHS, "evaluation": EVALUATION_PATH}

INDEX_SETTINGS = {
    "number_of_shards": 1,
    "analysis": {
        # Words as MATCH sees them (search/ql/text.py, and PostgreSQL's `simple` configuration for plain words):
        # runs of letters and digits, lower-cased; no stemming, no stop words.
        "tokenizer": {"words": {"type": "pattern", "pattern": "[^\\p{L}\\p{N}]+"}},
        "analyzer": {WORD_ANALYZER: {"type": "custom", "tokenizer": "words", "filter": ["lowercase"]}},
    },
}

_KEYWORD = {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}
_CATALOG_MAPPINGS = {
    "string": {
        **_KEYWORD,
        "fields": {"text": {"type": "text", "analyzer": WORD_ANALYZER, "position_increment_gap": TEXT_VALUE_GAP}},
    },
    "number": {"type": "double"},
    "boolean": {"type": "boolean"},
    "datetime": {"type": "date"},
}
_ATTRIBUTE_MAPPINGS = {"string": _KEYWORD, "number": {"type": "double"}, "boolean": {"type": "boolean"}}


def alias_name(tenant_schema: str, project_id: int) -> str:
    """The alias searches and writes go through: one per project of a tenant (the catalog, hence the mapping, is
    per project)."""
    return f"mlops-{tenant_schema.lower()}-project-{project_id}"


def building_alias_name(alias: str) -> str:
    """Names the index a full reindex is filling, so changes made meanwhile are written there too."""
    return f"{alias}-building"


def encode_path(path: tuple[str, ...]) -> str:
    return "/".join(quote(key, safe="").replace(".", "%2E") for key in path)


def catalog_path(path: tuple[str, ...]) -> str:
    return ".".join(path)


def metadata_field(path: tuple[str, ...]) -> str:
    return f"metadata.{encode_path(path)}"


def attribute_field(kind: str, value_type: str, path: tuple[str, ...]) -> str:
    return f"{OBJECT_PATHS[kind]}.attributes.{value_type}.{encode_path(path)}"


def _object_mapping(kind: str) -> dict:
    attributes = {value_type: {"type": "object", "dynamic": True} for value_type in ATTRIBUTE_TYPES}
    attributes["present"] = {"type": "keyword"}
    properties = {
        "class": {"type": "keyword"},
        "class_ancestors": {"type": "keyword"},
        "kind": {"type": "keyword"},
        **{name: {"type": "double"} for name in ("x", "y", "w", "h", "area")},
        "attributes": {"type": "object", "properties": attributes},
    }
    if kind == "prediction":
        properties.update(score={"type": "double"}, model={"type": "keyword"})
    return {"type": "nested", "properties": properties}


def evaluation_mapping() -> dict:
    keywords = ("side", "outcome", "class", "class_ancestors", "predicted_class", "predicted_class_ancestors")
    return {
        "type": "nested",
        "properties": {
            "run": {"type": "long"},
            **{name: {"type": "keyword"} for name in keywords},
            "iou": {"type": "double"},
            "score": {"type": "double"},
        },
    }


def metadata_properties(catalog: dict[str, str]) -> dict:
    """The metadata fields of the catalog (path -> type); adding paths later is a mapping update, never a change."""
    return {encode_path(tuple(path.split("."))): _CATALOG_MAPPINGS[kind] for path, kind in sorted(catalog.items())}


def index_mapping(catalog: dict[str, str]) -> dict:
    # Attribute fields are typed by their values (no catalog): dynamic templates map each typed object's children.
    templates = [
        {
            f"{object_path}_{value_type}": {
                "path_match": f"{object_path}.attributes.{value_type}.*",
                "mapping": _ATTRIBUTE_MAPPINGS[value_type],
            }
        }
        for object_path in OBJECT_PATHS.values()
        for value_type in ATTRIBUTE_TYPES
    ]
    return {
        "dynamic": "strict",
        "dynamic_templates": templates,
        "properties": {
            "id": {"type": "long"},
            "dataset_id": {"type": "long"},
            "external_id": _KEYWORD,
            "uri": _KEYWORD,
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            # date_nanos keeps PostgreSQL's microseconds (date would round them to milliseconds).
            "created_at": {"type": "date_nanos"},
            "updated_at": {"type": "date_nanos"},
            "tags": {"type": "keyword"},
            "slice_ids": {"type": "long"},
            # Paths outside the catalog stay in _source only.
            "metadata": {"type": "object", "dynamic": False, "properties": metadata_properties(catalog)},
            "metadata_present": {"type": "keyword"},
            "labels": _object_mapping("label"),
            "predictions": _object_mapping("prediction"),
            EVALUATION_PATH: evaluation_mapping(),
        },
    }


def tree_values(tree) -> dict[tuple[str, ...], list]:
    """Every path of a JSON tree with its non-null values, as the reference's json_values reaches them: a list is
    stepped into once, at the end of a path and on the way (lists inside lists are values, not stepped into)."""
    found: dict[tuple[str, ...], list] = {}

    def visit(node: dict, path: tuple[str, ...]) -> None:
        for key, value in node.items():
            here = (*path, key)
            for element in value if isinstance(value, list) else [value]:
                if element is None:
                    continue
                found.setdefault(here, []).append(element)
                if isinstance(element, dict):
                    visit(element, here)

    if isinstance(tree, dict):
        visit(tree, ())
    return found


def is_of_type(value, value_type: str) -> bool:
    if value_type == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if value_type == "boolean":
        return isinstance(value, bool)
    return isinstance(value, str)


def date_text(moment: datetime, timespec: str = "microseconds") -> str:
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def _metadata_value(value, value_type: str):
    """The value as the field of its catalog type indexes it, or None when it is not of that type; dates keep the
    milliseconds an Elasticsearch `date` holds."""
    if value_type == "datetime":
        moment = parse_datetime(value) if isinstance(value, str) else None
        return None if moment is None else date_text(moment, "milliseconds")
    return value if is_of_type(value, value_type) else None


def class_ancestors(name: str) -> list[str]:
    """The class and every prefix of it that ends before a "/": what `class UNDER p` matches on."""
    return [name[:i] for i, char in enumerate(name) if char == "/"] + [name]


def _object_document(kind: str, item: dict) -> dict:
    document = {"class": item["class"], "class_ancestors": class_ancestors(item["class"]), "kind": item["kind"]}
    document.update({name: item[name] for name in ("x", "y", "w", "h", "area") if item[name] is not None})
    attributes: dict = {value_type: {} for value_type in ATTRIBUTE_TYPES}
    present = []
    for path, values in tree_values(item["attributes"]).items():
        field = encode_path(path)
        present.append(field)
        for value_type in ATTRIBUTE_TYPES:
            typed = [value for value in values if is_of_type(value, value_type)]
            if typed:
                attributes[value_type][field] = typed
    document["attributes"] = {**{k: v for k, v in attributes.items() if v}, "present": present}
    if kind == "prediction":
        document.update(score=item["score"], model=item["model"])
    return document


def _match_document(match: dict) -> dict:
    document = {
        "run": match["run"],
        "side": match["side"],
        "outcome": match["outcome"],
        "class": match["class"],
        "class_ancestors": class_ancestors(match["class"]),
    }
    if match["predicted_class"] is not None:
        document.update(
            predicted_class=match["predicted_class"],
            predicted_class_ancestors=class_ancestors(match["predicted_class"]),
        )
    document.update({name: match[name] for name in ("iou", "score") if match[name] is not None})
    return document


def datarow_document(row: dict, catalog: dict[str, str]) -> dict:
    """The document of a datarow (document id = datarow id) for an index mapped from `catalog`."""
    metadata, present = {}, []
    for path, values in tree_values(row["metadata"]).items():
        value_type = catalog.get(catalog_path(path))
        if value_type is None:
            continue
        field = encode_path(path)
        present.append(field)
        typed = [typed for typed in (_metadata_value(value, value_type) for value in values) if typed is not None]
        if typed:
            metadata[field] = typed
    return {
        "id": row["id"],
        "dataset_id": row["dataset_id"],
        "external_id": row["external_id"],
        "uri": row["uri"],
        **{name: row[name] for name in ("width", "height") if row[name] is not None},
        "created_at": date_text(row["created_at"]),
        "updated_at": date_text(row["updated_at"]),
        "tags": list(row["tags"]),
        "slice_ids": list(row.get("slice_ids", ())),
        "metadata": metadata,
        "metadata_present": present,
        "labels": [_object_document("label", item) for item in row["labels"]],
        "predictions": [_object_document("prediction", item) for item in row["predictions"]],
        EVALUATION_PATH: [_match_document(match) for match in row.get("evaluation_matches", ())],
    }
