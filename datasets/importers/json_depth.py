"""How deep JSON text nests, measured on its bytes before any parser recurses into it.

Parsers recurse per level: msgspec raises RecursionError near 1000 levels, Python walks of the decoded value
sooner, and ijson's item builder needs memory in the square of the depth (30,000 levels: 2 GB). So the depth
is measured first, at C speed: strings (and their escapes) are cut out, the brackets left become +1/-1 steps,
and numpy sums them. Malformed text is not judged here; the parser that reads it next says what is wrong.
"""

import numpy as np

_STEPS = bytes.maketrans(b"{[}]", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"{}[]")))


class JsonDepth:
    """The deepest nesting seen so far in a JSON text fed in chunks (`feed`), however the chunks cut it."""

    def __init__(self):
        self.depth = 0
        self.deepest = 0
        self._in_string = False
        self._backslash = b""

    def feed(self, chunk: bytes) -> int:
        data = self._backslash + chunk
        # An odd run of backslashes at the end escapes the next chunk's first byte: keep one for it.
        trailing = len(data) - len(data.rstrip(b"\\"))
        self._backslash = b"\\" if trailing % 2 else b""
        if trailing % 2:
            data = data[:-1]
        # Escapes only occur in strings; without them every quote opens or closes one.
        parts = data.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')
        outside = b"".join(parts[1 if self._in_string else 0 :: 2])
        self._in_string ^= (len(parts) - 1) % 2 == 1
        steps = outside.translate(_STEPS, _NOT_BRACKETS)
        if steps:
            levels = np.frombuffer(steps, dtype=np.int8).cumsum(dtype=np.int64)
            self.deepest = max(self.deepest, self.depth + int(levels.max()))
            self.depth += int(levels[-1])
        return self.deepest


def exceeds_depth(text: bytes | str, limit: int) -> bool:
    """Whether one JSON text nests deeper than `limit`; a count decides at once for most texts."""
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return raw.count(b"{") + raw.count(b"[") > limit and JsonDepth().feed(raw) > limit


def too_deep_message(limit: int) -> str:
    return f"nests deeper than {limit} levels (the limit is IMPORT_MAX_JSON_DEPTH)"
