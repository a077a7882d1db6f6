"""A small evaluator of the Elasticsearch query DSL subset the compiler emits, over the documents the builder makes,
with the field types of the index mapping: what a real server would answer, for the tests that have none.

Covered: bool (filter / must / should with minimum_should_match / must_not), match_all, match_none, term, terms,
range, exists, wildcard, intervals (match, all_of unordered with max_gaps), nested (score_mode sum), constant_score
and function_score with min_score; sorts with mode, missing and nested filters; terms / nested / reverse_nested
aggregations as the engine asks for them, and those of statistics (filter, range, min, max too). Values are indexed as the mapping says: keywords over ignore_above are
not indexed, numbers compare as numbers, dates as instants at the field's resolution, text as the analyzer's words.
"""

import math
import re
from datetime import datetime

from search.engines.elasticsearch_documents import KEYWORD_IGNORE_ABOVE
from search.ql.validation import parse_datetime
from tests.search.reference import like_regex


def analyze(text: str) -> list[str]:
    """The `words` analyzer: runs of letters and digits (the pattern tokenizer splits on anything else), lower-cased."""
    return [word.lower() for word in re.split(r"[\W_]+", text) if word]


class Mapping:
    """Field name -> mapping type, with the dynamic templates' typed attribute objects."""

    def __init__(self, mapping: dict):
        self.types: dict[str, str] = {}
        self._walk(mapping["properties"], "")
        self.templates = [
            (next(iter(t.values()))["path_match"], next(iter(t.values()))["mapping"]["type"])
            for t in mapping.get("dynamic_templates", [])
        ]

    def _walk(self, properties: dict, prefix: str) -> None:
        for name, spec in properties.items():
            full = prefix + name
            if "properties" in spec:
                self._walk(spec["properties"], full + ".")
            else:
                self.types[full] = spec.get("type", "object")
                for sub, sub_spec in spec.get("fields", {}).items():
                    self.types[f"{full}.{sub}"] = sub_spec["type"]

    def type_of(self, field: str) -> str | None:
        if field in self.types:
            return self.types[field]
        for pattern, kind in self.templates:
            if re.fullmatch(re.escape(pattern).replace("\\*", "[^.]+"), field):
                return kind
        return None


def _instant(value, resolution: str) -> int | None:
    moment = parse_datetime(value) if isinstance(value, str) else value if isinstance(value, datetime) else None
    if moment is None:
        return None
    micros = int(moment.timestamp()) * 1_000_000 + moment.microsecond
    return micros - micros % 1000 if resolution == "date" else micros


class Evaluator:
    def __init__(self, mapping: dict):
        self.mapping = Mapping(mapping)

    # --- indexed values

    def raw_values(self, document: dict, field: str) -> list:
        current = [document]
        for key in field.split("."):
            current = [item[key] for item in current if isinstance(item, dict) and key in item]
            current = [element for item in current for element in (item if isinstance(item, list) else [item])]
        return [value for value in current if value is not None]

    def values(self, document: dict, field: str) -> list:
        """The field's values as the index holds them (comparable Python values)."""
        kind = self.mapping.type_of(field)
        if kind == "text":
            parent = field.rsplit(".", 1)[0]
            return [analyze(value) for value in self.raw_values(document, parent)]
        values = self.raw_values(document, field)
        if kind == "keyword":
            return [value for value in values if len(value) <= KEYWORD_IGNORE_ABOVE]
        if kind in ("date", "date_nanos"):
            return [_instant(value, kind) for value in values]
        if kind in ("double", "long", "integer"):
            return [float(value) for value in values]
        if kind == "boolean":
            return values
        raise AssertionError(f"unmapped field {field}")

    def literal(self, field: str, value):
        kind = self.mapping.type_of(field)
        if kind in ("date", "date_nanos"):
            return _instant(value, kind)
        if kind in ("double", "long", "integer"):
            return float(value)
        return value

    # --- queries

    def matches(self, query: dict, document: dict) -> bool:
        return self.score(query, document) is not None

    def score(self, query: dict, document: dict) -> float | None:
        """None when the document does not match, else its score (1 outside scoring queries)."""
        ((kind, body),) = query.items()
        if kind == "match_all":
            return 1.0
        if kind == "match_none":
            return None
        if kind == "bool":
            return self._bool(body, document)
        if kind == "constant_score":
            return body.get("boost", 1.0) if self.matches(body["filter"], document) else None
        if kind == "function_score":
            found = self.score(body["query"], document)
            return found if found is not None and found >= body.get("min_score", float("-inf")) else None
        if kind == "nested":
            assert body.get("score_mode", "avg") in ("sum", "avg")
            children = document.get(body["path"].rsplit(".", 1)[-1], [])
            scores = [
                s
                for s in (self.score(body["query"], self._child(body["path"], child)) for child in children)
                if s is not None
            ]
            if not scores:
                return None
            return sum(scores) if body.get("score_mode") == "sum" else sum(scores) / len(scores)
        ((field, argument),) = body.items()
        return 1.0 if self._leaf(kind, field, argument, document) else None

    @staticmethod
    def _child(path: str, child: dict) -> dict:
        """A nested object seen under its full path, as fields inside a nested query name it."""
        document: dict = child
        for key in reversed(path.split(".")):
            document = {key: document}
        return document

    def _bool(self, body: dict, document: dict) -> float | None:
        for clause in body.get("filter", []) + body.get("must", []):
            if not self.matches(clause, document):
                return None
        for clause in body.get("must_not", []):
            if self.matches(clause, document):
                return None
        should = body.get("should", [])
        if should:
            needed = body.get("minimum_should_match", 0 if body.get("filter") or body.get("must") else 1)
            if sum(self.matches(clause, document) for clause in should) < needed:
                return None
        return 1.0

    def _leaf(self, kind: str, field: str, argument, document: dict) -> bool:
        if kind == "exists":
            return bool(self.values(document, argument))
        values = self.values(document, field)
        if kind == "term":
            wanted = self.literal(field, argument["value"] if isinstance(argument, dict) else argument)
            return any(value == wanted and type(value) is type(wanted) for value in values)
        if kind == "terms":
            wanted = [self.literal(field, value) for value in argument]
            return any(value == w and type(value) is type(w) for value in values for w in wanted)
        if kind == "range":
            bounds = {op: self.literal(field, bound) for op, bound in argument.items()}
            tests = {
                "gt": lambda v, b: v > b,
                "gte": lambda v, b: v >= b,
                "lt": lambda v, b: v < b,
                "lte": lambda v, b: v <= b,
            }
            return any(
                all(type(value) is type(bound) and tests[op](value, bound) for op, bound in bounds.items())
                for value in values
            )
        if kind == "wildcard":
            return any(
                isinstance(value, str) and like_regex(argument["value"], any_run="*", one="?").fullmatch(value)
                for value in values
            )
        if kind == "intervals":
            return any(_intervals(argument, words) for words in values)
        raise AssertionError(f"the evaluator does not know {kind}")

    # --- sorting and aggregations (the engine's requests)

    def sort_key(self, document: dict, spec: dict):
        """(missing, value) for one sort clause, with the sort's mode; a missing value sorts last either way."""
        ((field, options),) = spec.items()
        if isinstance(options, str):
            options = {"order": options}
        if "nested" in options:
            nested = options["nested"]
            children = [
                self._child(nested["path"], child)
                for child in document.get(nested["path"], [])
                if "filter" not in nested or self.matches(nested["filter"], self._child(nested["path"], child))
            ]
            values = [value for child in children for value in self.values(child, field)]
        else:
            values = self.values(document, field)
        if not values:
            return None
        return max(values) if options.get("mode") == "max" else min(values)

    def search(self, documents: list[dict], body: dict) -> dict:
        """A search request's answer: hits (ids and sort values) after search_after, the total and aggregations."""
        query = body.get("query", {"match_all": {}})
        matching = [document for document in documents if self.matches(query, document)]
        sorts = body.get("sort", [{"id": "asc"}])
        keyed = [(self._sort_values(document, sorts), document) for document in matching]
        keyed.sort(key=lambda item: _ordering(item[0], sorts))
        after = body.get("search_after")
        if after is not None:
            start = _ordering(_decode_after(after), sorts)
            keyed = [item for item in keyed if _ordering(item[0], sorts) > start]
        hits = [
            {"_id": str(document["id"]), "_source": {"id": document["id"]}, "sort": _encode_sort(values)}
            for values, document in keyed[: body.get("size", 10)]
        ]
        track = body.get("track_total_hits", 10_000)
        total = {"value": len(matching), "relation": "eq"}
        if track is not True and len(matching) > track:
            total = {"value": track, "relation": "gte"}
        answer = {"hits": {"total": total, "hits": hits}}
        if body.get("aggs"):
            answer["aggregations"] = {
                name: self._aggregation(spec, matching)
                if name.startswith("facet_")
                else self.aggregate(spec, [(document, document) for document in matching])
                for name, spec in body["aggs"].items()
            }
        return answer

    def _sort_values(self, document: dict, sorts: list[dict]) -> list:
        return [self.sort_key(document, spec) for spec in sorts]

    def _aggregation(self, spec: dict, documents: list[dict]) -> dict:
        if "nested" in spec:
            path = spec["nested"]["path"]
            ((name, inner),) = spec["aggs"].items()
            terms = inner["terms"]
            counts: dict = {}
            for document in documents:
                seen = {
                    value
                    for child in document.get(path, [])
                    for value in self.values(self._child(path, child), terms["field"])
                }
                for value in seen:
                    counts[value] = counts.get(value, 0) + 1
            buckets = [{"key": key, "doc_count": count, "rows": {"doc_count": count}} for key, count in counts.items()]
            return {name: {"buckets": _top(buckets, terms["size"])}}
        terms = spec["terms"]
        counts = {}
        for document in documents:
            for value in set(self.values(document, terms["field"])):
                counts[value] = counts.get(value, 0) + 1
        kind = self.mapping.type_of(terms["field"])
        buckets = []
        for key, count in counts.items():
            bucket = {"key": key, "doc_count": count}
            if kind == "boolean":
                bucket = {"key": int(key), "key_as_string": "true" if key else "false", "doc_count": count}
            buckets.append(bucket)
        return {"buckets": _top(buckets, terms["size"])}

    def aggregate(self, spec: dict, items: list[tuple[dict, dict]]) -> dict:
        """A statistics aggregation (search/engines/elasticsearch_statistics.py) over (document as fields see it, its
        root document) pairs: nested, reverse_nested, filter, terms (with sum_other_doc_count), range (from inclusive, to
        exclusive; a document counted once per range it has a value in), min and max; each with its sub-aggregations."""

        def under(selected: list[tuple[dict, dict]]) -> dict:
            return {
                "doc_count": len(selected),
                **{name: self.aggregate(inner, selected) for name, inner in spec.get("aggs", {}).items()},
            }

        if "nested" in spec:
            path = spec["nested"]["path"]
            return under([(self._child(path, child), root) for _, root in items for child in root.get(path, [])])
        if "reverse_nested" in spec:
            roots = {root["id"]: root for _, root in items}
            return under([(root, root) for root in roots.values()])
        if "filter" in spec:
            return under([(view, root) for view, root in items if self.matches(spec["filter"], view)])
        if "min" in spec or "max" in spec:
            ((kind, options),) = spec.items()
            values = [value for view, _ in items for value in self.values(view, options["field"])]
            return {"value": (min if kind == "min" else max)(values) if values else None}
        if "range" in spec:
            options = spec["range"]
            return {
                "buckets": [
                    {
                        **bounds,
                        **under(
                            [
                                item
                                for item in items
                                if any(
                                    bounds.get("from", -math.inf) <= value < bounds.get("to", math.inf)
                                    for value in self.values(item[0], options["field"])
                                )
                            ]
                        ),
                    }
                    for bounds in sorted(
                        options["ranges"], key=lambda r: (r.get("from", -math.inf), r.get("to", math.inf))
                    )
                ]
            }
        options = spec["terms"]
        kind = self.mapping.type_of(options["field"])
        members = {}
        for item in items:
            for value in set(self.values(item[0], options["field"])):
                members.setdefault(value, []).append(item)
        buckets = []
        for value, selected in members.items():
            key = (
                {"key": int(value), "key_as_string": "true" if value else "false"}
                if kind == "boolean"
                else {"key": value}
            )
            buckets.append({**key, **under(selected)})
        top = _top(buckets, options.get("size", 10))
        return {
            "buckets": top,
            "sum_other_doc_count": sum(b["doc_count"] for b in buckets) - sum(b["doc_count"] for b in top),
        }


def _top(buckets: list[dict], size: int) -> list[dict]:
    return sorted(buckets, key=lambda b: (-b["doc_count"], b["key"]))[:size]


def _ordering(values: list, sorts: list[dict]) -> tuple:
    """A tuple that orders like the sort: missing values last in either direction."""
    key = []
    for value, spec in zip(values, sorts, strict=True):
        ((_, options),) = spec.items()
        order = options if isinstance(options, str) else options.get("order", "asc")
        if value is None:
            key.append((1, 0))
        elif order == "desc":
            key.append((0, _Reversed(value)))
        else:
            key.append((0, value))
    return tuple(key)


class _Reversed:
    def __init__(self, value):
        self.value = value

    def __lt__(self, other):
        return self.value > other.value

    def __gt__(self, other):
        return self.value < other.value

    def __eq__(self, other):
        return self.value == other.value


def _encode_sort(values: list) -> list:
    """Sort values as the server returns them: numbers for numbers and dates, strings, null for missing."""
    return [int(value) if isinstance(value, float) and value.is_integer() else value for value in values]


def _decode_after(after: list) -> list:
    return [
        None
        if value is None
        else float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else value
        for value in after
    ]


def _intervals(rule: dict, words: list[str]) -> bool:
    """One value's words: a match rule needs its word; all_of (unordered) needs every rule's word within max_gaps."""
    if "match" in rule:
        return all(word in words for word in analyze(rule["match"]["query"]))
    all_of = rule["all_of"]
    assert all_of.get("ordered") is False
    wanted = [analyze(r["match"]["query"])[0] for r in all_of["intervals"]]
    # Words of one value are always within max_gaps (a value is shorter than the gap between values), so the rule
    # holds when the value has every word.
    return all(word in words for word in wanted)
