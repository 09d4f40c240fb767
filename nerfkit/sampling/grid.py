"""Marching rays through multi-level binary occupancy grids (the torch reference of ``traverse_grids``).

A ray is marched from where it enters the union of the grids' boxes (or its near plane, if later) to where it
leaves them (or its far plane, if earlier), in steps ``dt(t) = max(cone_angle * t, step_size)``: constant steps
near the camera, growing in proportion to the distance once ``cone_angle * t`` exceeds ``step_size`` (the
"cone" of a pixel). A step ``[t_k, t_k+1]`` becomes a sample when its midpoint lies in an occupied cell of the
first grid (lowest level) whose box holds the midpoint. The last step is cut at the ray's end, so no sample
ever reaches past ``far_planes`` or the grid boxes.

The work is vectorised over all candidate steps of a batch of rays (processed in bounded chunks), so its cost
is linear in the number of steps and nothing loops over rays in Python.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .aabb import ray_aabb_intersect
from .data_specs import RayIntervals, RaySamples

__all__ = ["traverse_grids", "grid_occupancy_at", "march_steps"]

_CANDIDATE_CHUNK = 1 << 22
"""Upper bound on candidate steps generated at once (bounds the working memory, ~200 MB at float32)."""


def grid_occupancy_at(x: Tensor, binaries: Tensor, aabbs: Tensor) -> Tensor:
    """Occupancy of points in multi-level grids: the cell of the lowest level whose box contains each point.

    Args:
        x: ``(M, 3)`` points.
        binaries: ``(m, rx, ry, rz)`` boolean occupancy of each level.
        aabbs: ``(m, 6)`` box of each level ``[xmin, ymin, zmin, xmax, ymax, zmax]``.

    Returns:
        ``(M,)`` booleans; points outside every box are unoccupied.
    """
    m, rx, ry, rz = binaries.shape
    res = torch.tensor([rx, ry, rz], device=x.device)
    n_cells = rx * ry * rz
    level = torch.full(x.shape[:1], -1, dtype=torch.long, device=x.device)
    cell = torch.zeros(x.shape[:1], dtype=torch.long, device=x.device)
    for lvl in reversed(range(m)):  # the lowest level containing the point wins
        lo, hi = aabbs[lvl, :3], aabbs[lvl, 3:]
        idx = torch.floor((x - lo) / (hi - lo) * res).long()
        inside = ((idx >= 0) & (idx < res)).all(dim=-1)
        linear = (idx[:, 0] * ry + idx[:, 1]) * rz + idx[:, 2]
        level = torch.where(inside, lvl, level)
        cell = torch.where(inside, linear, cell)
    flat = binaries.reshape(-1)
    return (level >= 0) & flat[level.clamp_min(0) * n_cells + cell.clamp(0, n_cells - 1)]


def _step_schedule(t_start: Tensor, t_end: Tensor, step_size: float, cone_angle: float
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Per ray: the number of steps (one spare), and the linear/geometric switch ``(k1, T1)``.

    Steps are ``t_k = t_start + k * step_size`` for ``k <= k1`` and ``T1 * (1 + cone_angle) ** (k - k1)`` after,
    where ``T1 = t_start + k1 * step_size`` is the first linear position with ``cone_angle * t >= step_size``.
    """
    length = (t_end - t_start).clamp_min(0.0)
    if cone_angle <= 0.0:
        n = torch.ceil(length / step_size)
        k1 = torch.full_like(t_start, math.inf)
        return n.long() + 1, k1, t_start
    t_switch = step_size / cone_angle
    k1 = torch.ceil((t_switch - t_start) / step_size).clamp_min(0.0)
    t1 = t_start + k1 * step_size
    linear_n = torch.ceil(length / step_size)
    geometric_n = k1 + torch.ceil(torch.log(t_end.clamp_min(1e-30) / t1) / math.log1p(cone_angle))
    n = torch.where(t_end <= t1, linear_n, geometric_n)
    return n.long() + 1, k1, t1


def _step_positions(k: Tensor, t_start: Tensor, k1: Tensor, t1: Tensor, step_size: float,
                    cone_angle: float) -> Tensor:
    """``t_k`` for step indices ``k`` (float), with each step's ray values gathered alongside."""
    linear = t_start + k * step_size
    if cone_angle <= 0.0:
        return linear
    geometric = t1 * torch.exp((k - k1) * math.log1p(cone_angle))
    return torch.where(k <= k1, linear, geometric)


def march_steps(t_start: Tensor, t_end: Tensor, step_size: float, cone_angle: float = 0.0
                ) -> tuple[Tensor, Tensor, Tensor]:
    """All steps of every ray between ``t_start`` and ``t_end`` (no occupancy test).

    Args:
        t_start, t_end: ``(n_rays,)``; rays with ``t_end <= t_start`` get no steps.
        step_size: the minimum step (world units); cone_angle: growth of the step with distance.

    Returns:
        ``ray_indices (S,)`` int64, ``t0 (S,)``, ``t1 (S,)``: consecutive steps, grouped by ray, the last step of
        each ray cut at ``t_end``.
    """
    counts, k1, t1 = _step_schedule(t_start, t_end, step_size, cone_angle)
    counts = torch.where(t_end > t_start, counts, torch.zeros_like(counts))
    ray_indices = torch.repeat_interleave(torch.arange(t_start.shape[0], device=t_start.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    k = (torch.arange(ray_indices.shape[0], device=t_start.device) - starts[ray_indices]).to(t_start.dtype)
    args = (t_start[ray_indices], k1[ray_indices], t1[ray_indices], step_size, cone_angle)
    t0 = _step_positions(k, *args)
    t_next = torch.minimum(_step_positions(k + 1, *args), t_end[ray_indices])
    keep = t_next > t0  # drops the spare step (and any rounding leftovers) past the end
    return ray_indices[keep], t0[keep], t_next[keep]


@torch.no_grad()
def traverse_grids(
    # rays
    rays_o: Tensor,
    rays_d: Tensor,
    # grids
    binaries: Tensor,
    aabbs: Tensor,
    # options
    near_planes: Tensor | None = None,
    far_planes: Tensor | None = None,
    step_size: float = 1e-3,
    cone_angle: float = 0.0,
    traverse_steps_limit: int | None = None,
    over_allocate: bool = False,
    rays_mask: Tensor | None = None,
) -> tuple[RayIntervals, RaySamples, Tensor]:
    """Marches rays through occupancy grids and returns the steps that fall in occupied cells.

    Args:
        rays_o, rays_d: ``(n_rays, 3)`` origins and directions (``t`` is in units of ``|rays_d|``).
        binaries: ``(m, rx, ry, rz)`` boolean occupancy of ``m`` grids (levels).
        aabbs: ``(m, 6)`` box of each grid; where boxes overlap the lowest level decides.
        near_planes, far_planes: ``(n_rays,)`` per-ray bounds on ``t`` (default ``0`` and ``inf``).
        step_size: the minimum step length; cone_angle: steps grow as ``cone_angle * t`` beyond
            ``step_size / cone_angle``.
        traverse_steps_limit: keep at most this many samples per ray (for marching in rounds at inference).
        over_allocate: accepted for nerfacc compatibility; the output is always exactly sized.
        rays_mask: ``(n_rays,)`` booleans; rays that are ``False`` are not marched.

    Returns:
        ``intervals``: packed :class:`RayIntervals` (each sample's two edges, ``is_left``/``is_right``),
        ``samples``: packed :class:`RaySamples` of the interval midpoints with ``packed_info (n_rays, 2)`` and
        ``ray_indices (N,)`` (int64), and ``termination_planes (n_rays,)``: where each ray's march ended (its
        far bound, or the end of its last kept sample when ``traverse_steps_limit`` cut it short).
    """
    del over_allocate
    if rays_o.ndim != 2 or rays_o.shape[-1] != 3 or rays_d.shape != rays_o.shape:
        raise ValueError(f"rays_o and rays_d must both be (n_rays, 3), got {tuple(rays_o.shape)} and "
                         f"{tuple(rays_d.shape)}")
    if binaries.ndim != 4 or aabbs.shape != (binaries.shape[0], 6):
        raise ValueError(f"binaries must be (m, rx, ry, rz) and aabbs (m, 6), got {tuple(binaries.shape)} and "
                         f"{tuple(aabbs.shape)}")
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")
    n_rays, device, dtype = rays_o.shape[0], rays_o.device, rays_o.dtype
    near = torch.zeros(n_rays, device=device, dtype=dtype) if near_planes is None else near_planes.to(dtype)
    far = torch.full((n_rays,), math.inf, device=device, dtype=dtype) if far_planes is None else far_planes.to(dtype)

    # The part of each ray inside the union of the boxes, clipped to [near, far].
    t_mins, t_maxs, hits = ray_aabb_intersect(rays_o, rays_d, aabbs.to(dtype))
    t_start = torch.where(hits, t_mins, torch.full_like(t_mins, math.inf)).amin(dim=-1)
    t_end = torch.where(hits, t_maxs, torch.full_like(t_maxs, -math.inf)).amax(dim=-1)
    t_start, t_end = torch.maximum(t_start, near), torch.minimum(t_end, far)
    active = torch.isfinite(t_start) & torch.isfinite(t_end) & (t_end > t_start)
    if rays_mask is not None:
        active = active & rays_mask.to(torch.bool)
    t_start = torch.where(active, t_start, torch.zeros_like(t_start))
    t_end = torch.where(active, t_end, torch.zeros_like(t_end))

    # Rays are marched in groups whose candidate steps fit the chunk budget.
    counts = torch.where(active, _step_schedule(t_start, t_end, step_size, cone_angle)[0], 0)
    bounds = _chunk_bounds(counts, _CANDIDATE_CHUNK)
    parts_r, parts_t0, parts_t1 = [], [], []
    for lo, hi in bounds:
        r, t0, t1 = march_steps(t_start[lo:hi], t_end[lo:hi], step_size, cone_angle)
        mids = (t0 + t1) * 0.5
        x = rays_o[lo:hi][r] + rays_d[lo:hi][r] * mids[:, None]
        keep = grid_occupancy_at(x, binaries, aabbs.to(dtype))
        parts_r.append(r[keep] + lo)
        parts_t0.append(t0[keep])
        parts_t1.append(t1[keep])
    ray_indices = torch.cat(parts_r) if parts_r else torch.zeros(0, dtype=torch.long, device=device)
    t0 = torch.cat(parts_t0) if parts_t0 else torch.zeros(0, dtype=dtype, device=device)
    t1 = torch.cat(parts_t1) if parts_t1 else torch.zeros(0, dtype=dtype, device=device)

    termination = torch.where(active, t_end, far.clamp_max(torch.finfo(dtype).max))
    if traverse_steps_limit is not None:
        if traverse_steps_limit < 0:
            raise ValueError(f"traverse_steps_limit must be >= 0, got {traverse_steps_limit}")
        counts = torch.bincount(ray_indices, minlength=n_rays)
        rank = torch.arange(ray_indices.shape[0], device=device) - (torch.cumsum(counts, 0) - counts)[ray_indices]
        keep = rank < traverse_steps_limit
        cut = counts > traverse_steps_limit
        last = torch.full((n_rays,), -math.inf, device=device, dtype=dtype)
        last = last.scatter_reduce(0, ray_indices[keep], t1[keep], reduce="amax")
        termination = torch.where(cut, last, termination)
        ray_indices, t0, t1 = ray_indices[keep], t0[keep], t1[keep]

    counts = torch.bincount(ray_indices, minlength=n_rays)
    packed_info = torch.stack([torch.cumsum(counts, 0) - counts, counts], dim=-1)
    samples = RaySamples(vals=(t0 + t1) * 0.5, packed_info=packed_info, ray_indices=ray_indices)
    n = ray_indices.shape[0]
    is_left = torch.zeros(n, 2, dtype=torch.bool, device=device)
    is_left[:, 0] = True
    intervals = RayIntervals(vals=torch.stack([t0, t1], dim=-1).reshape(-1), packed_info=packed_info * 2,
                             ray_indices=ray_indices.repeat_interleave(2), is_left=is_left.reshape(-1),
                             is_right=is_left.flip(-1).reshape(-1))
    return intervals, samples, termination


def _chunk_bounds(counts: Tensor, budget: int) -> list[tuple[int, int]]:
    """Splits rays ``[0, n)`` into consecutive groups whose total count stays within ``budget`` (a single ray
    larger than the budget forms its own group)."""
    n = counts.shape[0]
    if n == 0:
        return []
    total = int(counts.sum().item())
    if total <= budget:
        return [(0, n)]
    cum = torch.cumsum(counts, 0).cpu()
    bounds, lo, base = [], 0, 0
    while lo < n:
        hi = int(torch.searchsorted(cum, base + budget, right=True).item())
        hi = max(hi, lo + 1)
        bounds.append((lo, hi))
        base = int(cum[hi - 1].item())
        lo = hi
    return bounds
