"""Mixed precision: ``--precision fp32 | fp16 | bf16``.

Parameters and optimiser state stay float32; ``bf16`` and ``fp16`` run the forward pass and the loss under
``torch.autocast`` (matrix products in the lower precision). Fields return float32 colours and densities, so
volume rendering (transmittance scans, weights) and the loss stay float32; the hash grid's table lookups are
float32 too. ``fp16`` needs a gradient scaler (its range is small), and is offered on CUDA only: CPUs have no
fast float16 arithmetic, use ``bf16`` there.
"""

from __future__ import annotations

import os

import torch

__all__ = ["PRECISIONS", "check_precision", "autocast", "grad_scaler", "bound_cpu_kernel_caches"]

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


CPU_KERNEL_CACHES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")
"""The environment variables that size oneDNN's cache of compiled kernels and ideep's cache of operations on top of
it (1024 entries each by default)."""
CPU_KERNEL_CACHE_ENTRIES = 128
"""What :func:`bound_cpu_kernel_caches` sets them to: more than the distinct matrix products of any method's step,
so fixed-shape training still finds its kernels."""


def bound_cpu_kernel_caches(precision: str, device: torch.device) -> list[str]:
    """Bounds the CPU's caches of bf16 matrix-product kernels before training in ``bf16`` on a CPU.

    On CPUs with bf16 instructions (AVX512-BF16, AMX), bf16 matrix products run through oneDNN, which compiles
    and caches a kernel for every new matrix shape: 1024 entries in oneDNN's cache and 1024 in ideep's. The
    occupancy-grid methods render a different number of samples at every step, so every step brings new shapes
    and the process grew until both caches were full: ``nerfkit train --precision bf16 --steps 2000`` (Instant-NGP,
    the built-in scene) grew from 1.45 GB at step 100 to 1.87 GB; with this bound it stayed at 0.81-0.84 GB (fp32:
    0.68-0.71 GB) and trained 13% faster (442k against 390k samples/s after step 200; fp32 611k; AMD EPYC Zen 4,
    2026-11-30). 2000 new shapes of one product added 0.68-0.99 GB with either cache at its default, 66 MB with
    both at 128.

    Sets each variable of :data:`CPU_KERNEL_CACHES` the user has not set to :data:`CPU_KERNEL_CACHE_ENTRIES`
    (oneDNN reads them when the process makes its first bf16 product, so this must run before that; later it
    changes nothing). Does nothing for other precisions and devices. Returns the names it set.
    """
    if precision != "bf16" or device.type != "cpu":
        return []
    unset = [name for name in CPU_KERNEL_CACHES if name not in os.environ]
    for name in unset:
        os.environ[name] = str(CPU_KERNEL_CACHE_ENTRIES)
    return unset


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context for the forward pass and the loss (disabled for fp32)."""
    return torch.autocast(device.type, dtype=PRECISIONS[precision], enabled=precision != "fp32")


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for fp16 only (with it disabled, ``scale``, ``unscale_``, ``step`` and
    ``update`` reduce to the plain backward and optimiser step)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
