"""Atomic checkpoints that load with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
import random
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "list_checkpoints", "set_aside_newer",
           "rng_state", "set_rng_state", "DivergenceError"]

_NAME = re.compile(r"^step-(\d+)\.pt$")


class DivergenceError(RuntimeError):
    """Training diverged and the divergence guard has no checkpoint left to restore."""


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
    for stale in folder.glob(".step-*.pt.tmp"):  # left by a process killed while writing
        stale.unlink(missing_ok=True)
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
    """Loads a checkpoint with ``weights_only=True``; a clear error names an unreadable or corrupt file.

    ``torch.load`` reads a checkpoint's archive without checking it, so a flipped bit in a tensor's bytes would
    load as a wrong value: every entry's CRC-32 (which ``torch.save`` writes) is verified first (~1 ms per 4 MB).
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad is not None:
                raise RuntimeError(f"the CRC-32 of its entry {bad!r} does not match its bytes")
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise RuntimeError(f"checkpoint {path} is unreadable or corrupt: {err}") from err


def latest_checkpoint(folder: Path, map_location: str | torch.device = "cpu", max_step: int | None = None,
                      warn: bool = True) -> tuple[Path, dict] | None:
    """The newest readable checkpoint in ``folder`` (falling back past corrupt ones, with a warning unless
    ``warn`` is false: in a multi-process run only rank 0 says it), of step at most ``max_step`` if given."""
    for path in reversed(list_checkpoints(folder)):
        if max_step is not None and int(_NAME.match(path.name).group(1)) > max_step:
            continue
        try:
            return path, load_checkpoint(path, map_location)
        except RuntimeError as err:
            if warn:
                warnings.warn(f"{err}; trying an older checkpoint", stacklevel=2)
    return None


def set_aside_newer(folder: Path, step: int) -> list[Path]:
    """Renames the checkpoints of ``folder`` newer than ``step`` to ``step-XXXXXXXX.pt.corrupt``.

    A run resumed from ``step`` skipped them as unreadable; left in place they would outrank the resumed run's
    own checkpoints when the oldest are deleted, so its new saves would be deleted first. They are kept (renamed,
    not deleted) for inspection. Returns the new paths."""
    moved = []
    for path in list_checkpoints(folder):
        if int(_NAME.match(path.name).group(1)) > step:
            target = path.with_name(path.name + ".corrupt")
            os.replace(path, target)
            moved.append(target)
    return moved


def rng_state(generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Every random state a training process draws from -- its ``generator``, torch's global CPU (and CUDA)
    generators, Python's ``random`` and NumPy's global generator -- as tensors and plain values, so that it
    loads with ``weights_only=True``."""
    import numpy as np

    version, py_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state(),
             "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": gauss},
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)}}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator, device: torch.device) -> None:
    """Restores what :func:`rng_state` saved (parts missing from older checkpoints are left alone)."""
    import numpy as np

    generator.set_state(state["generator"].cpu())
    torch.set_rng_state(state["torch"].cpu())
    if "python" in state:
        py = state["python"]
        random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
