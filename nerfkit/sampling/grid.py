"""Marching rays through multi-level binary occupancy grids (the torch reference of ``traverse_grids``).

Each ray takes steps from its near plane, ``dt(t) = max(cone_angle * t, step_size)``: constant steps near the
camera, growing in proportion to the distance once ``cone_angle * t`` exceeds ``step_size`` (the "cone" of a
pixel). A step ``[t_k, t_k+1]`` becomes a sample when its midpoint lies inside the grids' boxes, within the ray's
``[near, far)`` bounds, and in an occupied cell of the first grid (lowest level) whose box holds it. These are
nerfacc's rules, so the same grid gives the same samples; midpoints never leave the bounds, while a step's ends
may reach half a step beyond them.

The work is vectorised over all candidate steps of a batch of rays (processed in bounded chunks), so its cost
is linear in the number of steps between the ray's entry into the boxes and its exit, and nothing loops over
rays in Python. Step indices are worked out in closed form per ray, so empty space before the boxes costs
nothing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..kernels import use_triton
from ..render.pack import pack_info
from .aabb import ray_aabb_intersect
from .data_specs import RayIntervals, RaySamples

__all__ = ["traverse_grids", "occupied_steps", "grid_occupancy_at", "march_steps", "boxes_span", "dilate_binaries"]

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
    return _occupancy_at(x[:, 0], x[:, 1], x[:, 2], binaries, aabbs)


def _occupancy_at(x: Tensor, y: Tensor, z: Tensor, binaries: Tensor, aabbs: Tensor) -> Tensor:
    """:func:`grid_occupancy_at` of points given coordinate by coordinate (three tensors of one shape, any),
    with the same arithmetic: element-wise throughout, which lets ``torch.compile`` fuse it into the loop that
    computes the points (no ``(..., 3)`` array, whose transposition made inductor tile the loops)."""
    m, rx, ry, rz = binaries.shape
    res = (rx, ry, rz)
    n_cells = rx * ry * rz
    index_dtype = _cell_index_dtype(binaries)
    level = torch.full_like(x, -1, dtype=index_dtype)
    cell = torch.zeros_like(x, dtype=index_dtype)
    for lvl in reversed(range(m)):  # the lowest level containing the point wins
        lo, size = aabbs[lvl, :3], aabbs[lvl, 3:] - aabbs[lvl, :3]
        # cells are clamped to [-1, res] (in the floats) before the integer conversion: no overflow far away
        idx = [torch.floor((c - lo[a]) / size[a] * res[a]).clamp(-1.0, res[a]).to(index_dtype)
               for a, c in enumerate((x, y, z))]
        inside = (idx[0] >= 0) & (idx[0] < rx) & (idx[1] >= 0) & (idx[1] < ry) & (idx[2] >= 0) & (idx[2] < rz)
        linear = (idx[0] * ry + idx[1]) * rz + idx[2]
        level = torch.where(inside, lvl, level)
        cell = torch.where(inside, linear, cell)
    flat = binaries.reshape(-1)
    return (level >= 0) & flat[level.clamp_min(0) * n_cells + cell.clamp(0, n_cells - 1)]


def _cell_index_dtype(binaries: Tensor) -> torch.dtype:
    """int32 for cell indices of grids of fewer than 2^31 cells (all levels together): 32-bit vector arithmetic
    where a CPU has no 64-bit vector multiply (AVX2); int64 for larger grids."""
    return torch.int32 if binaries.numel() < 2 ** 31 else torch.int64


class _Steps:
    """The step positions of a batch of rays: ``t_k = a + k * step`` for ``k <= k1``, then
    ``t_k = T1 * (1 + cone) ** (k - k1)`` with ``T1 = a + k1 * step`` the first position where
    ``cone * t >= step``; ``a`` is each ray's anchor (its near plane). Per-ray values are ``(n,)`` tensors."""

    def __init__(self, anchor: Tensor, step_size: float, cone_angle: float) -> None:
        self.a, self.step, self.cone = anchor, step_size, cone_angle
        if cone_angle > 0.0:
            self.k1 = torch.ceil((step_size / cone_angle - anchor) / step_size).clamp_min(0.0)
        else:
            self.k1 = torch.full_like(anchor, math.inf)
        self.t1 = anchor + torch.where(torch.isfinite(self.k1), self.k1, 0.0) * step_size

    def position(self, k: Tensor, rays: Tensor | None = None) -> Tensor:
        """``t_k`` for float step indices ``k``; ``rays`` picks each index's ray (default: one per ray)."""
        a, k1, t1 = (self.a, self.k1, self.t1) if rays is None else (self.a[rays], self.k1[rays], self.t1[rays])
        linear = a + k * self.step
        if self.cone <= 0.0:
            return linear
        return torch.where(k <= k1, linear, t1 * torch.exp((k - k1) * math.log1p(self.cone)))

    def midpoint(self, k: Tensor, rays: Tensor | None = None) -> Tensor:
        return (self.position(k, rays) + self.position(k + 1, rays)) * 0.5

    def first_with_midpoint_at_or_after(self, x: Tensor) -> Tensor:
        """Per ray, the smallest ``k >= 0`` with ``midpoint(k) >= x`` (float)."""
        k = torch.ceil((x - self.a) / self.step - 0.5)
        if self.cone > 0.0:
            geometric = self.k1 + torch.ceil(
                torch.log(x.clamp_min(1e-30) / (self.t1 * (1.0 + self.cone / 2))) / math.log1p(self.cone))
            k = torch.where(x > self.t1 - self.step / 2, torch.maximum(geometric, self.k1), k)
        k = k.clamp_min(0.0)
        # The closed forms can be off by one in floating point: settle on the exact answer.
        k = torch.where((k > 0) & (self.midpoint(k - 1) >= x), k - 1, k)
        return torch.where(self.midpoint(k) < x, k + 1, k)


def march_steps(anchor: Tensor, t_start: Tensor, t_end: Tensor, step_size: float, cone_angle: float = 0.0
                ) -> tuple[Tensor, Tensor, Tensor]:
    """Every step of every ray whose midpoint lies in ``[t_start, t_end)`` (no occupancy test).

    Steps start at ``anchor`` and have length ``max(cone_angle * t, step_size)``; a step belongs to the segment
    that holds its midpoint, so a kept step may begin up to half a step before ``t_start`` or end up to half a
    step after ``t_end`` (as in nerfacc), while its midpoint never leaves the segment.

    Args:
        anchor, t_start, t_end: ``(n_rays,)``; rays with ``t_end <= t_start`` get no steps.

    Returns:
        ``ray_indices (S,)`` int64, ``t0 (S,)``, ``t1 (S,)``: the steps, grouped by ray, in order.
    """
    dtype, device = t_start.dtype, t_start.device
    # Per ray, in float64: the index of the first and one-past-the-last step, and where the first step begins.
    steps = _Steps(anchor.double(), step_size, cone_angle)
    k_lo = steps.first_with_midpoint_at_or_after(t_start.double())
    k_hi = steps.first_with_midpoint_at_or_after(t_end.double())
    counts = torch.where(t_end > t_start, (k_hi - k_lo).clamp_min(0.0), 0.0).long()
    first_t = steps.position(k_lo).to(dtype)
    # Per step, in the rays' precision: positions relative to the ray's first step.
    rays = torch.repeat_interleave(torch.arange(t_start.shape[0], device=device), counts)
    first = torch.cumsum(counts, 0) - counts
    j = (torch.arange(rays.shape[0], device=device) - first.index_select(0, rays)).to(dtype)
    t_first = first_t.index_select(0, rays)
    if cone_angle <= 0.0:
        t0 = t_first + j * step_size
        t1 = t0 + step_size
    else:
        j1 = (steps.k1 - k_lo).to(dtype).index_select(0, rays)  # steps after j1 grow geometrically
        t_switch = steps.t1.to(dtype).index_select(0, rays)
        growth = math.log1p(cone_angle)

        def position(jj: Tensor) -> Tensor:
            return torch.where(jj <= j1, t_first + jj * step_size, t_switch * torch.exp((jj - j1) * growth))

        t0, t1 = position(j), position(j + 1)
    # Decide membership again in the output precision, so that no midpoint is outside [t_start, t_end).
    mids = (t0 + t1) * 0.5
    keep = (mids >= t_start.index_select(0, rays)) & (mids < t_end.index_select(0, rays))
    if bool(keep.all()):
        return rays, t0, t1
    return rays[keep], t0[keep], t1[keep]


def boxes_span(rays_o: Tensor, rays_d: Tensor, aabbs: Tensor) -> tuple[Tensor, Tensor]:
    """Where each ray enters the first of the boxes and leaves the last one.

    Args:
        rays_o, rays_d: ``(n_rays, 3)``; aabbs: ``(m, 6)``.

    Returns:
        ``t_enter (n_rays,)`` and ``t_exit (n_rays,)``; ``inf`` and ``-inf`` for rays that miss every box.
    """
    t_mins, t_maxs, hits = ray_aabb_intersect(rays_o, rays_d, aabbs)
    t_enter = torch.where(hits, t_mins, torch.full_like(t_mins, math.inf)).amin(dim=-1)
    t_exit = torch.where(hits, t_maxs, torch.full_like(t_maxs, -math.inf)).amax(dim=-1)
    return t_enter, t_exit


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
    # precomputed intersections (nerfacc's arguments; recomputed here, so they are accepted and ignored)
    t_sorted: Tensor | None = None,
    t_indices: Tensor | None = None,
    hits: Tensor | None = None,
    # nerfkit's
    compiled: bool = False,
) -> tuple[RayIntervals, RaySamples, Tensor]:
    """Marches rays through occupancy grids and returns the steps that fall in occupied cells.

    Args:
        rays_o, rays_d: ``(n_rays, 3)`` origins and directions (``t`` is in units of ``|rays_d|``).
        binaries: ``(m, rx, ry, rz)`` boolean occupancy of ``m`` grids (levels).
        aabbs: ``(m, 6)`` box of each grid; where boxes overlap the lowest level decides.
        near_planes, far_planes: ``(n_rays,)`` per-ray bounds on ``t`` (default ``0`` and ``inf``).
        step_size: the minimum step length (> 0); cone_angle: steps grow as ``cone_angle * t`` beyond
            ``step_size / cone_angle``. Steps start at each ray's near plane.
        traverse_steps_limit: keep at most this many samples per ray (for marching in rounds at inference);
            ``None`` or ``<= 0``: no limit (as in nerfacc).
        over_allocate: accepted for nerfacc compatibility; the output is always exactly sized.
        rays_mask: ``(n_rays,)`` booleans; rays that are ``False`` are not marched.
        t_sorted, t_indices, hits: nerfacc's precomputed box intersections; ignored (they are cheap to redo).
        compiled: off CUDA, run constant-step marching as fused loops generated by ``torch.compile``
            (:mod:`nerfkit.kernels.grid_compiled`: the same samples, 1.8-2.6x faster on a 2-core CPU,
            ``benchmarks/march_cpu.py``; ~10-30 s of compilation once per process).

    Returns:
        ``intervals``: packed :class:`RayIntervals` (each sample's two edges, ``is_left``/``is_right``),
        ``samples``: packed :class:`RaySamples` of the interval midpoints with ``packed_info (n_rays, 2)`` and
        ``ray_indices (N,)`` (int64), and ``termination_planes (n_rays,)``: where each ray's march ended (its
        far bound, or the end of its last kept sample when ``traverse_steps_limit`` cut it short). Unlike
        nerfacc's, which reports the end of the last step it took (the near plane for a ray that misses every
        box), a ray that ``traverse_steps_limit`` did not cut reports the end of its span (the exit of the boxes,
        clipped to its far plane; the far plane when it misses), so that ``termination_planes`` used as the next
        round's near planes leaves every finished ray with an empty span.
    """
    del over_allocate, t_sorted, t_indices, hits
    _check_march_args(rays_o, rays_d, binaries, aabbs, step_size)
    n_rays, device = rays_o.shape[0], rays_o.device
    ray_indices, t0, t1, termination = _march(rays_o, rays_d, binaries, aabbs, near_planes, far_planes, step_size,
                                              cone_angle, traverse_steps_limit, rays_mask, compiled)
    packed_info = pack_info(ray_indices, n_rays)
    samples = RaySamples(vals=(t0 + t1) * 0.5, packed_info=packed_info, ray_indices=ray_indices)
    n = ray_indices.shape[0]
    is_left = torch.zeros(n, 2, dtype=torch.bool, device=device)
    is_left[:, 0] = True
    intervals = RayIntervals(vals=torch.stack([t0, t1], dim=-1).reshape(-1), packed_info=packed_info * 2,
                             ray_indices=ray_indices.repeat_interleave(2), is_left=is_left.reshape(-1),
                             is_right=is_left.flip(-1).reshape(-1))
    return intervals, samples, termination


@torch.no_grad()
def occupied_steps(rays_o: Tensor, rays_d: Tensor, binaries: Tensor, aabbs: Tensor, near_planes: Tensor | None = None,
                   far_planes: Tensor | None = None, step_size: float = 1e-3, cone_angle: float = 0.0,
                   compiled: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The samples of :func:`traverse_grids` (same arguments) in the flat form estimators and renderers use,
    without building its interval and sample structures.

    Returns:
        ``ray_indices (N,)`` int64, ``t_starts (N,)``, ``t_ends (N,)`` grouped by ray, and ``packed_info
        (n_rays, 2)`` (each ray's first sample and count).
    """
    _check_march_args(rays_o, rays_d, binaries, aabbs, step_size)
    ray_indices, t0, t1, _ = _march(rays_o, rays_d, binaries, aabbs, near_planes, far_planes, step_size, cone_angle,
                                    None, None, compiled)
    return ray_indices, t0, t1, pack_info(ray_indices, rays_o.shape[0])


def _check_march_args(rays_o: Tensor, rays_d: Tensor, binaries: Tensor, aabbs: Tensor, step_size: float) -> None:
    if rays_o.ndim != 2 or rays_o.shape[-1] != 3 or rays_d.shape != rays_o.shape:
        raise ValueError(f"rays_o and rays_d must both be (n_rays, 3), got {tuple(rays_o.shape)} and "
                         f"{tuple(rays_d.shape)}")
    if binaries.ndim != 4 or aabbs.shape != (binaries.shape[0], 6):
        raise ValueError(f"binaries must be (m, rx, ry, rz) and aabbs (m, 6), got {tuple(binaries.shape)} and "
                         f"{tuple(aabbs.shape)}")
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")


def _march(rays_o: Tensor, rays_d: Tensor, binaries: Tensor, aabbs: Tensor, near_planes: Tensor | None,
           far_planes: Tensor | None, step_size: float, cone_angle: float, traverse_steps_limit: int | None,
           rays_mask: Tensor | None, compiled: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The march of :func:`traverse_grids`: ``ray_indices (N,)``, ``t0 (N,)``, ``t1 (N,)`` grouped by ray and
    ``termination (n_rays,)``."""
    n_rays, device, dtype = rays_o.shape[0], rays_o.device, rays_o.dtype
    if traverse_steps_limit is not None and traverse_steps_limit <= 0:
        traverse_steps_limit = None  # nerfacc's convention: no limit
    near = torch.zeros(n_rays, device=device, dtype=dtype) if near_planes is None else near_planes.to(dtype)
    far = torch.full((n_rays,), math.inf, device=device, dtype=dtype) if far_planes is None else far_planes.to(dtype)

    # The part of each ray inside the union of the boxes, clipped to [near, far].
    t_start, t_end = boxes_span(rays_o, rays_d, aabbs.to(dtype))
    t_start, t_end = torch.maximum(t_start, near), torch.minimum(t_end, far)
    active = torch.isfinite(t_start) & torch.isfinite(t_end) & (t_end > t_start)
    if rays_mask is not None:
        active = active & rays_mask.to(torch.bool)
    t_start = torch.where(active, t_start, near)
    t_end = torch.where(active, t_end, near)

    if use_triton(rays_o, rays_d) and dtype in (torch.float32, torch.float64) and rays_d.dtype == dtype:
        # Fused kernel (nerfkit.kernels.grid_triton) for the marching below; it stops each ray one sample past
        # traverse_steps_limit, which is enough for the cut (and termination planes) below.
        from ..kernels.grid_triton import march_grids

        cap = None if traverse_steps_limit is None else traverse_steps_limit + 1
        ray_indices, t0, t1 = march_grids(rays_o, rays_d, binaries, aabbs, near, t_start, t_end, step_size,
                                          cone_angle, max_per_ray=cap)
    elif cone_angle <= 0.0 and (block := _block_size(rays_d, aabbs, binaries.shape[1:], step_size)) >= 2:
        ray_indices, t0, t1 = _march_in_blocks(rays_o, rays_d, binaries, aabbs.to(dtype), near, t_start, t_end,
                                               active, step_size, block, compiled)
    else:
        # Rays are marched in groups whose candidate steps fit the chunk budget.
        steps = _Steps(near.double(), step_size, cone_angle)
        counts = (steps.first_with_midpoint_at_or_after(t_end.double())
                  - steps.first_with_midpoint_at_or_after(t_start.double())).clamp_min(0.0)
        counts = torch.where(active, counts, 0.0).long()
        parts_r, parts_t0, parts_t1 = [], [], []
        for lo, hi in _chunk_bounds(counts, _CANDIDATE_CHUNK):
            r, t0, t1 = march_steps(near[lo:hi], t_start[lo:hi], t_end[lo:hi], step_size, cone_angle)
            mids = (t0 + t1) * 0.5
            x = torch.addcmul(rays_o[lo:hi].index_select(0, r), rays_d[lo:hi].index_select(0, r), mids[:, None])
            keep = torch.nonzero(grid_occupancy_at(x, binaries, aabbs.to(dtype)))[:, 0]
            parts_r.append(r.index_select(0, keep) + lo)
            parts_t0.append(t0.index_select(0, keep))
            parts_t1.append(t1.index_select(0, keep))
        ray_indices = torch.cat(parts_r) if parts_r else torch.zeros(0, dtype=torch.long, device=device)
        t0 = torch.cat(parts_t0) if parts_t0 else torch.zeros(0, dtype=dtype, device=device)
        t1 = torch.cat(parts_t1) if parts_t1 else torch.zeros(0, dtype=dtype, device=device)

    termination = torch.where(active, t_end, far.clamp_max(torch.finfo(dtype).max))
    if traverse_steps_limit is not None:
        counts = torch.bincount(ray_indices, minlength=n_rays)
        rank = torch.arange(ray_indices.shape[0], device=device) - (torch.cumsum(counts, 0) - counts)[ray_indices]
        keep = rank < traverse_steps_limit
        cut = counts > traverse_steps_limit
        last = torch.full((n_rays,), -math.inf, device=device, dtype=dtype)
        last = last.scatter_reduce(0, ray_indices[keep], t1[keep], reduce="amax")
        termination = torch.where(cut, last, termination)
        ray_indices, t0, t1 = ray_indices[keep], t0[keep], t1[keep]

    return ray_indices, t0, t1, termination


def dilate_binaries(binaries: Tensor, radius: int) -> Tensor:
    """Occupancy grown by ``radius`` cells along each axis (a separable max over a ``(2r+1)^3`` cube).

    ``binaries (m, rx, ry, rz)`` bool -> the same shape.
    """
    out = binaries
    for axis in range(1, 4):
        n = out.shape[axis]
        grown = out.clone()
        for shift in range(1, min(radius, n - 1) + 1):
            grown.narrow(axis, 0, n - shift).logical_or_(out.narrow(axis, shift, n - shift))
            grown.narrow(axis, shift, n - shift).logical_or_(out.narrow(axis, 0, n - shift))
        out = grown
    return out


def _block_size(rays_d: Tensor, aabbs: Tensor, resolution, step_size: float) -> int:
    """Steps per block for :func:`_march_in_blocks`: a block spans at most one cell of the finest grid."""
    if rays_d.shape[0] == 0:
        return 0
    cell = float(((aabbs[:, 3:] - aabbs[:, :3]) / torch.tensor(list(resolution), dtype=aabbs.dtype,
                                                                device=aabbs.device)).min())
    speed = float(rays_d.abs().amax())
    return int(2.0 * cell / max(step_size * speed, 1e-30))


def _march_in_blocks(rays_o: Tensor, rays_d: Tensor, binaries: Tensor, aabbs: Tensor, near: Tensor,
                     t_start: Tensor, t_end: Tensor, active: Tensor, step_size: float, k: int, compiled: bool = False
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """The constant-step march of :func:`traverse_grids`, skipping empty space a block of steps at a time.

    Steps are grouped in blocks of ``k`` consecutive steps (:func:`_block_size`) that span at most a cell of the
    finest grid. A block
    is tested once, at its centre, against the occupancy dilated by the block's half-length (a conservative
    test: a block that holds an occupied step always passes); only the steps of passing blocks are generated
    and tested exactly. The kept steps, and their values, are the same as the step-by-step march. With
    ``compiled``, both tests run as fused loops (:mod:`nerfkit.kernels.grid_compiled`; the reference below where
    the compiler is unavailable).
    """
    dtype, device = rays_o.dtype, rays_o.device
    res = torch.tensor(binaries.shape[1:], dtype=dtype, device=device)
    cells = (aabbs[:, 3:] - aabbs[:, :3]) / res  # (m, 3) cell sizes per level
    speed = float(rays_d.abs().amax())
    reach = 0.5 * k * step_size * speed  # how far (per axis) a block's midpoints lie from its centre
    radii = [int(math.ceil(reach / float(cells[lvl].min()))) for lvl in range(binaries.shape[0])]
    grown = torch.stack([dilate_binaries(binaries[lvl:lvl + 1], radii[lvl])[0] for lvl in range(len(radii))])

    steps = _Steps(near.double(), step_size, 0.0)
    k_lo = steps.first_with_midpoint_at_or_after(t_start.double())
    counts = (steps.first_with_midpoint_at_or_after(t_end.double()) - k_lo).clamp_min(0.0)
    counts = torch.where(active, counts, 0.0).long()
    first_t = steps.position(k_lo).to(dtype)  # where each ray's first candidate step begins

    # Blocks: test each at the midpoint between its first and last step midpoints.
    n_blocks = (counts + k - 1) // k
    # 32-bit block and step numbers where they fit (cheaper vector arithmetic on CPUs, as for the cells)
    narrow = int(n_blocks.sum()) * k < 2 ** 31
    if narrow:
        counts, n_blocks = counts.int(), n_blocks.int()
    block_ray = torch.repeat_interleave(torch.arange(counts.shape[0], device=device, dtype=counts.dtype), n_blocks)
    block_start = torch.cumsum(n_blocks, 0, dtype=counts.dtype) - n_blocks
    fused = None
    if compiled:  # fused loops of the two stages below (fewer than MIN_BLOCKS blocks take them eagerly)
        from ..kernels import grid_compiled as fused
    passing = None
    if fused is not None and block_ray.shape[0] >= fused.MIN_BLOCKS:
        passing = fused.block_pass(block_ray, block_start, counts, first_t, rays_o, rays_d, grown, aabbs, k,
                                   step_size, reach)
    if passing is None:
        passing = _block_pass(block_ray, block_start, counts, first_t, rays_o, rays_d, grown, aabbs, k, step_size,
                              reach)
    keep_blocks = torch.nonzero(passing)[:, 0].to(counts.dtype)
    found = None
    if fused is not None and keep_blocks.shape[0] >= fused.MIN_BLOCKS:
        found = fused.block_steps(keep_blocks, block_ray, block_start, counts, first_t, t_start, t_end, rays_o,
                                  rays_d, binaries, aabbs, k, step_size)
    if found is None:
        found = _block_steps(keep_blocks, block_ray, block_start, counts, first_t, t_start, t_end, rays_o, rays_d,
                             binaries, aabbs, k, step_size)
    keep, t0 = found
    flat = torch.nonzero(keep.reshape(-1))[:, 0]
    t0 = t0.reshape(-1).index_select(0, flat)
    return block_ray.index_select(0, keep_blocks).index_select(0, flat // k).long(), t0, t0 + step_size


def _block_pass(block_ray: Tensor, block_start: Tensor, counts: Tensor, first_t: Tensor, rays_o: Tensor,
                rays_d: Tensor, grown: Tensor, aabbs: Tensor, k: int, step_size: float, reach: float) -> Tensor:
    """Which blocks of :func:`_march_in_blocks` may hold an occupied step: ``(B,)`` booleans.

    Args:
        block_ray: ``(B,)`` each block's ray (blocks grouped by ray); block_start: ``(n_rays,)`` each ray's first
            block; counts: ``(n_rays,)`` each ray's candidate steps; first_t: ``(n_rays,)`` where its first step
            begins; rays_o, rays_d: ``(n_rays, 3)``; grown: ``(m, rx, ry, rz)`` the occupancy dilated by the
            blocks' reach; aabbs: ``(m, 6)``; k: steps per block; step_size; reach: how far (per axis) a block's
            midpoints lie from its centre.

    Written as one element-wise pass over the blocks, so that :mod:`nerfkit.kernels.grid_compiled` compiles this
    same function into a single loop.
    """
    dtype = rays_o.dtype
    block_j0 = (torch.arange(block_ray.shape[0], device=block_ray.device) - block_start[block_ray]) * k
    block_len = torch.clamp(counts[block_ray] - block_j0, max=k)
    centre_t = first_t[block_ray] + (block_j0.to(dtype) + block_len.to(dtype) * 0.5) * step_size
    # coordinate by coordinate: element-wise throughout, so that the compiled loop stays one fused pass
    centre = [torch.addcmul(rays_o[:, a][block_ray], rays_d[:, a][block_ray], centre_t) for a in range(3)]
    res = grown.shape[1:]
    index_dtype = _cell_index_dtype(grown)
    passing = None
    for lvl in range(grown.shape[0]):
        lo, hi = aabbs[lvl, :3], aabbs[lvl, 3:]
        near_box = linear = None
        for a in range(3):
            inside = (centre[a] >= lo[a] - reach) & (centre[a] <= hi[a] + reach)
            cell = torch.floor((centre[a] - lo[a]) / ((hi[a] - lo[a]) / res[a]))
            # clamped in the floats (no integer overflow far away) and in the integers (NaN)
            idx = cell.clamp(0.0, res[a] - 1).to(index_dtype).clamp(0, res[a] - 1)
            near_box = inside if near_box is None else near_box & inside
            linear = idx if linear is None else linear * res[a] + idx
        hit = near_box & grown[lvl].reshape(-1)[linear]
        passing = hit if passing is None else passing | hit
    return passing


def _block_steps(blocks: Tensor, block_ray: Tensor, block_start: Tensor, counts: Tensor, first_t: Tensor,
                 t_start: Tensor, t_end: Tensor, rays_o: Tensor, rays_d: Tensor, binaries: Tensor, aabbs: Tensor,
                 k: int, step_size: float) -> tuple[Tensor, Tensor]:
    """The steps of the blocks ``blocks (Bk,)`` (indices into ``block_ray``) as a dense ``(Bk, k)`` array.

    Other arguments as :func:`_block_pass`, plus each ray's segment ``[t_start, t_end)`` ``(n_rays,)`` and the
    grids' ``binaries (m, rx, ry, rz)``. Returns ``keep (Bk, k)``, the steps inside the segment and in occupied
    cells (a block's slots past its ray's last step are never kept), and their starts ``t0 (Bk, k)`` (ends:
    ``t0 + step_size``), with the arithmetic of :func:`march_steps`. One element-wise pass, compiled as it stands
    by :mod:`nerfkit.kernels.grid_compiled`.
    """
    dtype = rays_o.dtype
    ray = block_ray[blocks]
    j0 = (blocks - block_start[ray]) * k
    length = torch.clamp(counts[ray] - j0, max=k)
    slot = torch.arange(k, device=blocks.device)
    t0 = first_t[ray][:, None] + (j0[:, None] + slot).to(dtype) * step_size  # (Bk, k)
    t1 = t0 + step_size
    mids = (t0 + t1) * 0.5
    inside = (slot < length[:, None]) & (mids >= t_start[ray][:, None]) & (mids < t_end[ray][:, None])
    x, y, z = (torch.addcmul(rays_o[:, a][ray][:, None], rays_d[:, a][ray][:, None], mids) for a in range(3))
    return inside & _occupancy_at(x, y, z, binaries, aabbs), t0


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
