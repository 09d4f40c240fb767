"""Packed sample layout helpers.

A packed set of samples stores every sample of every ray in flat tensors ``(N,)``, grouped by ray.
``ray_indices (N,)`` names each sample's ray and ``packed_info (n_rays, 2) = [start, count]`` gives each ray's
contiguous slice. The batched layout is simply ``(n_rays, n_samples)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["pack_info", "packed_to_padded", "padded_to_packed", "resolve_packing", "is_ray_after_ray"]


def pack_info(ray_indices: Tensor, n_rays: int | None = None) -> Tensor:
    """``packed_info (n_rays, 2) = [start, count]`` from sorted ``ray_indices (N,)`` (int64)."""
    if ray_indices.ndim != 1:
        raise ValueError(f"ray_indices must be 1-D, got shape {tuple(ray_indices.shape)}")
    if n_rays is None:
        n_rays = int(ray_indices.max().item()) + 1 if ray_indices.numel() else 0
    counts = torch.bincount(ray_indices.long(), minlength=n_rays)
    starts = torch.cumsum(counts, 0) - counts
    return torch.stack([starts, counts], dim=-1)


def is_ray_after_ray(packed_info: Tensor, n: int) -> bool:
    """Whether ``packed_info (n_rays, 2)`` lays its rays out one slice after another over all ``n`` entries (the
    layout every sampler here produces; the fast packed paths need it, the padded ones take any)."""
    starts, counts = packed_info[:, 0].long(), packed_info[:, 1].long()
    return int(counts.sum()) == n and torch.equal(starts, torch.cumsum(counts, 0) - counts)


def resolve_packing(n_samples: int, packed_info: Tensor | None, ray_indices: Tensor | None,
                    n_rays: int | None) -> Tensor | None:
    """Returns ``packed_info`` for packed input (from either description) or ``None`` for batched input."""
    if packed_info is not None:
        return packed_info.long()
    if ray_indices is not None:
        if ray_indices.shape != (n_samples,):
            raise ValueError(f"ray_indices must have shape ({n_samples},), got {tuple(ray_indices.shape)}")
        return pack_info(ray_indices, n_rays)
    return None


def packed_to_padded(values: Tensor, packed_info: Tensor, fill: float = 0.0) -> tuple[Tensor, Tensor]:
    """Scatters packed ``values (N, ...)`` into a padded ``(n_rays, max_count, ...)`` tensor.

    Returns the padded tensor and a boolean ``(n_rays, max_count)`` mask of the occupied slots.
    """
    starts, counts = packed_info[:, 0], packed_info[:, 1]
    n_rays = packed_info.shape[0]
    width = int(counts.max().item()) if n_rays > 0 else 0
    cols = torch.arange(width, device=values.device)
    mask = cols[None, :] < counts[:, None]
    padded = values.new_full((n_rays, width) + values.shape[1:], fill)
    padded[mask] = values[(starts[:, None] + cols[None, :])[mask]]
    return padded, mask


def padded_to_packed(padded: Tensor, mask: Tensor) -> Tensor:
    """Inverse of :func:`packed_to_padded` (samples stay in ray order)."""
    return padded[mask]
