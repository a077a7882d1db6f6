"""The search query language: text -> typed tree -> checked against the field catalog -> compiled by an engine.

Nothing here knows about HTTP or Django views; see docs/query-language.md for the language itself.
"""

from search.ql.errors import QueryError
from search.ql.parser import parse
from search.ql.validation import validate

__all__ = ["QueryError", "parse", "validate"]
