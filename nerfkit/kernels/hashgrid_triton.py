"""Multiresolution hash encoding (Triton): fused corner indexing, trilinear interpolation and its backward.

Torch reference it must match: :func:`nerfkit.encoders.hashgrid.hash_grid_encode` (corner rows and weights from
:func:`nerfkit.encoders.hashgrid.hash_grid_corners`; the conventions -- vertex positions, cell of ``x = 1``, dense
order, hash -- are in :mod:`nerfkit.encoders.hashgrid`), forward values and gradients w.r.t. the table and the
positions.

Layout: one program per (block of ``BLOCK`` points, level). It loads the points' coordinates and the level's
resolution, row offset, per-dimension multipliers (``(N_l + 1)^d`` for a dense level, the hash primes for a hashed
one, :func:`nerfkit.encoders.hashgrid._level_multipliers`) and dense/hashed flag, then for each of the ``2^D``
corners (unrolled) computes the row and the weight with the same floating-point operations as the reference and
gathers the ``F`` features as a ``(BLOCK, F)`` tile. Positions are computed in the inputs' dtype (float32 at least),
features accumulated in float32 (float64 for float64 tables) and stored in the table's dtype.

Backward (``torch.autograd.Function``, first order), same grid: the table gradient is accumulated with atomic adds of
``grad_out * weight`` into a float32 (float64) buffer -- rows shared by several points, corners or hash collisions
add up; the summation order, hence the last bits, vary from run to run on a GPU -- and, when the positions need a
gradient, each program writes its level's ``N_l * sum_c (feature_c . grad_out) * dweight_c / dfrac`` to a
``(n_points, L, D)`` buffer that is summed over levels in torch (no atomics) and zeroed where ``x`` was clamped.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..encoders.hashgrid import _compute_dtype, _level_multipliers
from . import check_launchable

__all__ = ["hash_grid_encode_triton", "DEFAULT_BLOCK"]

DEFAULT_BLOCK = 128


@triton.jit
def _axis(x_ptr, pts, valid, d: tl.constexpr, D: tl.constexpr, res_f):
    """Cell index ``i0`` (int64) and fraction along dimension ``d`` (the reference's ``pos``, ``i0``, ``frac``)."""
    xd = tl.load(x_ptr + pts * D + d, mask=valid, other=0.0)
    pos = tl.minimum(tl.maximum(xd, 0.0), 1.0) * res_f
    i0 = tl.minimum(tl.floor(pos), res_f - 1.0)
    return i0.to(tl.int64), pos - i0


@triton.jit
def _side(frac, BIT: tl.constexpr):
    """Linear-interpolation weight of the lower (BIT=0) or upper (BIT=1) vertex."""
    if BIT:
        return frac
    else:
        return 1.0 - frac


@triton.jit
def _level_setup(x_ptr, res_ptr, off_ptr, mult_ptr, hashed_ptr, pts, valid, level, D: tl.constexpr):
    res = tl.load(res_ptr + level)
    res_f = res.to(x_ptr.dtype.element_ty)
    base = tl.load(off_ptr + level)
    hashed = tl.load(hashed_ptr + level) != 0
    my = tl.load(mult_ptr + level * D + 1)
    cx, fx = _axis(x_ptr, pts, valid, 0, D, res_f)
    cy, fy = _axis(x_ptr, pts, valid, 1, D, res_f)
    if D == 3:
        mz = tl.load(mult_ptr + level * D + 2)
        cz, fz = _axis(x_ptr, pts, valid, 2, D, res_f)
    else:
        mz = my
        cz, fz = cy, fy  # unused
    return res_f, base, hashed, my, mz, cx, fx, cy, fy, cz, fz


@triton.jit
def _corner(base, hashed, hash_mask, my, mz, cx, fx, cy, fy, cz, fz, C: tl.constexpr, D: tl.constexpr):
    """Table row and weights (``w``, and per-dimension ``wx, wy, wz``) of corner ``C`` (bit d = offset along d)."""
    tx = cx + (C & 1)
    ty = (cy + ((C >> 1) & 1)) * my
    wx = _side(fx, C & 1)
    wy = _side(fy, (C >> 1) & 1)
    if D == 3:
        tz = (cz + ((C >> 2) & 1)) * mz
        wz = _side(fz, (C >> 2) & 1)
        row = tl.where(hashed, (tx ^ ty ^ tz) & hash_mask, tx + ty + tz)
        w = wz * (wy * wx)  # the reference's order of products
    else:
        wz = wy  # unused
        row = tl.where(hashed, (tx ^ ty) & hash_mask, tx + ty)
        w = wy * wx
    return base + row, w, wx, wy, wz


@triton.jit
def _hashgrid_fwd_kernel(x_ptr, emb_ptr, out_ptr, res_ptr, off_ptr, mult_ptr, hashed_ptr, n_points, out_stride,
                         hash_mask, D: tl.constexpr, F: tl.constexpr, F_PAD: tl.constexpr, BLOCK: tl.constexpr):
    """out[p, level * F + f] = sum_c w_c(p) * emb[row_c(p), f]."""
    level = tl.program_id(1)
    pts = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = pts < n_points
    cols = tl.arange(0, F_PAD)
    mask = valid[:, None] & (cols < F)[None, :]
    res_f, base, hashed, my, mz, cx, fx, cy, fy, cz, fz = _level_setup(x_ptr, res_ptr, off_ptr, mult_ptr, hashed_ptr,
                                                                       pts, valid, level, D)
    emb_dtype = emb_ptr.dtype.element_ty
    acc_dtype = tl.float64 if emb_dtype == tl.float64 else tl.float32
    acc = tl.zeros([BLOCK, F_PAD], dtype=acc_dtype)
    for c in tl.static_range(2 ** D):
        row, w, wx, wy, wz = _corner(base, hashed, hash_mask, my, mz, cx, fx, cy, fy, cz, fz, c, D)
        feat = tl.load(emb_ptr + row[:, None] * F + cols[None, :], mask=mask, other=0.0)
        acc += w.to(emb_dtype).to(acc_dtype)[:, None] * feat.to(acc_dtype)
    tl.store(out_ptr + pts[:, None] * out_stride + level * F + cols[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=mask)


@triton.jit
def _hashgrid_bwd_kernel(x_ptr, emb_ptr, gout_ptr, gemb_ptr, gx_ptr, res_ptr, off_ptr, mult_ptr, hashed_ptr,
                         n_points, n_levels, out_stride, hash_mask, D: tl.constexpr, F: tl.constexpr,
                         F_PAD: tl.constexpr, NEED_EMB: tl.constexpr, NEED_X: tl.constexpr, BLOCK: tl.constexpr):
    """gemb[row_c(p), f] += w_c(p) * gout[p, level * F + f] (atomics); gx[p, level, d] = N * d out . gout / d frac_d."""
    level = tl.program_id(1)
    pts = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = pts < n_points
    cols = tl.arange(0, F_PAD)
    mask = valid[:, None] & (cols < F)[None, :]
    res_f, base, hashed, my, mz, cx, fx, cy, fy, cz, fz = _level_setup(x_ptr, res_ptr, off_ptr, mult_ptr, hashed_ptr,
                                                                       pts, valid, level, D)
    emb_dtype = emb_ptr.dtype.element_ty
    acc_dtype = gemb_ptr.dtype.element_ty
    g = tl.load(gout_ptr + pts[:, None] * out_stride + level * F + cols[None, :], mask=mask, other=0.0).to(acc_dtype)
    gfx = tl.zeros([BLOCK], dtype=fx.dtype)
    gfy = tl.zeros([BLOCK], dtype=fx.dtype)
    gfz = tl.zeros([BLOCK], dtype=fx.dtype)
    for c in tl.static_range(2 ** D):
        row, w, wx, wy, wz = _corner(base, hashed, hash_mask, my, mz, cx, fx, cy, fy, cz, fz, c, D)
        if NEED_EMB:
            tl.atomic_add(gemb_ptr + row[:, None] * F + cols[None, :],
                          w.to(emb_dtype).to(acc_dtype)[:, None] * g, mask=mask)
        if NEED_X:
            feat = tl.load(emb_ptr + row[:, None] * F + cols[None, :], mask=mask, other=0.0).to(acc_dtype)
            s = tl.sum(feat * g, axis=1).to(fx.dtype)  # d loss / d w_c
            if D == 3:
                dx = s * (wz * wy)
                dy = s * (wz * wx)
                dz = s * (wy * wx)
                if (c >> 2) & 1:
                    gfz += dz
                else:
                    gfz -= dz
            else:
                dx = s * wy
                dy = s * wx
            if c & 1:
                gfx += dx
            else:
                gfx -= dx
            if (c >> 1) & 1:
                gfy += dy
            else:
                gfy -= dy
    if NEED_X:
        gx = gx_ptr + (pts * n_levels + level) * D
        tl.store(gx, gfx * res_f, mask=valid)
        tl.store(gx + 1, gfy * res_f, mask=valid)
        if D == 3:
            tl.store(gx + 2, gfz * res_f, mask=valid)


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


class _HashGridEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, embeddings: Tensor, offsets: Tensor, resolutions: Tensor, mult: Tensor,
                hashed: Tensor, hash_mask: int, block: int) -> Tensor:
        n_points, in_dim = x.shape
        n_levels, n_feat = resolutions.shape[0], embeddings.shape[1]
        out = torch.zeros(n_points, n_levels * n_feat, dtype=embeddings.dtype, device=x.device)
        ctx.save_for_backward(x, embeddings, offsets, resolutions, mult, hashed)
        ctx.hash_mask, ctx.block = hash_mask, block
        if n_points == 0 or n_levels == 0:
            return out
        check_launchable(_hashgrid_fwd_kernel, x)
        grid = (triton.cdiv(n_points, block), n_levels)
        _hashgrid_fwd_kernel[grid](x, embeddings, out, resolutions, offsets, mult, hashed, n_points, out.shape[1],
                                   hash_mask, D=in_dim, F=n_feat, F_PAD=triton.next_power_of_2(n_feat), BLOCK=block)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, embeddings, offsets, resolutions, mult, hashed = ctx.saved_tensors
        need_x, need_emb = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n_points, in_dim = x.shape
        n_levels, n_feat = resolutions.shape[0], embeddings.shape[1]
        grad_emb = torch.zeros(embeddings.shape, dtype=_acc_dtype(embeddings.dtype), device=x.device)
        grad_levels = torch.zeros((n_points, n_levels, in_dim) if need_x else (1,), dtype=x.dtype, device=x.device)
        if n_points and n_levels and (need_x or need_emb):
            check_launchable(_hashgrid_bwd_kernel, x)
            grid = (triton.cdiv(n_points, ctx.block), n_levels)
            _hashgrid_bwd_kernel[grid](x, embeddings, grad.contiguous(), grad_emb, grad_levels, resolutions, offsets,
                                       mult, hashed, n_points, n_levels, grad.shape[1], ctx.hash_mask, D=in_dim,
                                       F=n_feat, F_PAD=triton.next_power_of_2(n_feat), NEED_EMB=need_emb,
                                       NEED_X=need_x, BLOCK=ctx.block)
        grad_x = None
        if need_x:  # clamp's gradient: zero outside [0, 1]
            grad_x = grad_levels.sum(1) * ((x >= 0) & (x <= 1))
        return grad_x, grad_emb.to(embeddings.dtype) if need_emb else None, None, None, None, None, None, None


def hash_grid_encode_triton(x: Tensor, embeddings: Tensor, offsets: Tensor, resolutions: Tensor,
                            log2_hashmap_size: int, block: int = DEFAULT_BLOCK) -> Tensor:
    """Triton version of :func:`nerfkit.encoders.hashgrid.hash_grid_encode` (same arguments, same result,
    differentiable w.r.t. ``x`` and ``embeddings``).

    Args:
        x: ``(..., D)`` positions in ``[0, 1]`` (clamped), ``D`` in ``{2, 3}``.
        embeddings: ``(total_rows, F)`` table of all levels.
        offsets: ``(L + 1,)`` int64 first row of each level.
        resolutions: ``(L,)`` int64 grid resolutions.
        log2_hashmap_size: ``log2 T``.
        block: points per program (a power of two).
    Returns: ``(..., L * F)`` in ``embeddings``' dtype.
    """
    if block < 1 or block & (block - 1):
        raise ValueError(f"block must be a positive power of two, got {block}")
    batch, in_dim = x.shape[:-1], x.shape[-1]
    if in_dim not in (2, 3):
        raise ValueError(f"positions must be (..., 2) or (..., 3), got shape {tuple(x.shape)}")
    mult, hashed = _level_multipliers(resolutions, in_dim, log2_hashmap_size)
    flat = x.reshape(-1, in_dim).to(_compute_dtype(x)).contiguous()
    out = _HashGridEncode.apply(flat, embeddings.contiguous(), offsets.to(torch.int64).contiguous(),
                                resolutions.to(torch.int64).contiguous(), mult.contiguous(),
                                hashed.to(torch.int32), 2 ** log2_hashmap_size - 1, block)
    return out.view(*batch, out.shape[-1])
