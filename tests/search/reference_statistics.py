"""The reference of statistics (docs/query-language.md, "Statistics") in plain Python over the reference evaluator's
datarow dicts, the oracle both engines are compared with. Rows may carry "splits": {slice id: split name or None}
for the slices holding them."""

from search.engines.statistics import (
    ALL,
    SPLIT_NAMES,
    UNASSIGNED,
    Statistic,
    bin_edges,
    bin_of,
    count_group,
    histogram_group,
    statistic_result,
    value_key,
)
from search.ql.validation import ValidQuery
from tests.search.reference import json_values, matches


def _is_scalar(value) -> bool:
    return isinstance(value, (str, int, float, bool))


def _grouped(statistic: Statistic, rows: list[dict]) -> dict[str, list[dict]]:
    if statistic.slice_id is None:
        return {ALL: rows}
    groups: dict[str, list[dict]] = {name: [] for name in (*SPLIT_NAMES, UNASSIGNED)}
    for row in rows:
        splits = row.get("splits", {})
        if statistic.slice_id in splits:
            groups[splits[statistic.slice_id] or UNASSIGNED].append(row)
    return groups


def _objects(statistic: Statistic, row: dict) -> list[dict]:
    return [
        item for item in row[f"{statistic.scope}s"] if statistic.model is None or item.get("model") == statistic.model
    ]


def _count(statistic: Statistic, rows: list[dict]) -> dict:
    counts: dict = {}
    for row in rows:
        in_row = set()
        for item in _objects(statistic, row):
            if statistic.path in (("class",), ("model",)):
                keys = {value_key(item[statistic.path[0]])}
            else:
                keys = {value_key(v) for v in json_values(item["attributes"], statistic.path[1:]) if _is_scalar(v)}
            for key in keys:
                if statistic.count == "objects":
                    counts[key] = counts.get(key, 0) + 1
            in_row |= keys
        if statistic.count == "images":
            for key in in_row:
                counts[key] = counts.get(key, 0) + 1
    return counts


def _values(statistic: Statistic, row: dict) -> list[list[float]]:
    """Per counted thing (an object, or the row), its numbers."""
    if statistic.scope != "row":
        column = statistic.path[0]
        return [[float(item[column])] for item in _objects(statistic, row) if item[column] is not None]
    if statistic.path[0] == "metadata":
        numbers = [
            float(v)
            for v in json_values(row["metadata"], statistic.path[1:])
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        return [numbers] if numbers else []
    value = row[statistic.path[0]]
    return [] if value is None else [[float(value)]]


def statistics(query: ValidQuery | None, rows: list[dict], wanted: tuple[Statistic, ...]) -> list[dict]:
    matching = [row for row in rows if query is None or matches(query, row)]
    results = []
    for statistic in wanted:
        groups = _grouped(statistic, matching)
        if statistic.kind == "count":
            results.append(
                statistic_result(
                    statistic,
                    [
                        count_group(name, _count(statistic, members), statistic.limit)
                        for name, members in groups.items()
                    ],
                )
            )
            continue
        things = {name: [v for row in members for v in _values(statistic, row)] for name, members in groups.items()}
        bounds = statistic.range
        if bounds is None:
            every = [number for numbers in things.values() for values in numbers for number in values]
            bounds = (min(every), max(every)) if every else None
        answer = []
        for name, numbers in things.items():
            counts: dict = {}
            if bounds is not None:
                edges = bin_edges(*bounds, statistic.bins)
                for values in numbers:
                    for index in {bin_of(value, edges) for value in values}:
                        counts[index] = counts.get(index, 0) + 1
            answer.append(histogram_group(name, statistic, bounds, counts))
        results.append(statistic_result(statistic, answer))
    return results
