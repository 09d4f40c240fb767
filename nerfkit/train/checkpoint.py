"""Atomic checkpoints that load with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "list_checkpoints"]

_NAME = re.compile(r"^step-(\d+)\.pt$")


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints ``step-XXXXXXXX.pt`` in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Writes ``state`` to ``folder/step-XXXXXXXX.pt`` atomically (temporary file, fsync, rename), then deletes
    all but the ``keep`` newest checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:08d}.pt"
    tmp = folder / f".{path.name}.tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Loads a checkpoint with ``weights_only=True``; a clear error names an unreadable file."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise RuntimeError(f"checkpoint {path} is unreadable or corrupt: {err}") from err


def latest_checkpoint(folder: Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict] | None:
    """The newest readable checkpoint in ``folder`` (falling back past corrupt ones, with a warning)."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path, map_location)
        except RuntimeError as err:
            warnings.warn(f"{err}; trying an older checkpoint", stacklevel=2)
    return None
