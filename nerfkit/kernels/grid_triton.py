"""Marching rays through multi-level occupancy grids (Triton): the per-step part of ``traverse_grids``.

Torch reference it must match: :func:`nerfkit.sampling.grid.traverse_grids` -- precisely its marching loop,
:func:`nerfkit.sampling.grid.march_steps` followed by :func:`nerfkit.sampling.grid.grid_occupancy_at` on the
midpoints. Same kept steps, same ``t0``/``t1`` values (the same floating-point operations in the same order), same
order (grouped by ray, along the ray).

Split of the work:

* per ray, in torch (:func:`_plan`): the reference's closed-form step indices (:class:`nerfkit.sampling.grid._Steps`,
  float64): the first candidate step ``k_lo``, the number of candidate steps ``k_hi - k_lo``, the first position
  ``t_first`` and, for ``cone_angle > 0``, the switch index ``j1 = k1 - k_lo`` and position ``t_switch``, all cast to
  the rays' dtype exactly as ``march_steps`` does;
* per candidate step ``j`` (``0 <= j < count``), in Triton: its ends (``t_first + j * step``; past ``j1``,
  ``t_switch * exp((j - j1) * log1p(cone))``), its midpoint, the ``[t_start, t_end)`` test, the point
  ``o + d * mid``, the lowest level whose box holds it, its cell in the flattened binaries and the keep test.

Two launches, one program per ray walking its candidates in ``BLOCK``-sized vectors: (1) count the kept steps of each
ray, (2) after an exclusive cumsum of the counts on the host side, write ``t0``, ``t1`` and the ray index of each
kept step at its ray's offset. ``max_per_ray`` stops each ray after that many kept steps (both launches).

Matching the reference bit for bit:

* ``exp`` is not evaluated in the kernel: ``exp(k * log1p(cone))`` depends only on the integer ``k = j - j1``, so the
  wrapper tabulates it with ``torch.exp`` on the rays' device and dtype (the very function, and the very argument,
  the reference evaluates) and the kernel gathers from the table;
* fp32 division is ``div_rn`` (IEEE), and kernels are compiled with ``enable_fp_fusion=False`` so that no
  multiply-add is contracted where torch rounds twice (``t_first + j * step``);
* the point ``o + d * mid`` is ``torch.addcmul`` in the reference, which some torch builds evaluate as a fused
  multiply-add and others not: the wrapper probes ``addcmul`` once per device type and dtype and the kernel uses
  ``tl.fma`` or a multiply and an add accordingly.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import triton
import triton.language as tl
from torch import Tensor

from . import check_launchable

__all__ = ["march_grids", "DEFAULT_BLOCK"]

DEFAULT_BLOCK = 128


@triton.jit
def _position(jf, t_first, step, j1, t_switch, table_ptr, valid, CONE: tl.constexpr):
    """``t_j`` for float step indices ``jf`` from the first candidate (``march_steps``'s ``position``)."""
    linear = t_first + jf * step
    if CONE:
        grown = jf > j1  # the reference takes the linear branch where jj <= j1
        k = tl.where(grown, jf - j1, 0.0).to(tl.int64)  # exact: both are integers in floating point
        factor = tl.load(table_ptr + k, mask=valid & grown, other=1.0)
        return tl.where(grown, t_switch * factor, linear)
    else:
        return linear


@triton.jit
def _march_kernel(o_ptr, d_ptr, t_start_ptr, t_end_ptr, t_first_ptr, j1_ptr, t_switch_ptr, n_cand_ptr,
                  step_ptr, table_ptr, aabb_ptr, bin_ptr, n_cells, res_x, res_y, res_z,
                  count_ptr, offset_ptr, out_t0_ptr, out_t1_ptr, out_ray_ptr, cap,
                  M: tl.constexpr, CONE: tl.constexpr, FUSED_POINT: tl.constexpr, IEEE_DIV: tl.constexpr,
                  WRITE: tl.constexpr, BLOCK: tl.constexpr):
    """WRITE=False: count_ptr[ray] = min(#kept steps, cap). WRITE=True: write the first count_ptr[ray] kept steps
    at offset_ptr[ray]."""
    ray = tl.program_id(0).to(tl.int64)
    n = tl.load(n_cand_ptr + ray)
    ox = tl.load(o_ptr + 3 * ray)
    oy = tl.load(o_ptr + 3 * ray + 1)
    oz = tl.load(o_ptr + 3 * ray + 2)
    dx = tl.load(d_ptr + 3 * ray)
    dy = tl.load(d_ptr + 3 * ray + 1)
    dz = tl.load(d_ptr + 3 * ray + 2)
    t_start = tl.load(t_start_ptr + ray)
    t_end = tl.load(t_end_ptr + ray)
    t_first = tl.load(t_first_ptr + ray)
    j1 = tl.load(j1_ptr + ray)
    t_switch = tl.load(t_switch_ptr + ray)
    step = tl.load(step_ptr)
    if WRITE:
        limit = tl.load(count_ptr + ray)
        base = tl.load(offset_ptr + ray)
    else:
        limit = n * 0 + cap
        base = n * 0
    lanes = tl.arange(0, BLOCK)
    off = n * 0
    done = n * 0  # kept steps so far
    while (off < n) & (done < limit):
        j = off + lanes
        valid = j < n
        jf = j.to(t_first.dtype)
        t0 = _position(jf, t_first, step, j1, t_switch, table_ptr, valid, CONE)
        if CONE:
            t1 = _position(jf + 1.0, t_first, step, j1, t_switch, table_ptr, valid, CONE)
        else:
            t1 = t0 + step
        mid = (t0 + t1) * 0.5
        keep = valid & (mid >= t_start) & (mid < t_end)
        if FUSED_POINT:
            px = tl.fma(dx, mid, ox)
            py = tl.fma(dy, mid, oy)
            pz = tl.fma(dz, mid, oz)
        else:
            px = ox + dx * mid
            py = oy + dy * mid
            pz = oz + dz * mid
        # the lowest level whose box holds the point (grid_occupancy_at: levels from the top down, last wins)
        level = tl.full([BLOCK], -1, tl.int64)
        cell = tl.zeros([BLOCK], tl.int64)
        for i in tl.static_range(M):
            lvl = M - 1 - i
            lo_x = tl.load(aabb_ptr + 6 * lvl)
            lo_y = tl.load(aabb_ptr + 6 * lvl + 1)
            lo_z = tl.load(aabb_ptr + 6 * lvl + 2)
            hi_x = tl.load(aabb_ptr + 6 * lvl + 3)
            hi_y = tl.load(aabb_ptr + 6 * lvl + 4)
            hi_z = tl.load(aabb_ptr + 6 * lvl + 5)
            if IEEE_DIV:
                qx = tl.math.div_rn(px - lo_x, hi_x - lo_x)
                qy = tl.math.div_rn(py - lo_y, hi_y - lo_y)
                qz = tl.math.div_rn(pz - lo_z, hi_z - lo_z)
            else:
                qx = (px - lo_x) / (hi_x - lo_x)
                qy = (py - lo_y) / (hi_y - lo_y)
                qz = (pz - lo_z) / (hi_z - lo_z)
            fx = tl.floor(qx * res_x)
            fy = tl.floor(qy * res_y)
            fz = tl.floor(qz * res_z)
            # compared as floats: no overflow in the integer conversion, NaN is outside
            inside = (fx >= 0) & (fx < res_x) & (fy >= 0) & (fy < res_y) & (fz >= 0) & (fz < res_z)
            ix = tl.where(inside, fx, 0.0).to(tl.int64)
            iy = tl.where(inside, fy, 0.0).to(tl.int64)
            iz = tl.where(inside, fz, 0.0).to(tl.int64)
            level = tl.where(inside, lvl, level)
            cell = tl.where(inside, (ix * res_y + iy) * res_z + iz, cell)
        in_grid = level >= 0
        occupied = tl.load(bin_ptr + level * n_cells + cell, mask=keep & in_grid, other=0)
        keep = keep & in_grid & (occupied != 0)
        kept = keep.to(tl.int64)
        if WRITE:
            rank = done + tl.cumsum(kept, axis=0) - kept
            dst = base + rank
            store = keep & (rank < limit)
            tl.store(out_t0_ptr + dst, t0, mask=store)
            tl.store(out_t1_ptr + dst, t1, mask=store)
            tl.store(out_ray_ptr + dst, ray + lanes * 0, mask=store)
        done += tl.sum(kept, axis=0)
        off += BLOCK
    if not WRITE:
        tl.store(count_ptr + ray, tl.minimum(done, limit))


@lru_cache(maxsize=None)
def _addcmul_is_fused(device_type: str, dtype: torch.dtype) -> bool:
    """Whether ``torch.addcmul(a, b, c)`` rounds once (a fused multiply-add) on this device type and dtype."""
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(256, 3, generator=g, dtype=torch.float64).to(device=device_type, dtype=dtype)
               for _ in range(3))
    c = c[:, :1]  # broadcast like the reference's mids[:, None]
    return not torch.equal(torch.addcmul(a, b, c), a + b * c)


def _plan(near: Tensor, t_start: Tensor, t_end: Tensor, step_size: float, cone_angle: float
          ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The per-ray part of ``march_steps`` (the same code): the number of candidate steps (int64), the first
    position, the switch index relative to the first step and the switch position (in the rays' dtype)."""
    from ..sampling.grid import _Steps

    dtype = t_start.dtype
    steps = _Steps(near.double(), step_size, cone_angle)
    k_lo = steps.first_with_midpoint_at_or_after(t_start.double())
    k_hi = steps.first_with_midpoint_at_or_after(t_end.double())
    counts = torch.where(t_end > t_start, (k_hi - k_lo).clamp_min(0.0), 0.0).long()
    first_t = steps.position(k_lo).to(dtype)
    if cone_angle > 0.0:
        j1 = (steps.k1 - k_lo).to(dtype)
        t_switch = steps.t1.to(dtype)
    else:
        j1 = torch.zeros_like(first_t)
        t_switch = torch.zeros_like(first_t)
    return counts, first_t, j1, t_switch


def march_grids(rays_o: Tensor, rays_d: Tensor, binaries: Tensor, aabbs: Tensor, near: Tensor, t_start: Tensor,
                t_end: Tensor, step_size: float, cone_angle: float = 0.0, max_per_ray: int | None = None,
                block: int = DEFAULT_BLOCK) -> tuple[Tensor, Tensor, Tensor]:
    """Triton version of ``traverse_grids``'s marching loop: the steps of every ray kept by ``march_steps`` whose
    midpoint is occupied in the grids (``grid_occupancy_at``).

    Args:
        rays_o, rays_d: ``(n_rays, 3)`` float32 or float64 (the same dtype).
        binaries: ``(m, rx, ry, rz)`` boolean occupancy; aabbs: ``(m, 6)`` boxes (cast to the rays' dtype).
        near, t_start, t_end: ``(n_rays,)`` anchors and segments (as in ``traverse_grids``: inactive rays have
            ``t_end <= t_start``).
        step_size, cone_angle: the step rule.
        max_per_ray: keep at most this many steps per ray (the first ones); ``None``: all.
        block: candidate steps per vector (a power of two).

    Returns:
        ``ray_indices (S,)`` int64, ``t0 (S,)``, ``t1 (S,)``, grouped by ray, in order.
    """
    if block < 1 or block & (block - 1):
        raise ValueError(f"block must be a positive power of two, got {block}")
    dtype, device = rays_o.dtype, rays_o.device
    if dtype not in (torch.float32, torch.float64) or rays_d.dtype != dtype:
        raise TypeError(f"rays_o and rays_d must both be float32 or both float64, got {rays_o.dtype} and "
                        f"{rays_d.dtype}")
    if max_per_ray is not None and max_per_ray < 0:
        raise ValueError(f"max_per_ray must be >= 0, got {max_per_ray}")
    n_rays = rays_o.shape[0]
    empty = (torch.zeros(0, dtype=torch.long, device=device), torch.zeros(0, dtype=dtype, device=device),
             torch.zeros(0, dtype=dtype, device=device))
    if n_rays == 0 or max_per_ray == 0:
        return empty
    t_start, t_end, near = t_start.to(dtype).contiguous(), t_end.to(dtype).contiguous(), near.to(dtype)
    n_cand, t_first, j1, t_switch = _plan(near, t_start, t_end, step_size, cone_angle)
    cone = cone_angle > 0.0
    if cone:
        # exp((j - j1) * growth) for the integers j - j1 in 1 .. max(n_cand - j1), exactly as the reference
        # evaluates it (a float tensor times the Python float growth, then torch.exp)
        has = n_cand > 0
        top = int(torch.where(has, n_cand.to(dtype) - j1, 0.0).amax().item()) if bool(has.any()) else 0
        table = torch.exp(torch.arange(max(top, 0) + 1, device=device).to(dtype) * math.log1p(cone_angle))
    else:
        table = torch.ones(1, device=device, dtype=dtype)
    step = torch.full((1,), step_size, device=device, dtype=dtype)  # rounded to dtype as torch rounds the scalar
    m, rx, ry, rz = binaries.shape
    flat_bins = binaries.to(device=device, dtype=torch.bool).contiguous().reshape(-1).view(torch.uint8)
    aabbs = aabbs.to(device=device, dtype=dtype).contiguous()
    rays_o, rays_d = rays_o.contiguous(), rays_d.contiguous()
    counts = torch.empty(n_rays, dtype=torch.long, device=device)
    cap = (1 << 62) if max_per_ray is None else int(max_per_ray)
    args = (rays_o, rays_d, t_start, t_end, t_first.contiguous(), j1.contiguous(), t_switch.contiguous(), n_cand,
            step, table, aabbs, flat_bins, rx * ry * rz, rx, ry, rz)
    meta = dict(M=m, CONE=cone, FUSED_POINT=_addcmul_is_fused(device.type, dtype),
                IEEE_DIV=dtype == torch.float32, BLOCK=block, enable_fp_fusion=False)
    check_launchable(_march_kernel, rays_o)
    _march_kernel[(n_rays,)](*args, counts, counts, rays_o, rays_o, counts, cap, WRITE=False, **meta)
    offsets = torch.cumsum(counts, 0) - counts
    total = int(counts.sum().item())
    if total == 0:
        return empty
    ray_indices = torch.empty(total, dtype=torch.long, device=device)
    t0 = torch.empty(total, dtype=dtype, device=device)
    t1 = torch.empty(total, dtype=dtype, device=device)
    _march_kernel[(n_rays,)](*args, counts, offsets, t0, t1, ray_indices, cap, WRITE=True, **meta)
    return ray_indices, t0, t1
