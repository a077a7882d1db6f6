"""The words of a text as MATCH sees them, for the engines that split text themselves (Elasticsearch's query)."""

import re

_WORD = re.compile(r"[^\W_]+")


def text_words(text: str) -> set[str]:
    """Words as the `simple` text search configuration sees plain words: runs of letters and digits, lower-cased."""
    return set(_WORD.findall(text.lower()))
