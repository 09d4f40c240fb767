"""Sums and products along rays, for batched ``(n_rays, n_samples)`` and packed ``(N,)`` samples.

These are the reference implementations: packed inputs are laid out as padded rows, scanned with torch's
differentiable ``cumsum``/``cumprod`` (whose gradients are exact, zeros included) and packed back.
When :func:`nerfkit.kernels.use_triton` selects it (CUDA tensors, or ``NERFKIT_KERNELS=triton``), the fused
Triton kernels of :mod:`nerfkit.kernels.scan_triton` are used instead.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..kernels import use_triton
from .pack import pack_info, packed_to_padded, padded_to_packed

__all__ = ["inclusive_sum", "exclusive_sum", "inclusive_prod", "exclusive_prod"]


def _scan(inputs: Tensor, packed_info: Tensor | None, indices: Tensor | None, op: str, exclusive: bool) -> Tensor:
    if indices is not None:
        if packed_info is not None:
            raise ValueError("give only one of packed_info and indices")
        if inputs.ndim != 1 or indices.shape != inputs.shape:
            raise ValueError(f"indices must match packed 1-D inputs, got shapes {tuple(indices.shape)} and "
                             f"{tuple(inputs.shape)}")
        packed_info = pack_info(indices)
    if use_triton(inputs):
        from ..kernels.scan_triton import segment_scan

        return segment_scan(inputs, packed_info, op, exclusive)
    if packed_info is None:
        rows = inputs
    else:
        if inputs.ndim != 1:
            raise ValueError(f"packed inputs must be 1-D (N,), got shape {tuple(inputs.shape)}")
        if op == "sum" and (segments := _contiguous_segments(packed_info, inputs.shape[0])) is not None:
            return _packed_sum(inputs, packed_info, segments, exclusive)
        rows, mask = packed_to_padded(inputs, packed_info, fill=0.0 if op == "sum" else 1.0)
    if op == "sum":
        out = torch.cumsum(rows, dim=-1)
        if exclusive:
            out = out - rows
    else:
        if exclusive:
            rows = torch.cat([torch.ones_like(rows[..., :1]), rows[..., :-1]], dim=-1)
        out = torch.cumprod(rows, dim=-1)
    return out if packed_info is None else padded_to_packed(out, mask)


def _contiguous_segments(packed_info: Tensor, n: int) -> Tensor | None:
    """Each sample's ray ``(N,)`` when the rays' slices follow each other and cover all ``n`` samples (the layout
    every sampler here produces), else ``None``."""
    starts, counts = packed_info[:, 0], packed_info[:, 1]
    if int(counts.sum()) != n or not torch.equal(starts, torch.cumsum(counts, 0) - counts):
        return None
    return torch.repeat_interleave(torch.arange(counts.shape[0], device=counts.device), counts, output_size=n)


def _packed_sum(inputs: Tensor, packed_info: Tensor, ray_of: Tensor, exclusive: bool) -> Tensor:
    """Segmented cumulative sum without padding: one float64 running sum over all samples, less its value where
    each ray begins. (Padding to ``(n_rays, longest ray)`` cost up to 25x the samples when rendering whole images;
    float64 keeps the difference of two large running sums exact to ~1e-16 of the total.)"""
    if inputs.shape[0] == 0:
        return inputs.clone()
    x = inputs.double()
    before = torch.cumsum(x, 0) - x  # sum of every sample before this one
    base = before[packed_info[:, 0].clamp_max(x.shape[0] - 1)]  # what came before each ray
    out = before - base.index_select(0, ray_of)
    return (out if exclusive else out + x).to(inputs.dtype)


def inclusive_sum(inputs: Tensor, packed_info: Tensor | None = None, indices: Tensor | None = None) -> Tensor:
    """Cumulative sum along each ray, including the current sample.

    Args:
        inputs: batched ``(..., n_samples)`` or packed ``(N,)``.
        packed_info: ``(n_rays, 2)`` for packed input, else ``None``.
        indices: alternatively, sorted per-sample ray indices ``(N,)`` for packed input (nerfacc 0.5.3).
    Returns: a tensor shaped like ``inputs``.
    """
    return _scan(inputs, packed_info, indices, "sum", exclusive=False)


def exclusive_sum(inputs: Tensor, packed_info: Tensor | None = None, indices: Tensor | None = None) -> Tensor:
    """Cumulative sum along each ray of the samples before the current one (0 at each ray's first sample)."""
    return _scan(inputs, packed_info, indices, "sum", exclusive=True)


def inclusive_prod(inputs: Tensor, packed_info: Tensor | None = None, indices: Tensor | None = None) -> Tensor:
    """Cumulative product along each ray, including the current sample."""
    return _scan(inputs, packed_info, indices, "prod", exclusive=False)


def exclusive_prod(inputs: Tensor, packed_info: Tensor | None = None, indices: Tensor | None = None) -> Tensor:
    """Cumulative product along each ray of the samples before the current one (1 at each ray's first sample)."""
    return _scan(inputs, packed_info, indices, "prod", exclusive=True)
