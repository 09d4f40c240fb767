"""What fields hand to the renderer: densities and colours in at least float32, also under autocast."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["at_least_float32"]


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32 if it is in a lower precision (as under bf16/fp16 autocast), else unchanged: output
    activations (exp, softplus, sigmoid) and rendering's transmittance products need float32's range."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
