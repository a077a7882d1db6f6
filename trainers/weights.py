"""User-supplied starting weights (fine-tuning): tensors only, read through the caller's opener, never from a hub.

Two formats: safetensors (a JSON header and raw tensor bytes, nothing to run) and torch's zip checkpoints,
unpickled with weights_only=True, which lets through tensors and plain containers only. `sniff_weights` needs
no torch, so a web process can refuse a file that is neither before a run is queued.
"""

import io
import json
import pickle
import struct
from typing import TYPE_CHECKING, BinaryIO

from trainers.interface import ConfigError, Opener

if TYPE_CHECKING:
    import torch

# A safetensors header is small JSON (names, dtypes, shapes, offsets); a huge one is not a weights file.
MAX_HEADER_BYTES = 100 * 1024 * 1024
ZIP_MAGIC = b"PK\x03\x04"


class WeightsError(ValueError):
    """Weights that cannot be used: not tensors only, or not the architecture's tensors."""


def check_weights_uri(value: object) -> None:
    """The config's `init_weights`: null or a non-empty URI string; where it may point is the opener's rule."""
    if value is not None and not (isinstance(value, str) and value.strip() and len(value) <= 2000):
        raise ConfigError("init_weights", f"must be a URI (a path, file:// or s3://) or null, not {value!r}")


def sniff_weights(stream: BinaryIO) -> str:
    """'safetensors' or 'torch' from the first bytes of `stream`; anything else is a WeightsError. A legacy
    (non-zip) torch pickle is refused here too: only a zip checkpoint's weights_only loader is trusted."""
    head = stream.read(8)
    if head[:4] == ZIP_MAGIC:
        return "torch"
    if len(head) == 8:
        (length,) = struct.unpack("<Q", head)
        if 2 <= length <= MAX_HEADER_BYTES:
            try:
                header = json.loads(stream.read(length))
            except (UnicodeDecodeError, json.JSONDecodeError):
                header = None
            if isinstance(header, dict):
                return "safetensors"
    raise WeightsError(
        "not a safetensors file or a torch zip checkpoint of tensors (pickled objects, which could "
        "run code, are refused)"
    )


def load_weights(uri: str, opener: Opener) -> dict:
    """The tensors stored at `uri`, on the CPU."""
    import torch

    with opener(uri) as stream:
        data = stream.read()
    kind = sniff_weights(io.BytesIO(data))
    if kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            return load(data)
        except SafetensorError as error:
            raise WeightsError(f"not a valid safetensors file: {error}") from error
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise WeightsError("it holds more than tensors (a pickled object that could run code)") from error
    except RuntimeError as error:
        raise WeightsError(f"not a readable torch checkpoint: {error}") from error
    if not (isinstance(state, dict) and all(isinstance(value, torch.Tensor) for value in state.values())):
        raise WeightsError("a torch checkpoint must hold one mapping of names to tensors (a state_dict)")
    return state


def load_into(network: "torch.nn.Module", uri: str, opener: Opener) -> None:
    """Load the tensors at `uri` into `network`, which they must fit exactly: every name, every shape."""
    try:
        state = load_weights(uri, opener)
    except WeightsError as error:
        raise WeightsError(f"init_weights {uri}: {error}") from error
    expected = network.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    mismatched = [
        f"{name} {tuple(state[name].shape)} (the model's is {tuple(tensor.shape)})"
        for name, tensor in expected.items()
        if name in state and state[name].shape != tensor.shape
    ]
    problems = [
        f"{label} {len(names)}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
        for label, names in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
        if names
    ]
    if problems:
        raise WeightsError(f"init_weights {uri} does not fit this architecture and class count: {'; '.join(problems)}")
    network.load_state_dict(state)
