"""Fused kernels (Triton) for the hot paths, and the choice between them and the torch references.

Each kernel lives beside the torch reference it must match:

* :mod:`nerfkit.kernels.scan_triton` -- segmented sums/products, reference :mod:`nerfkit.render.scan`;
* :mod:`nerfkit.kernels.volrend_triton` -- weights/transmittance from density, reference
  :mod:`nerfkit.render.volrend`;
* :mod:`nerfkit.kernels.grid_triton` -- marching rays through occupancy grids, reference
  :func:`nerfkit.sampling.grid.traverse_grids`;
* :mod:`nerfkit.kernels.hashgrid_triton` -- multiresolution hash encoding, reference
  :mod:`nerfkit.encoders.hashgrid`.

Which path a call takes (:func:`use_triton`), from the environment variable ``NERFKIT_KERNELS``:

* unset / ``auto``: CUDA tensors use the Triton kernel when Triton is importable, everything else the reference;
* ``torch``: always the reference (to debug);
* ``triton``: always the Triton kernel, also for CPU tensors -- which only works under Triton's interpreter
  (``TRITON_INTERPRET=1`` set before the kernels are first imported); that is how the tests run them on CPU.

Triton is imported lazily: ``import nerfkit`` never needs it, and the kernel modules are imported only by a call
that takes the Triton path.
"""

from __future__ import annotations

import os
from functools import lru_cache

from torch import Tensor

__all__ = ["ENV_VAR", "kernel_mode", "triton_available", "triton_interpreting", "use_triton", "check_launchable"]

ENV_VAR = "NERFKIT_KERNELS"
_MODES = ("auto", "torch", "triton")


@lru_cache(maxsize=None)
def triton_available() -> bool:
    """Whether ``triton`` (and ``triton.language``) can be imported here."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # ImportError, or a broken install failing on import
        return False
    return True


def kernel_mode() -> str:
    """The requested backend: ``"auto"`` (default), ``"torch"`` or ``"triton"`` (from ``NERFKIT_KERNELS``)."""
    mode = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if mode not in _MODES:
        raise ValueError(f"{ENV_VAR} must be one of {', '.join(_MODES)}; got {os.environ[ENV_VAR]!r}")
    return mode


def triton_interpreting() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for Triton's CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes", "y")


def use_triton(*tensors: Tensor) -> bool:
    """Whether a call on ``tensors`` takes the Triton path (see the module docstring).

    Only floating-point inputs are handled by the kernels; anything else always takes the reference.
    Raises ``RuntimeError`` when ``NERFKIT_KERNELS=triton`` cannot be honoured.
    """
    mode = kernel_mode()
    if mode == "torch" or not all(t.is_floating_point() for t in tensors):
        return False
    on_cuda = all(t.is_cuda for t in tensors)
    if mode == "auto":
        return on_cuda and triton_available()
    if not triton_available():
        raise RuntimeError(f"{ENV_VAR}=triton, but triton cannot be imported")
    if not on_cuda and not triton_interpreting():
        raise RuntimeError(f"{ENV_VAR}=triton with CPU tensors needs Triton's interpreter: set TRITON_INTERPRET=1 "
                           "before nerfkit's kernels are first imported")
    return True


def check_launchable(kernel: object, tensor: Tensor) -> None:
    """Raises a clear error instead of a Triton crash when a compiled (non-interpreted) kernel gets CPU tensors."""
    if not tensor.is_cuda and type(kernel).__name__ != "InterpretedFunction":
        raise RuntimeError("Triton kernels need CUDA tensors, or Triton's interpreter for CPU tensors; "
                           "TRITON_INTERPRET=1 must be set before nerfkit.kernels' Triton modules are imported")
