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
from .pack import is_ray_after_ray, pack_info, packed_to_padded

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
        if op == "prod":
            return _packed_prod(inputs, packed_info.long(), exclusive)
        if inputs.shape[0] == 0 or packed_info.shape[0] == 0:
            return inputs * 0.0
        # sums over a layout that is not ray after ray: one padded block, each sample back at its own index
        rows, mask = packed_to_padded(inputs, packed_info, fill=0.0)
    if op == "sum":
        out = torch.cumsum(rows, dim=-1)
        if exclusive:
            out = out - rows
    else:
        if exclusive:
            rows = torch.cat([torch.ones_like(rows[..., :1]), rows[..., :-1]], dim=-1)
        out = torch.cumprod(rows, dim=-1)
    if packed_info is None:
        return out
    cols = torch.arange(rows.shape[1], device=inputs.device)
    return _at_positions((packed_info[:, :1].long() + cols)[mask], out[mask], inputs.shape[0], 0.0)


def _contiguous_segments(packed_info: Tensor, n: int) -> Tensor | None:
    """Each sample's ray ``(N,)`` when the rays' slices follow each other and cover all ``n`` samples (the layout
    every sampler here produces), else ``None``."""
    if not is_ray_after_ray(packed_info, n):
        return None
    counts = packed_info[:, 1]
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


def _packed_prod(inputs: Tensor, packed_info: Tensor, exclusive: bool) -> Tensor:
    """Segmented cumulative product by ``torch.cumprod`` over padded rows (exact gradients, zeros included),
    padding little: when one ``(n_rays, longest ray)`` block would hold more than twice the samples (rendering
    whole images, where a few rays are much longer than the rest: up to 25x), rays are grouped by length into
    power-of-two classes, each padded only to its own longest ray, so the blocks hold under 2x the samples.
    (Lego-like images on a 2-core CPU: 567 -> 18 ms; where one block suffices it is used: grouping cost 2x.)"""
    n, counts = inputs.shape[0], packed_info[:, 1]
    if n == 0:
        return inputs * 1.0  # (empty, in the graph)
    if packed_info.shape[0] == 0:
        return torch.ones_like(inputs)
    if packed_info.shape[0] * int(counts.max()) <= 2 * n:
        groups = [torch.arange(packed_info.shape[0], device=inputs.device)]
    else:
        live = torch.nonzero(counts > 0)[:, 0]
        classes = torch.ceil(torch.log2(counts.index_select(0, live).double())).long()  # 1 -> 0, 2 -> 1, 3..4 -> 2
        order = torch.argsort(classes, stable=True)
        live, bounds = live[order], torch.cumsum(torch.bincount(classes), 0).tolist()
        groups = [live[begin:end] for begin, end in zip([0] + bounds[:-1], bounds) if end > begin]
    positions, values = [], []
    for rays in groups:
        info = packed_info.index_select(0, rays)
        rows, mask = packed_to_padded(inputs, info, fill=1.0)
        if exclusive:
            rows = torch.cat([torch.ones_like(rows[:, :1]), rows[:, :-1]], dim=1)
        positions.append((info[:, :1] + torch.arange(rows.shape[1], device=inputs.device))[mask])
        values.append(torch.cumprod(rows, dim=1)[mask])
    return _at_positions(torch.cat(positions), torch.cat(values), n, 1.0)


def _at_positions(positions: Tensor, values: Tensor, n: int, fill: float) -> Tensor:
    """``(n,)`` with ``values`` at ``positions`` (each sample of a ray at its own index) and ``fill`` where no ray
    covers a sample; differentiable in ``values``."""
    where = torch.zeros(n, dtype=torch.long, device=values.device)
    where[positions] = torch.arange(positions.shape[0], device=values.device)
    out = values.index_select(0, where) if values.numel() else values.new_full((n,), fill)
    if positions.shape[0] != n:  # packed_info covers only part of the samples
        covered = torch.zeros(n, dtype=torch.bool, device=values.device)
        covered[positions] = True
        out = torch.where(covered, out, torch.full_like(out, fill))
    return out


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
