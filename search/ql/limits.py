"""The size limits of a query (docs/query-language.md): what one query may cost to parse, check and run.

A deployment sets them from its settings (the name of each is in SETTINGS, and every limit error names it);
the defaults are the language's own.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class QueryLimits:
    max_query_chars: int = 10_000
    max_depth: int = 32  # levels of AND, OR, NOT and label(...)/prediction(...); parentheses alone do not count
    max_in_values: int = 1_000
    max_pattern_length: int = 200  # characters of a LIKE pattern or a MATCH text
    max_pattern_wildcards: int = 10  # unescaped % and _ of a LIKE pattern


DEFAULT_LIMITS = QueryLimits()
# The deployment setting behind each limit (mlops/settings.py), named in its errors.
SETTINGS = {
    "max_query_chars": "SEARCH_MAX_QUERY_CHARS",
    "max_depth": "SEARCH_MAX_DEPTH",
    "max_in_values": "SEARCH_MAX_IN_VALUES",
    "max_pattern_length": "SEARCH_MAX_PATTERN_LENGTH",
    "max_pattern_wildcards": "SEARCH_MAX_PATTERN_WILDCARDS",
}


def like_wildcards(pattern: str) -> int:
    """The % and _ of a LIKE pattern that are not escaped by a backslash."""
    count, escaped = 0, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "%_":
            count += 1
    return count
