"""Checkpoints that identify themselves as ours, and refuse anything else with a clear error.

Two kinds of file:

- **model weights** (`*.safetensors`): the state dict of a trained model, with a safetensors
  metadata header `{"format": "mertk.checkpoint.v1", "model": <model name>, "config": <json>}`.
  Loading needs the header and the expected model name; the config rebuilds the module.
- **training state** (`*.pt`): weights, optimizer and RNG state of an unfinished run, written with
  `torch.save` and read with `torch.load(weights_only=True)` (tensors, numbers, strings, lists and
  dicts only: no code runs on load). It carries `format = "mertk.training_state.v1"` and a `kind`.

Same weights -> same bytes, for both kinds: the safetensors header is re-serialised with sorted
keys (the safetensors writer keeps its metadata in a hash map, whose order changes from process to
process), and a training state is serialised in memory (torch names the zip archive inside after
the file it writes to, which would carry the temporary file's process id).
"""
from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path
from typing import Any

import torch

from mertk.errors import InputError

MODEL_FORMAT = "mertk.checkpoint.v1"
STATE_FORMAT = "mertk.training_state.v1"


class ForeignCheckpointError(InputError):
    """A checkpoint file that mertk did not write (or wrote for another model)."""


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def save_model_weights(path: Path | str, state_dict: dict[str, torch.Tensor], *, model: str, config: dict[str, Any]) -> Path:
    """Write `state_dict` as safetensors with the mertk header; atomic (temporary file, then rename)."""
    from safetensors.torch import save

    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in state_dict.items()}
    metadata = {"format": MODEL_FORMAT, "model": model, "config": json.dumps(config, sort_keys=True)}
    return _write_atomic(Path(path), _sorted_header(save(tensors, metadata=metadata)))


def _sorted_header(data: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted (padded to 8 bytes, as the format asks)."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + length :]


def _write_atomic(path: Path, data: bytes) -> Path:
    temporary = _atomic_target(path)
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def load_model_weights(path: Path | str, *, model: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read weights written by `save_model_weights` for `model`; return (state_dict, config).

    Raises ForeignCheckpointError naming the file when it is not a safetensors file, lacks the
    mertk header, or holds another model.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise ForeignCheckpointError(f"{path}: not a mertk checkpoint (not a readable safetensors file: {error})") from None
    if metadata.get("format") != MODEL_FORMAT:
        raise ForeignCheckpointError(
            f"{path}: not a mertk checkpoint (its header has format={metadata.get('format')!r}, expected {MODEL_FORMAT!r})"
        )
    if metadata.get("model") != model:
        raise ForeignCheckpointError(f"{path}: a mertk checkpoint of model {metadata.get('model')!r}, not {model!r}")
    try:
        config = json.loads(metadata.get("config", "{}"))
    except json.JSONDecodeError:
        raise ForeignCheckpointError(f"{path}: mertk checkpoint header has an unreadable config") from None
    return tensors, config


def save_training_state(path: Path | str, state: dict[str, Any], *, kind: str) -> Path:
    """Write an unfinished run's state (tensors, numbers, strings, lists, dicts) atomically."""
    buffer = io.BytesIO()
    torch.save({"format": STATE_FORMAT, "kind": kind, **state}, buffer)
    return _write_atomic(Path(path), buffer.getvalue())


def load_training_state(path: Path | str, *, kind: str) -> dict[str, Any]:
    """Read a training state with `weights_only=True`; refuse files that are not ours or not `kind`."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to unpickle under weights_only means: not a file we wrote
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ForeignCheckpointError(
            f"{path}: not a mertk training checkpoint (it cannot be read with weights_only=True: {first_line})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ForeignCheckpointError(f"{path}: not a mertk training checkpoint (format {found!r}, expected {STATE_FORMAT!r})")
    if state.get("kind") != kind:
        raise ForeignCheckpointError(f"{path}: a mertk training checkpoint of {state.get('kind')!r}, not {kind!r}")
    return state
