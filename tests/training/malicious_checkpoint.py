"""A weights file that carries code: unpickling it creates a marker file, as a real payload would run a shell."""

from pathlib import Path

import torch


class Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def write_malicious_checkpoint(path: Path, *, marker: Path, weights: dict | None = None) -> None:
    """`weights` (the real tensors, so the file looks right) plus the payload, saved as torch.save saves weights."""
    torch.save({**(weights or {}), "payload": Payload(marker)}, path)
