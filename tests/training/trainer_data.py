"""Tiny image datasets written with PIL for the trainers library tests: each class is one dominant colour
under per-pixel noise, so a few optimiser steps separate them."""

import http.server
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from PIL import Image

from trainers.interface import Example

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
CLASSES = list(COLOURS)


def write_colour_images(
    folder: Path, per_class: int, *, size: int = 20, seed: int = 0, start_key: int = 1
) -> list[Example]:
    """JPEG files of noisy solid colours, `per_class` of each class in turn; returns them as Examples."""
    folder.mkdir(parents=True, exist_ok=True)
    noise = random.Random(seed)
    examples = []
    for number in range(per_class * len(CLASSES)):
        target = number % len(CLASSES)
        base = COLOURS[CLASSES[target]]
        pixels = bytes(
            max(0, min(255, channel + noise.randint(-40, 40))) for _ in range(size * size) for channel in base
        )
        path = folder / f"{start_key + number}.jpg"
        Image.frombytes("RGB", (size, size), pixels).save(path, quality=90)
        examples.append(Example(key=start_key + number, uri=str(path), target=target))
    return examples


@contextmanager
def serving(folder: Path) -> Iterator[str]:
    """A real HTTP server on loopback serving `folder`; yields its base URL."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *arguments: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
