"""Mixed precision: ``--precision fp32 | fp16 | bf16``.

Parameters and optimiser state stay float32; ``bf16`` and ``fp16`` run the forward pass and the loss under
``torch.autocast`` (matrix products in the lower precision). Fields return float32 colours and densities, so
volume rendering (transmittance scans, weights) and the loss stay float32; the hash grid's table lookups are
float32 too. ``fp16`` needs a gradient scaler (its range is small), and is offered on CUDA only: CPUs have no
fast float16 arithmetic, use ``bf16`` there.
"""

from __future__ import annotations

import torch

__all__ = ["PRECISIONS", "check_precision", "autocast", "grad_scaler"]

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(precision: str, device: torch.device) -> None:
    """Raises ``ValueError`` naming ``--precision`` when ``device`` cannot train in ``precision``."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision!r}: choose fp32, fp16 or bf16")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"--precision fp16 needs a CUDA device (training on {device.type}); on a CPU use "
                         "--precision bf16")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("--precision bf16: this GPU has no bfloat16 support; use --precision fp16")


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context for the forward pass and the loss (disabled for fp32)."""
    return torch.autocast(device.type, dtype=PRECISIONS[precision], enabled=precision != "fp32")


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for fp16 only (with it disabled, ``scale``, ``unscale_``, ``step`` and
    ``update`` reduce to the plain backward and optimiser step)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
