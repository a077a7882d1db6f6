"""The typed query tree. Every node carries the 1-based line and column where its text starts."""

from dataclasses import dataclass
from typing import Union

COMPARISON_OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
OBJECT_KINDS = ("label", "prediction", "evaluation")


@dataclass(frozen=True)
class Pos:
    line: int
    column: int


@dataclass(frozen=True)
class Field:
    path: tuple[str, ...]
    pos: Pos


@dataclass(frozen=True)
class Value:
    value: str | int | float | bool
    pos: Pos


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str
    value: Value
    pos: Pos


@dataclass(frozen=True)
class InList:
    field: Field
    values: tuple[Value, ...]
    pos: Pos


@dataclass(frozen=True)
class Between:
    field: Field
    low: Value
    high: Value
    pos: Pos


@dataclass(frozen=True)
class Like:
    field: Field
    pattern: Value
    pos: Pos


@dataclass(frozen=True)
class Exists:
    """`f IS NOT NULL` / `EXISTS(f)`; `f IS NULL` parses as NOT of it."""

    field: Field
    pos: Pos


@dataclass(frozen=True)
class Under:
    field: Field
    value: Value
    pos: Pos


@dataclass(frozen=True)
class Match:
    field: Field
    text: Value
    pos: Pos


@dataclass(frozen=True)
class InSlice:
    name: Value
    pos: Pos


@dataclass(frozen=True)
class SliceMembership:
    """`IN SLICE 'name'` of an ids or frozen slice, resolved by validation (a live slice's query is inlined instead)."""

    slice_id: int
    pos: Pos


@dataclass(frozen=True)
class ObjectMatch:
    """`label(cond)`: some label of the datarow satisfies every part of cond (the same object)."""

    kind: str
    condition: "Expr"
    pos: Pos


@dataclass(frozen=True)
class ObjectCount:
    """`COUNT(label WHERE cond) op n`: how many of the datarow's labels satisfy cond, compared to n."""

    kind: str
    condition: Union["Expr", None]
    op: str
    count: Value
    pos: Pos


@dataclass(frozen=True)
class And:
    items: tuple["Expr", ...]
    pos: Pos


@dataclass(frozen=True)
class Or:
    items: tuple["Expr", ...]
    pos: Pos


@dataclass(frozen=True)
class Not:
    item: "Expr"
    pos: Pos


Predicate = (
    Compare | InList | Between | Like | Exists | Under | Match | InSlice | SliceMembership | ObjectMatch | ObjectCount
)
Expr = And | Or | Not | Predicate


def field_name(field: Field) -> str:
    return ".".join(field.path)
