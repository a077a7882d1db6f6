"""Statistics over a search's matches (docs/query-language.md, "Statistics"): what is asked, the checks that make a
bad one a 400 naming it, and the assembly every engine (and the tests' reference) shares, so that the engines differ
only in how they count.

A statistic is a count of values (object classes, object attribute values) or a histogram of a numeric field
(object boxes, areas and scores, image sizes, numeric metadata). An engine hands back raw counts per group ("all",
or each split of a slice): for counts, value key -> count; for histograms, the range and bin index -> count, with
BELOW and ABOVE for values outside the range. Bins are cut at edges computed once, here (`bin_edges`), and a value
falls in a bin by comparisons with them (low <= v < next edge; the last bin closed), never by arithmetic on the value:
PostgreSQL's width_bucket over the edges, Elasticsearch's range aggregation and the reference's bisect then agree on
every value, edges included.
"""

import bisect
import math
from dataclasses import dataclass

from mlops.exceptions import ApplicationError

OBJECT_KINDS = ("label", "prediction")
OBJECT_NUMBERS = ("x", "y", "w", "h", "area")
ROW_NUMBERS = ("width", "height")
# slices.models.Split's labels by value (search sits below slices and reads the member table through SQL).
SPLIT_NAMES = ("train", "validation", "test")
UNASSIGNED = "unassigned"
ALL = "all"
BELOW, ABOVE = -1, -2
# How a value's JSON type orders ties between values of one count: booleans, then numbers, then strings.
_TYPE_ORDER = {"boolean": 0, "number": 1, "string": 2}


@dataclass(frozen=True)
class Statistic:
    """One statistic as asked (apis.py checks the shapes; `statistic_check` the meaning)."""

    name: str
    kind: str  # "count" or "histogram"
    field: str
    count: str = "objects"  # count: "objects" or "images" (datarows holding the value)
    model: str | None = None  # prediction fields: only this model version's predictions ('name@version')
    limit: int = 100  # count: values listed, most first; the rest are summed in `other`
    bins: int = 20  # histogram
    range: tuple[float, float] | None = None  # histogram: [low, high]; absent: the values' min and max
    slice_id: int | None = None  # only this slice's members, grouped by their split

    @property
    def scope(self) -> str:
        """label, prediction or row: what one counted value belongs to."""
        head = self.field.split(".", 1)[0]
        return head if head in OBJECT_KINDS else "row"

    @property
    def path(self) -> tuple[str, ...]:
        """The field within its scope: ("class",), ("attributes", *keys), ("area",), ("width",), ("metadata", *keys)."""
        parts = tuple(self.field.split("."))
        return parts[1:] if self.scope != "row" else parts

    def groups(self) -> tuple[str, ...]:
        return (*SPLIT_NAMES, UNASSIGNED) if self.slice_id is not None else (ALL,)


def _field_error(index: int, key: str, message: str, extra: dict | None = None) -> ApplicationError:
    return ApplicationError(message, {**(extra or {}), "fields": {f"statistics[{index}].{key}": [message]}})


def statistic_check(statistic: Statistic, index: int, catalog: dict[str, str]) -> None:
    """A 400 naming statistics[index].<key> for a field that cannot be counted or binned, or options that do not
    go with it. Limits (bins, values) are checked by the caller, which knows the settings."""
    field, scope, path = statistic.field, statistic.scope, statistic.path
    named = path == ("class",) or (scope == "prediction" and path == ("model",))
    countable = scope != "row" and (named or (len(path) > 1 and path[0] == "attributes" and all(path)))
    numeric_object = scope != "row" and len(path) == 1 and path[0] in (*OBJECT_NUMBERS, "score")
    numeric_object = numeric_object and (path[0] != "score" or scope == "prediction")
    metadata = scope == "row" and len(path) > 1 and path[0] == "metadata" and all(path)
    if statistic.kind == "count":
        if statistic.range is not None:
            raise _field_error(index, "range", "range goes with kind=histogram.")
        if not countable:
            raise _field_error(
                index,
                "field",
                f"Cannot count the values of {field!r}: use label.class, prediction.class, prediction.model, "
                f"label.attributes.<path> or prediction.attributes.<path> (numbers go in a histogram).",
            )
    else:
        binnable = numeric_object or (scope == "row" and path[0] in ROW_NUMBERS and len(path) == 1)
        if metadata:
            metadata_type = catalog.get(".".join(path[1:]))
            if metadata_type is None:
                raise _field_error(index, "field", f"Cannot bin {field!r}: no such metadata path in the project.")
            if metadata_type != "number":
                raise _field_error(
                    index, "field", f"Cannot bin {field!r}: it holds {metadata_type} values; a histogram needs numbers."
                )
            binnable = True
        if not binnable:
            raise _field_error(
                index,
                "field",
                f"Cannot bin {field!r}: a histogram takes a number: label.<x|y|w|h|area>, "
                f"prediction.<x|y|w|h|area|score>, width, height or a number metadata.<path>.",
            )
        if statistic.count != "objects":
            raise _field_error(index, "count", "count=images goes with kind=count; a histogram counts values.")
        if statistic.range is not None:
            low, high = statistic.range
            if not (math.isfinite(high - low) and low < high):
                raise _field_error(
                    index, "range", "range is [low, high] with low < high, finite numbers not more than 1e308 apart."
                )
    if statistic.model is not None and scope != "prediction":
        raise _field_error(index, "model", "model goes with prediction fields only.")


def value_key(value) -> tuple[str, object]:
    """A counted value as (JSON type, value): true and 1 stay apart, 1 and 1.0 are one number."""
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, (int, float)):
        return ("number", int(value) if float(value).is_integer() else float(value))
    return ("string", value)


def count_group(split: str, counts: dict[tuple[str, object], int], limit: int) -> dict:
    """One group of a count: its values, most first (ties: booleans, numbers, strings, each in order; strings by
    code point), the first `limit` listed and the rest summed."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], _TYPE_ORDER[item[0][0]], item[0][1]))
    listed, rest = ranked[:limit], ranked[limit:]
    return {
        "split": split,
        "values": [{"value": key[1], "count": count} for key, count in listed],
        "other": {"values": len(rest), "count": sum(count for _, count in rest)},
    }


def bin_edges(low: float, high: float, bins: int) -> list[float]:
    """The thresholds of the bins: bin i holds edges[i] <= v < edges[i + 1]; the last threshold is the double just
    above `high`, so the last bin holds `high`. One bin when low == high (a computed range over one value)."""
    bins = 1 if low == high else bins
    width = (high - low) / bins
    return [low + i * width for i in range(bins)] + [math.nextafter(high, math.inf)]


def bin_of(value: float, edges: list[float]) -> int:
    """The bin of a value, BELOW or ABOVE the range: what width_bucket(value, edges) - 1 says."""
    index = bisect.bisect_right(edges, value)
    if index == 0:
        return BELOW
    return ABOVE if index == len(edges) else index - 1


def histogram_group(split: str, statistic: Statistic, bounds: tuple[float, float] | None, counts: dict) -> dict:
    """One group of a histogram from bin index -> count (BELOW, ABOVE among them); no bounds: no values."""
    if bounds is None:
        return {"split": split, "range": None, "buckets": [], "below": 0, "above": 0}
    low, high = bounds
    edges = bin_edges(low, high, statistic.bins)
    buckets = [
        {"low": edges[i], "high": high if i == len(edges) - 2 else edges[i + 1], "count": counts.get(i, 0)}
        for i in range(len(edges) - 1)
    ]
    return {
        "split": split,
        "range": [low, high],
        "buckets": buckets,
        "below": counts.get(BELOW, 0),
        "above": counts.get(ABOVE, 0),
    }


def statistic_result(statistic: Statistic, groups: list[dict]) -> dict:
    counted = {"count": statistic.count} if statistic.kind == "count" else {}
    return {"name": statistic.name, "kind": statistic.kind, "field": statistic.field, **counted, "groups": groups}


def too_many_values(statistic: Statistic, cap: int) -> ApplicationError:
    return ApplicationError(
        f"{statistic.field!r} has more than {cap} distinct values among the matches "
        f"(SEARCH_STATISTICS_MAX_VALUES): narrow the query or count a coarser field.",
        {"limit": "SEARCH_STATISTICS_MAX_VALUES", "max": cap, "statistic": statistic.name},
    )
