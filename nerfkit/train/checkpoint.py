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

__all__ = ["save_checkpoint", "load_checkpoint", "verify_archive", "latest_checkpoint", "list_checkpoints",
           "set_aside_newer", "rng_state", "set_rng_state", "DivergenceError", "CorruptCheckpoint"]

_NAME = re.compile(r"^step-(\d+)\.pt$")


class DivergenceError(RuntimeError):
    """Training diverged and the divergence guard has no checkpoint left to restore."""


class CorruptCheckpoint(RuntimeError):
    """A checkpoint whose bytes are damaged: cut short, not an archive, or an entry that fails its CRC-32 (as
    opposed to one that could not be read this time: an I/O error, or no memory to load it into)."""


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


def verify_archive(path: Path) -> None:
    """Raises :class:`CorruptCheckpoint` unless ``path`` is a complete archive whose entries match their CRC-32s.

    ``torch.load`` reads a checkpoint's archive without checking it, so a flipped bit in a tensor's bytes would
    load as a wrong value; ``torch.save`` writes each entry's CRC-32 (~1 ms per 4 MB to verify), except with
    ``torch.serialization.set_crc32_options(False)``, whose entries (stored CRC 0) are not checked."""
    if not zipfile.is_zipfile(path):
        raise CorruptCheckpoint("not a complete archive (cut short?)")
    with zipfile.ZipFile(path) as archive:
        for entry in archive.infolist():
            if entry.CRC == 0:
                continue
            try:
                with archive.open(entry) as stream:  # the CRC-32 is compared when the stream ends
                    while stream.read(1 << 24):
                        pass
            except zipfile.BadZipFile as err:
                raise CorruptCheckpoint(f"the CRC-32 of its entry {entry.filename!r} does not match its bytes "
                                        f"({err})") from err


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Loads a checkpoint with ``weights_only=True`` after :func:`verify_archive`; a clear error names the file:
    :class:`CorruptCheckpoint` when its bytes are damaged, a ``RuntimeError`` when it could not be read now (an
    I/O error, out of memory)."""
    transient = (OSError, getattr(torch, "OutOfMemoryError", MemoryError), MemoryError)
    try:
        verify_archive(path)
        return torch.load(path, map_location=map_location, weights_only=True)
    except transient as err:
        raise RuntimeError(f"checkpoint {path} is unreadable or corrupt: it could not be read now "
                           f"({type(err).__name__}: {err})") from err
    except Exception as err:  # damaged bytes, whatever part of the reading noticed
        raise CorruptCheckpoint(f"checkpoint {path} is unreadable or corrupt: {err}") from err


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
    """Renames the damaged checkpoints of ``folder`` newer than ``step`` (those :func:`verify_archive` rejects) to
    ``step-XXXXXXXX.pt.corrupt`` (or ``.corrupt.N`` beside an earlier one of that name).

    A run resumed from ``step`` skipped them; left in place they would outrank the resumed run's own checkpoints
    when the oldest are deleted, so its new saves would be deleted first. They are kept (renamed, not deleted)
    for inspection. A newer checkpoint that only failed to load this time (an I/O error) stays. Returns the new
    paths."""
    moved = []
    for path in list_checkpoints(folder):
        if int(_NAME.match(path.name).group(1)) <= step:
            continue
        try:
            verify_archive(path)
            continue
        except CorruptCheckpoint:
            pass
        except OSError:
            continue
        target, n = path.with_name(path.name + ".corrupt"), 1
        while target.exists():
            target, n = path.with_name(f"{path.name}.corrupt.{n}"), n + 1
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
