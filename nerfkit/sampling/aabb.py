"""Ray / axis-aligned box intersection."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["ray_aabb_intersect"]


def ray_aabb_intersect(
    rays_o: Tensor,
    rays_d: Tensor,
    aabbs: Tensor,
    near_plane: float = -math.inf,
    far_plane: float = math.inf,
    miss_value: float = math.inf,
) -> tuple[Tensor, Tensor, Tensor]:
    """Intersects rays with axis-aligned boxes (slab method), with nerfacc's signature.

    Args:
        rays_o, rays_d: ``(n_rays, 3)`` origins and directions (need not be unit length; ``t`` is in units
            of ``|rays_d|``).
        aabbs: ``(m, 6)`` boxes ``[xmin, ymin, zmin, xmax, ymax, zmax]`` (a single ``(6,)`` box is accepted).
        near_plane, far_plane: the returned interval is clipped to ``[near_plane, far_plane]``.
        miss_value: the value written to ``t_mins``/``t_maxs`` where a ray misses a box.

    Returns:
        ``t_mins (n_rays, m)``, ``t_maxs (n_rays, m)``, ``hits (n_rays, m)`` (bool). A ray starting inside a box
        gets ``t_min = max(near_plane, entry)``, where the entry point lies behind the origin.
    """
    if aabbs.ndim == 1:
        aabbs = aabbs[None]
    if aabbs.shape[-1] != 6:
        raise ValueError(f"aabbs must have shape (m, 6), got {tuple(aabbs.shape)}")
    inv_d = 1.0 / rays_d[:, None, :]  # +-inf for zero components: the slab is then all or nothing
    t0 = (aabbs[None, :, :3] - rays_o[:, None, :]) * inv_d
    t1 = (aabbs[None, :, 3:] - rays_o[:, None, :]) * inv_d
    # 0 * inf is nan (origin exactly on a slab plane of a parallel ray): treat it as inside that slab.
    t_near = torch.minimum(t0, t1).nan_to_num(nan=-math.inf).amax(dim=-1)
    t_far = torch.maximum(t0, t1).nan_to_num(nan=math.inf).amin(dim=-1)
    t_mins = t_near.clamp_min(near_plane)
    t_maxs = t_far.clamp_max(far_plane)
    hits = t_maxs > t_mins
    miss = torch.full_like(t_mins, miss_value)
    return torch.where(hits, t_mins, miss), torch.where(hits, t_maxs, miss), hits
