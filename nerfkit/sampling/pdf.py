"""Inverse-CDF (importance) sampling of piecewise-constant distributions along rays."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..render.pack import is_ray_after_ray
from .data_specs import RayIntervals, RaySamples

__all__ = ["sample_pdf", "merge_edges", "searchsorted", "importance_sampling"]


def sample_pdf(
    edges: Tensor,
    weights: Tensor,
    n_samples: int,
    stratified: bool = False,
    generator: torch.Generator | None = None,
    padding: float = 1e-5,
) -> Tensor:
    """Draws points from the piecewise-constant density given by ``weights`` over the bins ``edges``.

    The density inside bin ``i`` is proportional to ``weights[i] + padding`` (the padding keeps every bin
    reachable, so rays with all-zero weights sample uniformly). Points come out sorted along each ray.

    Args:
        edges: ``(n_rays, n_bins + 1)`` sorted bin edges.
        weights: ``(n_rays, n_bins)`` non-negative bin weights (e.g. the coarse rendering weights).
        n_samples: number of points per ray.
        stratified: draw one uniform point in each of ``n_samples`` equal CDF strata (training); otherwise the
            strata centres are used, which is deterministic (evaluation).
        generator: random source for the stratified draws.

    Returns:
        ``(n_rays, n_samples)`` sorted sample positions in ``[edges[:, 0], edges[:, -1]]``.
    """
    if edges.shape[:-1] != weights.shape[:-1] or edges.shape[-1] != weights.shape[-1] + 1:
        raise ValueError(f"edges {tuple(edges.shape)} must have one more entry per ray than weights "
                         f"{tuple(weights.shape)}")
    weights = weights.detach() + padding
    pdf = weights / weights.sum(dim=-1, keepdim=True)
    cdf = torch.cumsum(pdf, dim=-1).clamp_max(1.0)
    cdf = torch.cat([torch.zeros_like(cdf[..., :1]), cdf], dim=-1)  # (n_rays, n_bins + 1)

    n_rays = edges.shape[0]
    u = torch.arange(n_samples, device=edges.device, dtype=edges.dtype).expand(n_rays, -1)
    if stratified:
        u = u + torch.rand(u.shape, device=u.device, dtype=u.dtype, generator=generator)
    else:
        u = u + 0.5
    u = (u / n_samples).contiguous()

    # Bin containing each u: cdf[idx - 1] <= u < cdf[idx].
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, idx - 1), cdf.gather(-1, idx)
    t_lo, t_hi = edges.gather(-1, idx - 1), edges.gather(-1, idx)
    frac = ((u - cdf_lo) / (cdf_hi - cdf_lo).clamp_min(1e-12)).clamp(0.0, 1.0)
    return (t_lo + frac * (t_hi - t_lo)).detach()


def merge_edges(edges: Tensor, points: Tensor) -> Tensor:
    """Sorted union of interval edges ``(n_rays, a)`` and new points ``(n_rays, b)``: ``(n_rays, a + b)`` edges."""
    return torch.sort(torch.cat([edges.detach(), points.detach()], dim=-1), dim=-1).values


# ---------------------------------------------------------------------------------------------------------------
# nerfacc 0.5's searchsorted / importance_sampling over RayIntervals and RaySamples (batched or packed).
#
# Both work on a padded per-ray view of the data: row ``r`` holds ray ``r``'s entries left-aligned, ``counts[r]``
# of them, and ``flat_idx[r, j]`` says where entry ``j`` lives in the flattened ``vals``.
# ---------------------------------------------------------------------------------------------------------------


class _Rows(NamedTuple):
    rows: Tensor  # (n_rays, width) entries of each ray, left-aligned (padding is arbitrary)
    counts: Tensor  # (n_rays,) int64 number of entries of each ray
    flat_idx: Tensor | None  # (n_rays, width) int64 index of each entry in vals.reshape(-1); None when batched


def _packed_index(packed_info: Tensor | None, ray_indices: Tensor | None, n_entries: int, n_rays: int | None,
                  device: torch.device) -> tuple[Tensor, Tensor]:
    """``flat_idx (n_rays, width)`` and ``counts (n_rays,)`` of a packed layout (width >= 1)."""
    if packed_info is not None:
        starts, counts = packed_info[:, 0].long(), packed_info[:, 1].long()
        width = max(int(counts.max().item()) if counts.numel() else 0, 1)
        cols = torch.arange(width, device=device)
        return starts[:, None] + cols, counts
    if ray_indices is None:
        raise ValueError("packed (1-D) vals need packed_info or ray_indices")
    # From ray indices alone: group the entries by ray (stable, so each ray keeps its order).
    rid = ray_indices.long()
    if n_rays is None:
        n_rays = int(rid.max().item()) + 1 if rid.numel() else 0
    counts = torch.bincount(rid, minlength=n_rays)
    order = torch.argsort(rid, stable=True)
    rid_sorted = rid[order]
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(n_entries, device=device) - starts[rid_sorted]
    width = max(int(counts.max().item()) if counts.numel() else 0, 1)
    flat_idx = torch.zeros((n_rays, width), dtype=torch.long, device=device)
    flat_idx[rid_sorted, pos] = order
    return flat_idx, counts


def _as_rows(vals: Tensor, packed_info: Tensor | None, ray_indices: Tensor | None,
             n_rays: int | None = None) -> _Rows:
    """Padded per-ray view of batched ``(..., n)`` or packed ``(N,)`` values."""
    if packed_info is None and ray_indices is None:
        if vals.ndim < 2:
            raise ValueError(f"batched vals must be (..., n) with a ray dimension, got shape {tuple(vals.shape)}")
        rows = vals.reshape(-1, vals.shape[-1])
        counts = torch.full((rows.shape[0],), rows.shape[1], dtype=torch.long, device=vals.device)
        return _Rows(rows, counts, None)
    if vals.ndim != 1:
        raise ValueError(f"packed vals must be 1-D (N,), got shape {tuple(vals.shape)}")
    flat_idx, counts = _packed_index(packed_info, ray_indices, vals.numel(), n_rays, vals.device)
    if vals.numel() == 0:
        rows = vals.new_zeros(flat_idx.shape)
    else:
        rows = vals[flat_idx.clamp(0, vals.numel() - 1)]
    return _Rows(rows, counts, flat_idx)


def _spec_fields(spec: RayIntervals | RaySamples | Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
    if isinstance(spec, Tensor):
        return spec, None, None
    return spec.vals, spec.packed_info, spec.ray_indices


def _upper_bound(key_rows: Tensor, key_counts: Tensor, query_rows: Tensor, full_rows: bool = False) -> Tensor:
    """Per ray, the number of the first ``count - 1`` keys that are ``<= query``: ``(n_rays, m)`` in ``[0, count-1]``.

    The last key of each ray is left out of the search (as nerfacc does), so a query at or past it still falls in
    the last interval. (Searching all ``count`` keys and capping at ``count - 1`` is the same, so rows without
    padding (``full_rows``: every count is the row width) are searched as they are.)
    """
    last = (key_counts - 1).clamp_min(0)[:, None]
    if full_rows:
        search = key_rows
    else:  # padding beyond each ray's keys must not be found
        cols = torch.arange(key_rows.shape[1], device=key_rows.device)
        search = torch.where(cols[None, :] < key_counts[:, None], key_rows, float("inf"))
    p = torch.searchsorted(search.contiguous(), query_rows.to(key_rows.dtype).contiguous(), right=True)
    return torch.minimum(p, last)


@torch.no_grad()
def searchsorted(
    sorted_sequence: RayIntervals | RaySamples | Tensor,
    values: RayIntervals | RaySamples | Tensor,
) -> tuple[Tensor, Tensor]:
    """Per-ray bracketing of ``values`` by ``sorted_sequence`` (nerfacc 0.5's ``searchsorted``).

    For every value ``v`` of ray ``r`` this returns ``ids_left, ids_right`` with
    ``key[ids_left] <= v < key[ids_right]``, where ``key`` is ray ``r``'s part of ``sorted_sequence.vals``, ``n``
    keys long. Values outside the keys are clipped: below the first key both ids are ``0``; at or above the last
    key they are ``(n - 2, n - 1)``, the last interval. A ray with one key gets ``(0, 0)`` (a ray with none, its
    start index).

    Either argument may be batched or packed; a bare tensor is batched.

    Args:
        sorted_sequence: keys sorted along each ray: batched ``(n_rays, n_keys)`` or packed ``(N_k,)`` with
            ``packed_info`` (or ``ray_indices``).
        values: queries: batched ``(n_rays, n_values)`` or packed ``(N_v,)`` with ``packed_info`` or
            ``ray_indices``; its ray ``r`` is searched in ray ``r`` of ``sorted_sequence``.

    Returns:
        ``(ids_left, ids_right)`` int64, each shaped like ``values.vals``. For batched ``values`` they index the
        last dimension of a batched key (``key.vals.gather(-1, ids)``) or count from the ray's start in a packed
        one; for packed ``values`` they index the flattened ``sorted_sequence.vals`` directly.
    """
    k_vals, k_info, k_rid = _spec_fields(sorted_sequence)
    q_vals, q_info, q_rid = _spec_fields(values)
    if k_vals.ndim == 1 and q_vals.ndim == 1 and (k_info is not None or k_rid is not None) \
            and (q_info is not None or q_rid is not None):
        flat = _searchsorted_flat(k_vals, k_info, k_rid, q_vals, q_info, q_rid)
        if flat is not None:
            return flat
    key = _as_rows(k_vals, k_info, k_rid)
    n_rays = key.rows.shape[0]
    query = _as_rows(q_vals, q_info, q_rid, n_rays=n_rays)
    if query.rows.shape[0] != n_rays:
        raise ValueError(f"sorted_sequence has {n_rays} rays but values has {query.rows.shape[0]}")

    right = _upper_bound(key.rows, key.counts, query.rows)  # (n_rays, m), relative to each ray's start
    left = (right - 1).clamp_min(0)
    if query.flat_idx is None:  # batched values: ids relative to the ray
        return left.reshape(q_vals.shape), right.reshape(q_vals.shape)

    # Packed values: absolute indices into the flattened keys, scattered back to the values' order.
    if key.flat_idx is None:
        base = torch.arange(n_rays, device=q_vals.device)[:, None] * key.rows.shape[1]
        left_abs, right_abs = base + left, base + right
    else:
        left_abs, right_abs = key.flat_idx.gather(1, left), key.flat_idx.gather(1, right)
    mask = torch.arange(query.rows.shape[1], device=q_vals.device)[None, :] < query.counts[:, None]
    ids_left = torch.zeros(q_vals.shape, dtype=torch.long, device=q_vals.device)
    ids_right = torch.zeros_like(ids_left)
    dest = query.flat_idx[mask]
    ids_left[dest] = left_abs[mask]
    ids_right[dest] = right_abs[mask]
    return ids_left, ids_right


def _searchsorted_flat(k_vals: Tensor, k_info: Tensor | None, k_rid: Tensor | None, q_vals: Tensor,
                       q_info: Tensor | None, q_rid: Tensor | None) -> tuple[Tensor, Tensor] | None:
    """:func:`searchsorted` of packed values in packed keys without padding, or ``None`` where the padded rows
    would hold at most twice the entries (they are faster then).

    All keys and values are sorted together by (ray, value, keys before values), so that the keys before each
    value in that order, less those of earlier rays, are its ray's keys ``<=`` it. The padded rows took
    ``(n_rays, longest ray)`` entries: 3.7 GB and 5.9 s for 0.4M keys and values when 64 of 65,600 rays had 1024
    (a 2-core CPU)."""
    device = k_vals.device
    # keys laid out ray after ray (their slices give each ray's start); values in any order, but every one
    # covered by its ray (the padded path handles any other layout)
    keys = _ray_after_ray(k_vals, k_info, k_rid)
    if keys is None or (q_info is not None and not is_ray_after_ray(q_info, q_vals.shape[0])):
        return None
    k_counts, k_start = keys
    n_rays = k_info.shape[0] if k_info is not None else (q_info.shape[0] if q_info is not None else
                                                        max(k_counts.shape[0], int(q_rid.max()) + 1 if q_rid.numel()
                                                            else 0))
    if q_info is not None:
        q_counts = q_info[:, 1].long()
        q_ray = torch.repeat_interleave(torch.arange(q_counts.shape[0], device=device), q_counts,
                                        output_size=q_vals.shape[0])
    else:
        q_ray = q_rid.long()
        q_counts = torch.bincount(q_ray, minlength=n_rays)
    if q_counts.shape[0] != n_rays or k_counts.shape[0] > n_rays:
        return None  # (the padded path explains the mismatch)
    if k_counts.shape[0] < n_rays:  # keys by ray_indices: trailing rays without keys
        k_counts = torch.cat([k_counts, k_counts.new_zeros(n_rays - k_counts.shape[0])])
        k_start = torch.cumsum(k_counts, 0) - k_counts
    widest = max(int(k_counts.max()), int(q_counts.max()) if q_counts.numel() else 0)
    if n_rays * widest <= 2 * (k_vals.shape[0] + q_vals.shape[0]):
        return None
    k_ray = torch.repeat_interleave(torch.arange(n_rays, device=device), k_counts, output_size=k_vals.shape[0])
    n_k = k_vals.shape[0]
    vals = torch.cat([k_vals, q_vals.to(k_vals.dtype)])
    ray = torch.cat([k_ray, q_ray])
    is_query = torch.cat([torch.zeros(n_k, dtype=torch.bool, device=device),
                          torch.ones(q_vals.shape[0], dtype=torch.bool, device=device)])
    order = torch.argsort(is_query.to(torch.int8), stable=True)  # keys first among equal values ...
    order = order[torch.argsort(vals[order], stable=True)]  # ... by value ...
    order = order[torch.argsort(ray[order], stable=True)]  # ... within each ray
    keys_before = torch.cumsum((~is_query[order]).long(), 0)  # keys up to each position, of every ray so far
    q_sorted = order[is_query[order]] - n_k  # the values in sorted order
    pos = torch.empty(q_vals.shape[0], dtype=torch.long, device=device)
    pos[q_sorted] = keys_before[is_query[order]]
    rays_q = q_ray
    at_most = pos - k_start[rays_q]  # this ray's keys <= the value
    last = (k_counts[rays_q] - 1).clamp_min(0)
    right = torch.minimum(at_most, last)
    left = (right - 1).clamp_min(0)
    return k_start[rays_q] + left, k_start[rays_q] + right


def _invert_cdf_rows(t_rows: Tensor, cdf_rows: Tensor, counts_in: Tensor, n_per: Tensor, n_max: int,
                     packed_out: bool, stratified: bool, generator: torch.Generator | None,
                     full_rows: bool) -> tuple[Tensor, Tensor]:
    """The core of :func:`importance_sampling` on padded rows: ``samples (n_rays, n_max)`` and ``edges (n_rays,
    n_max + 1)`` of each ray (its first ``n_per`` samples and ``n_per + 1`` edges count)."""
    n_rays, device, dtype = t_rows.shape[0], t_rows.device, t_rows.dtype
    # The CDF levels u (n_rays, n_max).
    last = (counts_in - 1).clamp_min(0)[:, None]
    t_min, t_max = t_rows[:, :1], t_rows.gather(1, last)
    u_floor, u_ceil = cdf_rows[:, :1], cdf_rows.gather(1, last)
    u_step = (u_ceil - u_floor) / n_per.clamp_min(1)[:, None].to(dtype)
    if stratified:
        bias = torch.rand((n_rays, 1), device=device, dtype=dtype, generator=generator)
    else:
        bias = torch.full((n_rays, 1), 0.5, device=device, dtype=dtype)
    sid = torch.arange(n_max, device=device, dtype=dtype)[None, :]
    u = u_floor + (sid + bias) * u_step

    # Invert the piecewise-linear CDF: cdf[p0] <= u < cdf[p1].
    if full_rows and t_rows.shape[1] == 2:  # one interval per ray (a proposal sampler's first
        # level): the CDF is one line, every level falls in it
        u_lo, u_hi, t_lo, t_hi = cdf_rows[:, :1], cdf_rows[:, 1:], t_rows[:, :1], t_rows[:, 1:]
    else:
        p1 = _upper_bound(cdf_rows, counts_in, u, full_rows=full_rows)
        p0 = (p1 - 1).clamp_min(0)
        u_lo, u_hi = cdf_rows.gather(1, p0), cdf_rows.gather(1, p1)
        t_lo, t_hi = t_rows.gather(1, p0), t_rows.gather(1, p1)
    du = u_hi - u_lo
    flat = du < 1e-10
    frac = torch.where(flat, 0.5, (u - u_lo) / torch.where(flat, 1.0, du))
    samples = torch.lerp(t_lo, t_hi, frac)
    samples = torch.minimum(torch.maximum(samples, t_min), t_max)  # guard against rounding at the ends

    # Edges: midpoints between samples, and half a spacing beyond the outer samples (clipped to the ray).
    if not packed_out and n_max >= 2:  # every ray has n_max samples
        first = torch.maximum(samples[:, :1] - 0.5 * (samples[:, 1:2] - samples[:, :1]), t_min)
        end = torch.minimum(samples[:, -1:] + 0.5 * (samples[:, -1:] - samples[:, -2:-1]), t_max)
        edges = torch.cat([first, 0.5 * (samples[:, 1:] + samples[:, :-1]), end], dim=1)
    elif n_max >= 2:
        s_last = samples.gather(1, (n_per - 1).clamp_min(0)[:, None])
        s_prev = samples.gather(1, (n_per - 2).clamp_min(0)[:, None])
        several = n_per[:, None] >= 2
        first = torch.where(several, torch.maximum(samples[:, :1] - 0.5 * (samples[:, 1:2] - samples[:, :1]), t_min),
                            t_min)
        end = torch.where(several, torch.minimum(s_last + 0.5 * (s_last - s_prev), t_max), t_max)
        mids = 0.5 * (samples[:, 1:] + samples[:, :-1])
    else:
        first, end, mids = t_min, t_max, samples[:, :0]
    if packed_out or n_max < 2:
        edges = torch.cat([first, mids, torch.empty_like(first)], dim=1)  # (n_rays, n_max + 1)
        edges = edges.scatter(1, n_per[:, None], end)

    return samples, edges


def _ray_after_ray(vals: Tensor, packed_info: Tensor | None, ray_indices: Tensor | None
                   ) -> tuple[Tensor, Tensor] | None:
    """``(counts, starts)`` of packed ``vals`` laid out ray after ray (each ray's slice right after the previous
    one's, covering every entry), else ``None``."""
    if vals.ndim != 1 or (packed_info is None and ray_indices is None) or vals.shape[0] == 0:
        return None
    if packed_info is not None:
        counts, starts = packed_info[:, 1].long(), packed_info[:, 0].long()
        if counts.shape[0] == 0 or not is_ray_after_ray(packed_info, vals.shape[0]):
            return None
        return counts, starts
    rid = ray_indices.long()
    if rid.numel() > 1 and bool((rid[1:] < rid[:-1]).any()):
        return None
    counts = torch.bincount(rid)
    return counts, torch.cumsum(counts, 0) - counts


def _length_groups(need: Tensor) -> list[Tensor] | None:
    """Rays grouped by power-of-two classes of ``need (n_rays,)`` (the width each ray's rows take) when one block
    of ``(n_rays, max need)`` would hold more than twice the entries, else ``None``: each group padded to its own
    widest ray holds under 2x its entries. Rendering whole images gives such layouts: most rays short, a few
    long."""
    if need.numel() == 0 or need.shape[0] * int(need.max()) <= 2 * int(need.sum()):
        return None
    classes = torch.ceil(torch.log2(need.clamp_min(1).double())).long()
    return [torch.nonzero(classes == c)[:, 0] for c in torch.unique(classes).tolist()]


@torch.no_grad()
def importance_sampling(
    intervals: RayIntervals,
    cdfs: Tensor,
    n_intervals_per_ray: int | Tensor,
    stratified: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> tuple[RayIntervals, RaySamples]:
    """Inverse-transform sampling of new intervals from a CDF given at interval edges (nerfacc 0.5).

    The CDF is piecewise linear between the edges ``intervals.vals`` (it need not start at 0 or end at 1: each ray
    uses its own range ``[cdf_first, cdf_last]``). Ray ``r`` with ``n`` new intervals places its ``n`` samples at
    the CDF levels ``u_i = cdf_first + (i + b) / n * (cdf_last - cdf_first)``, ``i = 0..n-1``, with ``b = 0.5``
    (deterministic) or, with ``stratified``, one ``b ~ U[0, 1)`` per ray. Inside a bin where the CDF is flat a
    sample goes to the bin's middle, so a ray whose CDF is all flat does not produce NaN. The ``n + 1`` new edges
    are the midpoints between consecutive samples, plus a first and last edge half a spacing outside the outer
    samples, clipped to the ray's first and last input edge (a single sample gets exactly those two edges).

    No gradients flow through the result.

    Args:
        intervals: input edges, batched ``(n_rays, n_edges)`` or packed ``(N,)`` with ``packed_info`` (or
            ``ray_indices``), sorted along each ray.
        cdfs: CDF values at those edges, shaped like ``intervals.vals``, non-decreasing along each ray.
        n_intervals_per_ray: an ``int >= 1`` (the same for every ray: batched output) or an int tensor
            ``(n_rays,)`` (per-ray counts, may be 0: packed output).
        stratified: jitter the CDF levels (training); otherwise they are the strata centres (evaluation).
        generator: random source for the jitter (default: torch's global generator).

    Returns:
        ``(intervals, samples)``. For an int count: ``intervals.vals (n_rays, n + 1)`` and ``samples.vals
        (n_rays, n)`` (keeping any leading batch shape of a batched input). For a tensor of counts, packed:
        ``intervals.vals (sum(n_r + 1 for n_r > 0),)`` with ``packed_info``, ``ray_indices``, ``is_left`` and
        ``is_right``; ``samples.vals (sum(n_r),)`` with ``packed_info`` and ``ray_indices``.
    """
    vals = intervals.vals
    if cdfs.shape != vals.shape:
        raise ValueError(f"cdfs {tuple(cdfs.shape)} must be shaped like intervals.vals {tuple(vals.shape)}")
    layout = _ray_after_ray(vals, intervals.packed_info, intervals.ray_indices)
    if layout is None:
        edges_in = _as_rows(vals, intervals.packed_info, intervals.ray_indices)
        n_rays, full_rows = edges_in.rows.shape[0], edges_in.flat_idx is None
    else:
        n_rays, full_rows = layout[0].shape[0], False
    device, dtype = vals.device, vals.dtype

    packed_out = isinstance(n_intervals_per_ray, Tensor)
    if packed_out:
        n_per = n_intervals_per_ray.to(device=device, dtype=torch.long).reshape(-1).broadcast_to((n_rays,))
        if n_per.numel() and int(n_per.min().item()) < 0:
            raise ValueError("n_intervals_per_ray must be non-negative")
        n_max = max(int(n_per.max().item()) if n_per.numel() else 0, 1)
    else:
        n_max = int(n_intervals_per_ray)
        if n_max < 1:
            raise ValueError(f"n_intervals_per_ray must be >= 1, got {n_intervals_per_ray}")
        n_per = torch.full((n_rays,), n_max, dtype=torch.long, device=device)

    groups = None
    if layout is not None:  # rays of very different lengths (in or out): grouped, each group padded to its own
        groups = _length_groups(torch.maximum(layout[0], n_per + 1) if packed_out else layout[0])
        if groups is None:
            edges_in = _as_rows(vals, intervals.packed_info, intervals.ray_indices)
    if groups is None:
        cdf_rows = (cdfs.reshape(edges_in.rows.shape) if full_rows
                    else _as_rows(cdfs, intervals.packed_info, intervals.ray_indices).rows)
        samples, edges = _invert_cdf_rows(edges_in.rows, cdf_rows.to(dtype), edges_in.counts, n_per, n_max,
                                          packed_out, stratified, generator, full_rows)
        if not packed_out:
            lead = vals.shape[:-1] if full_rows else (n_rays,)
            return (RayIntervals(vals=edges.reshape(*lead, n_max + 1)),
                    RaySamples(vals=samples.reshape(*lead, n_max)))
        s_mask = torch.arange(n_max, device=device)[None, :] < n_per[:, None]
        e_mask = torch.arange(n_max + 1, device=device)[None, :] < _output_layout(n_per)[1][:, None]
        return _packed_outputs(samples[s_mask], edges[e_mask], n_per)

    counts, starts = layout
    if packed_out:
        s_starts, e_counts, e_starts = _output_layout(n_per)
        sample_vals = vals.new_empty((int(n_per.sum()),))
        edge_vals = vals.new_empty((int(e_counts.sum()),))
    else:
        samples, edges = vals.new_empty((n_rays, n_max)), vals.new_empty((n_rays, n_max + 1))
    for rays in groups:
        ray_counts, ray_n = counts.index_select(0, rays), n_per.index_select(0, rays)
        width = max(int(ray_counts.max()), 1)
        rows_idx = (starts.index_select(0, rays)[:, None] + torch.arange(width, device=device)).clamp_max(
            vals.shape[0] - 1)
        group_n = max(int(ray_n.max()), 1) if packed_out else n_max
        s_rows, e_rows = _invert_cdf_rows(vals[rows_idx], cdfs[rows_idx].to(dtype), ray_counts, ray_n, group_n,
                                          packed_out, stratified, generator, False)
        if not packed_out:
            samples[rays], edges[rays] = s_rows, e_rows
            continue
        cols = torch.arange(group_n + 1, device=device)
        s_mask = cols[None, :group_n] < ray_n[:, None]
        sample_vals[(s_starts.index_select(0, rays)[:, None] + cols[:group_n])[s_mask]] = s_rows[s_mask]
        e_mask = cols[None, :] < e_counts.index_select(0, rays)[:, None]
        edge_vals[(e_starts.index_select(0, rays)[:, None] + cols)[e_mask]] = e_rows[e_mask]
    if not packed_out:
        return RayIntervals(vals=edges), RaySamples(vals=samples)
    return _packed_outputs(sample_vals, edge_vals, n_per)


def _output_layout(n_per: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Where :func:`importance_sampling`'s packed results go: each ray's first sample, its number of edges
    (``n_per + 1``, none for a ray without samples) and its first edge, each ``(n_rays,)``."""
    e_counts = (n_per + 1) * (n_per > 0)
    return torch.cumsum(n_per, 0) - n_per, e_counts, torch.cumsum(e_counts, 0) - e_counts


def _packed_outputs(sample_vals: Tensor, edge_vals: Tensor, n_per: Tensor) -> tuple[RayIntervals, RaySamples]:
    """:func:`importance_sampling`'s packed results from their values laid out ray after ray: ``n_per`` samples
    and, for a ray with any, ``n_per + 1`` edges per ray."""
    device = n_per.device
    ray_ids = torch.arange(n_per.shape[0], device=device)
    s_starts, e_counts, e_starts = _output_layout(n_per)
    out_samples = RaySamples(vals=sample_vals, packed_info=torch.stack([s_starts, n_per], dim=-1),
                             ray_indices=torch.repeat_interleave(ray_ids, n_per, output_size=sample_vals.shape[0]))
    e_ray = torch.repeat_interleave(ray_ids, e_counts, output_size=edge_vals.shape[0])
    e_pos = torch.arange(edge_vals.shape[0], device=device) - e_starts.index_select(0, e_ray)
    out_intervals = RayIntervals(vals=edge_vals, packed_info=torch.stack([e_starts, e_counts], dim=-1),
                                 ray_indices=e_ray, is_left=e_pos < n_per.index_select(0, e_ray), is_right=e_pos > 0)
    return out_intervals, out_samples
