"""PostgreSQL COPY text format, written by hand because it is the hot loop of every import."""

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NULL = "\\N"


def text(value: str | None) -> str:
    if value is None:
        return NULL
    # Most values need no escaping; four substring tests are much cheaper than a translate.
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_ESCAPES)
    return value


def number(value: float | int | None) -> str:
    return NULL if value is None else repr(value)


def text_array(values: list[str]) -> str:
    """A text[] literal: every element quoted, so commas, braces and spaces need no special casing."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return text("{" + ",".join(quoted) + "}")
