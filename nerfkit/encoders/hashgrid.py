"""Multiresolution hash encoding (Instant-NGP, Müller et al. 2022): :class:`HashGridEncoder`.

Conventions (those of the paper, Sec. 3 and Eq. 3; written out because implementations differ in details):

* ``L`` levels with resolutions ``N_l = floor(N_min * b^l)``, ``b = exp((ln N_max - ln N_min) / (L - 1))``
  (``b = 1`` for one level), or a given ``per_level_scale`` ``b``. The product is evaluated in float64 and nudged
  by ``1e-6`` before the floor, so that ``N_{L-1} = N_max`` exactly (for ``N_min = 1, N_max = 64, L = 2`` the
  product is 63.99999999999998 in floating point).
* Level ``l`` is a grid with vertices at the integer points ``0..N_l`` of ``x * N_l`` (``x`` in ``[0, 1]^D``),
  i.e. ``(N_l + 1)^D`` vertices; the point's cell is ``i0 = min(floor(x * N_l), N_l - 1)`` (so ``x = 1`` lies in
  the last cell, at weight 1 on its upper vertices) and ``frac = x * N_l - i0``. (tiny-cuda-nn's kernels use
  ``x * (N_min b^l - 1) + 0.5``, unfloored, instead; tables are not interchangeable with its checkpoints.)
* Each level owns ``min(T, (N_l + 1)^D)`` rows of the table, ``T = 2^log2_hashmap_size``. Levels whose vertices fit
  (``(N_l + 1)^D <= T``) are indexed densely, ``i_x + (N_l + 1) i_y + (N_l + 1)^2 i_z`` (x fastest); the others
  by the spatial hash ``(i_x * 1) XOR (i_y * 2654435761) XOR (i_z * 805459861) mod T``, computed in int64 (its low
  bits, hence the result for ``T <= 2^32``, equal tiny-cuda-nn's uint32 hash).
* The ``2^D`` corners are interpolated (bi/trilinearly) with weights ``prod_d (frac_d or 1 - frac_d)``; corner
  ``c`` has offsets ``(c & 1, (c >> 1) & 1, (c >> 2) & 1)`` along ``(x, y, z)``.

All levels share one table ``embeddings`` of shape ``(total_rows, F)``; level ``l`` owns rows
``offsets[l]:offsets[l + 1]``.

:func:`hash_grid_encode` is the torch reference (the Triton kernel :mod:`nerfkit.kernels.hashgrid_triton` must
match it). It handles all levels at once, with no Python loop over levels: :func:`hash_grid_corners` builds the
``(n_points, L, 2^D)`` corner rows and weights by broadcasting (per dimension two terms, combined by outer
sums/XORs/products), then one ``torch.nn.functional.embedding_bag(mode="sum", per_sample_weights=...)`` gathers and
blends them. Its backward is written out (one 1-D ``index_add_`` per feature column into the table, and the weights'
gradient for ``x``): on CPU (2 threads) per-column accumulation is ~3x faster than accumulating ``(rows, F)``
slices (76 ms against 226 ms for 10^5 points, 8 levels). ``HashGridEncoder(compile=True)`` takes the fused loop
of :mod:`nerfkit.kernels.hashgrid_compiled` instead wherever the positions need no gradient (forward ~10x
faster on CPU; see ``benchmarks/hashgrid_cpu.py``). Differentiable (first order) w.r.t. the table and the positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..kernels import use_triton

__all__ = ["HashGridEncoder", "hash_grid_encode", "hash_grid_corners", "level_cells", "level_resolutions", "HASH_PRIMES"]

HASH_PRIMES = (1, 2654435761, 805459861)  # per dimension (x, y, z), as in Instant-NGP


def level_resolutions(n_levels: int, base_resolution: int, max_resolution: int = 2048,
                      per_level_scale: float | None = None) -> tuple[list[int], float]:
    """The per-level grid resolutions ``N_l = floor(base * b^l)`` and the growth factor ``b``.

    ``b = per_level_scale`` if given, else ``exp((ln max_resolution - ln base_resolution) / (n_levels - 1))``.
    """
    if per_level_scale is None:
        if n_levels == 1:
            per_level_scale = 1.0
        else:
            per_level_scale = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (n_levels - 1))
    return [int(math.floor(base_resolution * per_level_scale ** lvl + 1e-6)) for lvl in range(n_levels)], \
        float(per_level_scale)


def _level_multipliers(resolutions: Tensor, in_dim: int, log2_hashmap_size: int) -> tuple[Tensor, Tensor]:
    """Per level and dimension the multiplier of the vertex coordinate, ``(L, D)`` int64 -- ``(N_l + 1)^d`` for
    dense levels, the hash prime for hashed ones -- and the ``(L,)`` bool ``hashed`` flags."""
    res = resolutions.to(torch.int64)
    hashed = (res + 1) ** in_dim > 2 ** log2_hashmap_size
    strides = (res + 1)[:, None] ** torch.arange(in_dim, device=res.device)
    # primes as Python scalars: no host-to-device copy (which would wait for the GPU) in the forward pass
    mult = torch.stack([torch.where(hashed, HASH_PRIMES[d], strides[:, d]) for d in range(in_dim)], dim=-1)
    return mult, hashed


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def level_cells(x: Tensor, resolutions: Tensor) -> tuple[Tensor, Tensor]:
    """Each point's cell at every level and its position inside it.

    ``x (n_points, D)`` in ``[0, 1]`` (clamped), ``resolutions (L,)`` -> ``cell (n_points, L, D)`` int64 (the
    lower corner; ``x = 1`` lies in the last cell) and ``frac (n_points, L, D)`` in ``[0, 1]``, in ``x``'s dtype
    (at least float32), differentiable w.r.t. ``x``.
    """
    res_f = resolutions.to(_compute_dtype(x))
    pos = x.to(res_f.dtype).clamp(0.0, 1.0)[:, None, :] * res_f[:, None]  # (n, L, D)
    i0 = torch.minimum(pos.floor(), (res_f - 1.0)[:, None])  # x = 1 lies in the last cell
    return i0.long(), pos - i0


def hash_grid_corners(x: Tensor, offsets: Tensor, resolutions: Tensor, log2_hashmap_size: int,
                      n_dense: int | None = None) -> tuple[Tensor, Tensor]:
    """Table rows and interpolation weights of each point's ``2^D`` cell corners at every level.

    Args:
        x: ``(n_points, D)`` positions in ``[0, 1]`` (clamped), ``D`` in ``{2, 3}``.
        offsets: ``(L + 1,)`` or ``(L,)`` int64, first table row of each level.
        resolutions: ``(L,)`` int64 grid resolutions ``N_l``, non-decreasing (dense levels come first).
        log2_hashmap_size: ``log2 T``.
        n_dense: the number of dense levels ``#{l : (N_l + 1)^D <= T}`` if the caller knows it (saves reading it
            back from the device, and a graph break under ``torch.compile``).
    Returns:
        rows: ``(n_points, L, 2^D)`` rows of the shared table (level offset included); int32 when
        ``L * T < 2^31`` (half the memory traffic), else int64;
        weights: ``(n_points, L, 2^D)`` in ``x``'s dtype (at least float32), summing to 1, differentiable w.r.t. ``x``.

    Corner ``c`` is ``(c & 1, (c >> 1) & 1, ...)``. Vectorised over levels: per level and dimension, the two
    corners' terms ``(i0_d + {0, 1}) * m_{l,d}`` are combined by outer sums (dense levels; the cell's base row plus
    a per-level corner offset) or outer XORs (hashed levels, masked to ``T`` first).
    """
    n_levels, in_dim = resolutions.shape[0], x.shape[-1]
    mult, hashed = _level_multipliers(resolutions, in_dim, log2_hashmap_size)
    if n_dense is None:  # resolutions grow, so levels [0, n_dense) are the dense ones
        n_dense = n_levels - int(hashed.sum())
    cell, frac = level_cells(x, resolutions)
    w_dim = torch.stack([1.0 - frac, frac], dim=-1)  # (n, L, D, 2)
    weights = w_dim[:, :, 0]
    for d in range(1, in_dim):  # outer products; the lowest dimension varies fastest
        weights = (w_dim[:, :, d, :, None] * weights[:, :, None, :]).flatten(-2)

    index_dtype = torch.int32 if n_levels * 2 ** log2_hashmap_size < 2 ** 31 else torch.int64
    corner_bits = (torch.arange(2 ** in_dim, device=x.device)[:, None] >> torch.arange(in_dim, device=x.device)) & 1
    parts = []
    if n_dense:  # row = offset + sum_d (i0_d + bit_d) * (N + 1)^d = base(point) + corner_offset(level, corner)
        base = (cell[:, :n_dense] * mult[:n_dense]).sum(-1).to(index_dtype)  # (n, L_dense)
        corner = offsets[:n_dense, None] + (corner_bits * mult[:n_dense, None, :]).sum(-1)  # (L_dense, C)
        parts.append(base[:, :, None] + corner.to(index_dtype))
    if n_dense < n_levels:  # row = offset + (XOR_d (i0_d + bit_d) * prime_d) mod T
        bit = torch.arange(2, device=x.device)
        terms = ((cell[:, n_dense:, :, None] + bit) * mult[n_dense:, :, None]) & (2 ** log2_hashmap_size - 1)
        terms = terms.to(index_dtype)  # (n, L_hashed, D, 2)
        hashed_rows = terms[:, :, 0]
        for d in range(1, in_dim):
            hashed_rows = (terms[:, :, d, :, None] ^ hashed_rows[:, :, None, :]).flatten(-2)
        parts.append(hashed_rows + offsets[n_dense:n_levels, None].to(index_dtype))
    rows = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    return rows, weights


class _WeightedRowSum(torch.autograd.Function):
    """``out[i] = sum_c weights[i, c] * table[rows[i, c]]``: forward by ``embedding_bag``, backward by
    ``index_add_`` (on CPU ~2.5x faster than ``embedding_bag``'s own backward into a large table)."""

    @staticmethod
    def forward(ctx, rows: Tensor, weights: Tensor, table: Tensor) -> Tensor:
        ctx.save_for_backward(rows, weights, table)
        return F.embedding_bag(rows, table, per_sample_weights=weights, mode="sum")

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        rows, weights, table = ctx.saved_tensors
        flat_rows = rows.reshape(-1).long()  # index_add_ is much slower with int32 indices
        grad_weights = grad_table = None
        if ctx.needs_input_grad[2]:  # one column at a time: 1-D index_add_ is ~3x faster than (rows, F) slices
            grad_table = torch.stack([table.new_zeros(table.shape[0]).index_add_(
                0, flat_rows, (weights * grad[:, f, None]).reshape(-1).to(table.dtype)) for f in range(table.shape[1])],
                dim=-1)
        if ctx.needs_input_grad[1]:
            grad_weights = (table.index_select(0, flat_rows).view(*rows.shape, -1) * grad[:, None, :]).sum(-1)
        return None, grad_weights, grad_table


def hash_grid_encode(x: Tensor, embeddings: Tensor, offsets: Tensor, resolutions: Tensor, log2_hashmap_size: int,
                     n_dense: int | None = None) -> Tensor:
    """Multiresolution hash encoding, torch reference (see the module docstring for the conventions).

    Args:
        x: ``(..., D)`` positions in ``[0, 1]``, ``D`` in ``{2, 3}``; values outside are clamped (their gradient is 0).
        embeddings: ``(total_rows, F)`` table of all levels.
        offsets: ``(L + 1,)`` int64, level ``l`` owns rows ``offsets[l]:offsets[l + 1]``.
        resolutions: ``(L,)`` int64 grid resolutions, non-decreasing.
        log2_hashmap_size: ``log2 T``, the largest per-level table.
        n_dense: the number of dense levels, if known (see :func:`hash_grid_corners`).
    Returns: ``(..., L * F)`` in ``embeddings``' dtype, level-major (level ``l`` in columns ``l*F:(l+1)*F``);
    differentiable (first order) w.r.t. ``embeddings`` and ``x``.
    """
    batch, in_dim = x.shape[:-1], x.shape[-1]
    n_levels, n_feat = resolutions.shape[0], embeddings.shape[-1]
    rows, weights = hash_grid_corners(x.reshape(-1, in_dim), offsets, resolutions, log2_hashmap_size, n_dense)
    n_corners = rows.shape[-1]
    out = _WeightedRowSum.apply(rows.view(-1, n_corners), weights.view(-1, n_corners).to(embeddings.dtype),
                                embeddings)
    return out.view(*batch, n_levels * n_feat)


class HashGridEncoder(nn.Module):
    """Multiresolution hash encoding of positions in ``[0, 1]^D`` (Instant-NGP), ``D`` in ``{2, 3}``.

    Args:
        in_dim: input dimension, 3 (trilinear) or 2 (bilinear).
        n_levels: number of levels ``L``.
        n_features_per_level: features per level ``F``.
        log2_hashmap_size: ``log2 T``; each level has ``min(T, (N_l + 1)^D)`` table rows.
        base_resolution: coarsest resolution ``N_min``.
        max_resolution: finest resolution ``N_max`` (ignored when ``per_level_scale`` is given).
        per_level_scale: growth factor ``b`` between levels; overrides ``max_resolution``.
        init_scale: the table starts uniform in ``[-init_scale, init_scale]``.
        compile: off CUDA, encode with the fused loop that ``torch.compile`` generates
            (:mod:`nerfkit.kernels.hashgrid_compiled`; forward ~10x faster on CPU, after ~20 s of compilation once
            per process, less when inductor's disk cache has it) wherever the positions need no gradient; the
            reference where they do, or where the compiler is unavailable (with one warning).

    Input ``(..., in_dim)`` in ``[0, 1]`` (values outside are clamped: normalise scene boxes first); output
    ``(..., out_dim)``, ``out_dim = L * F``, level-major, in the table's dtype. Conventions (vertex positions, cell of
    ``x = 1``, dense order, hash) are those of the paper and are spelled out in :mod:`nerfkit.encoders.hashgrid`.
    Differentiable w.r.t. the table and the input, on both paths: the torch reference :func:`hash_grid_encode`, and
    the fused Triton kernel (:mod:`nerfkit.kernels.hashgrid_triton`) where :func:`nerfkit.kernels.use_triton`
    selects it (CUDA tensors). Second derivatives only on the torch path.

    Attributes: ``embeddings`` ``(total_rows, F)`` parameter; buffers ``offsets`` ``(L + 1,)`` and ``resolutions``
    ``(L,)`` (int64, derived from the arguments, not saved in ``state_dict``); ``level_resolutions``,
    ``level_sizes`` (Python lists), ``n_dense`` (levels indexed densely) and ``per_level_scale``.
    """

    def __init__(self, in_dim: int = 3, n_levels: int = 16, n_features_per_level: int = 2,
                 log2_hashmap_size: int = 19, base_resolution: int = 16, max_resolution: int = 2048,
                 per_level_scale: float | None = None, init_scale: float = 1e-4, compile: bool = False) -> None:
        super().__init__()
        if in_dim not in (2, 3):
            raise ValueError(f"HashGridEncoder supports in_dim 2 (bilinear) or 3 (trilinear), got {in_dim}")
        if n_levels < 1 or n_features_per_level < 1:
            raise ValueError(f"n_levels and n_features_per_level must be >= 1, got {n_levels}, {n_features_per_level}")
        if not 1 <= log2_hashmap_size <= 32:
            raise ValueError(f"log2_hashmap_size must be in [1, 32], got {log2_hashmap_size}")
        if base_resolution < 1:
            raise ValueError(f"base_resolution must be >= 1, got {base_resolution}")
        if per_level_scale is None and max_resolution < base_resolution:
            raise ValueError(f"max_resolution ({max_resolution}) must be >= base_resolution ({base_resolution})")
        if per_level_scale is not None and per_level_scale < 1.0:
            raise ValueError(f"per_level_scale must be >= 1, got {per_level_scale}")
        self.in_dim, self.n_levels, self.n_features_per_level = in_dim, n_levels, n_features_per_level
        self.log2_hashmap_size, self.init_scale = log2_hashmap_size, init_scale
        self.level_resolutions, self.per_level_scale = level_resolutions(n_levels, base_resolution, max_resolution,
                                                                         per_level_scale)
        self.level_sizes = [min(2 ** log2_hashmap_size, (n + 1) ** in_dim) for n in self.level_resolutions]
        self.n_dense = sum((n + 1) ** in_dim <= 2 ** log2_hashmap_size for n in self.level_resolutions)
        self.compile = compile
        offsets = [0]
        for size in self.level_sizes:
            offsets.append(offsets[-1] + size)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.int64), persistent=False)
        self.register_buffer("resolutions", torch.tensor(self.level_resolutions, dtype=torch.int64), persistent=False)
        self.embeddings = nn.Parameter(torch.empty(offsets[-1], n_features_per_level))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Redraws the table uniformly in ``[-init_scale, init_scale]``."""
        with torch.no_grad():
            self.embeddings.uniform_(-self.init_scale, self.init_scale, generator=generator)

    @property
    def out_dim(self) -> int:
        return self.n_levels * self.n_features_per_level

    def takes_encoded(self, x: Tensor) -> bool:
        """Whether :meth:`forward` on positions like ``x`` runs the fused CPU loop, which can take the encoding
        from an earlier gradient-free pass (``encoded``)."""
        if not self.compile or x.requires_grad or use_triton(x, self.embeddings):
            return False
        from ..kernels.hashgrid_compiled import MIN_POINTS, compiled_encoding_available

        return x.numel() >= MIN_POINTS * self.in_dim and compiled_encoding_available()

    def extra_repr(self) -> str:
        return (f"in_dim={self.in_dim}, n_levels={self.n_levels}, n_features_per_level={self.n_features_per_level}, "
                f"log2_hashmap_size={self.log2_hashmap_size}, resolutions={self.level_resolutions[0]}.."
                f"{self.level_resolutions[-1]} (x{self.per_level_scale:.4f}), rows={self.embeddings.shape[0]}")

    def forward(self, x: Tensor, encoded: Tensor | None = None) -> Tensor:
        """``(..., in_dim)`` in ``[0, 1]`` -> ``(..., n_levels * n_features_per_level)``.

        ``encoded``: optionally, this very result, computed before without gradient (the density pass of
        early stopping computes it for every sample): where the fused CPU loop runs, it is taken as the output and
        only the gradient into the table is computed; elsewhere it is ignored.
        """
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"expected (..., {self.in_dim}) positions, got shape {tuple(x.shape)}")
        if encoded is not None and encoded.shape != (*x.shape[:-1], self.out_dim):
            raise ValueError(f"encoded has shape {tuple(encoded.shape)}, expected "
                             f"{(*x.shape[:-1], self.out_dim)} for positions of shape {tuple(x.shape)}")
        if use_triton(x, self.embeddings):
            from ..kernels.hashgrid_triton import hash_grid_encode_triton

            return hash_grid_encode_triton(x, self.embeddings, self.offsets, self.resolutions, self.log2_hashmap_size)
        if self.takes_encoded(x):
            # imported here: torch.compile's machinery (and with it triton) loads only when asked for
            from ..kernels.hashgrid_compiled import hash_grid_encode_compiled

            out = hash_grid_encode_compiled(
                x.reshape(-1, self.in_dim), self.embeddings, self.offsets, self.resolutions, self.log2_hashmap_size,
                None if encoded is None else encoded.reshape(-1, self.out_dim))
            if out is not None:
                return out.view(*x.shape[:-1], self.out_dim)
        return hash_grid_encode(x, self.embeddings, self.offsets, self.resolutions, self.log2_hashmap_size,
                                n_dense=self.n_dense)
