"""Segmented scans (Triton): inclusive/exclusive sums and products over packed segments and batched rows.

Torch reference it must match: :mod:`nerfkit.render.scan` (``inclusive_sum``, ``exclusive_sum``,
``inclusive_prod``, ``exclusive_prod``), forward values and gradients.

Layout: one program per ray (segment ``[start, start + count)`` of the flat input, from ``packed_info``); it walks
the ray in ``BLOCK``-sized chunks, scanning each chunk with ``tl.cumsum``/``tl.cumprod``/``tl.associative_scan``
and carrying the running total into the next. Batched rows ``(..., n)`` are scanned as packed segments of equal
length ``n``. Accumulation is in float32 (float64 for float64 inputs).

Gradients (``torch.autograd.Function``, first order):

* sums: the gradient is the reverse segmented sum of the output gradient (inclusive -> inclusive, exclusive ->
  exclusive);
* products, exact with zeros (nothing is divided by the input): with ``E_i = prod_{j<i} x_j`` (the exclusive
  product), ``dL/dx_i = E_i * R_i`` where ``R`` runs backwards along the ray through the linear recurrence
  ``R_i = a_i + x_{i+1} * R_{i+1}`` (``R`` past the ray's end is 0), ``a_i = g_i`` for the inclusive product and
  ``a_i = g_{i+1}`` (0 at the ray's end) for the exclusive one. The recurrence is an associative scan of affine
  maps ``R -> a + b * R``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import check_launchable

__all__ = ["segment_scan", "DEFAULT_BLOCK"]

DEFAULT_BLOCK = 128


@triton.jit
def _scan_kernel(x_ptr, info_ptr, out_ptr,
                 IS_PROD: tl.constexpr, EXCLUSIVE: tl.constexpr, REVERSE: tl.constexpr, BLOCK: tl.constexpr):
    """out = (exclusive|inclusive) (sum|prod) of x along each segment, forwards or backwards (REVERSE)."""
    ray = tl.program_id(0).to(tl.int64)
    start = tl.load(info_ptr + 2 * ray)
    count = tl.load(info_ptr + 2 * ray + 1)
    lanes = tl.arange(0, BLOCK)
    acc_dtype = out_ptr.dtype.element_ty
    if IS_PROD:
        carry = tl.sum(tl.zeros([BLOCK], dtype=acc_dtype), axis=0) + 1.0
    else:
        carry = tl.sum(tl.zeros([BLOCK], dtype=acc_dtype), axis=0)
    for off in range(0, count, BLOCK):
        r = off + lanes  # position along the scan direction
        valid = r < count
        if EXCLUSIVE:  # the exclusive scan is the inclusive scan of the input shifted by one
            src = r - 1
            src_valid = valid & (r >= 1)
        else:
            src = r
            src_valid = valid
        if REVERSE:
            src = count - 1 - src
            dst = count - 1 - r
        else:
            dst = r
        if IS_PROD:
            x = tl.load(x_ptr + start + src, mask=src_valid, other=1.0).to(acc_dtype)
            out = carry * tl.cumprod(x, axis=0)
        else:
            x = tl.load(x_ptr + start + src, mask=src_valid, other=0.0).to(acc_dtype)
            out = carry + tl.cumsum(x, axis=0)
        tl.store(out_ptr + start + dst, out, mask=valid)
        carry = tl.sum(tl.where(lanes == BLOCK - 1, out, 0.0), axis=0)  # padding lanes hold the identity


@triton.jit
def _affine_combine(a1, b1, a2, b2):
    """Composition of ``R -> a1 + b1 * R`` (applied first) and ``R -> a2 + b2 * R``."""
    return a2 + b2 * a1, b2 * b1


@triton.jit
def _prod_backward_kernel(x_ptr, grad_ptr, excl_ptr, info_ptr, out_ptr,
                          EXCLUSIVE: tl.constexpr, BLOCK: tl.constexpr):
    """out_i = excl_i * R_i with R_i = a_i + x_{i+1} R_{i+1} run from each segment's end (see module docstring)."""
    ray = tl.program_id(0).to(tl.int64)
    start = tl.load(info_ptr + 2 * ray)
    count = tl.load(info_ptr + 2 * ray + 1)
    lanes = tl.arange(0, BLOCK)
    acc_dtype = out_ptr.dtype.element_ty
    carry = tl.sum(tl.zeros([BLOCK], dtype=acc_dtype), axis=0)  # R one past the current chunk (0 past the end)
    for off in range(0, count, BLOCK):
        r = off + lanes  # position counted from the segment's end
        valid = r < count
        i = count - 1 - r
        has_next = valid & (r >= 1)  # i + 1 < count
        b = tl.load(x_ptr + start + i + 1, mask=has_next, other=1.0).to(acc_dtype)
        if EXCLUSIVE:
            a = tl.load(grad_ptr + start + i + 1, mask=has_next, other=0.0).to(acc_dtype)
        else:
            a = tl.load(grad_ptr + start + i, mask=valid, other=0.0).to(acc_dtype)
        # padding lanes load the identity map (a = 0, b = 1), so the last lane ends the chunk
        acc_a, acc_b = tl.associative_scan((a, b), 0, _affine_combine)
        rec = acc_a + acc_b * carry
        e = tl.load(excl_ptr + start + i, mask=valid, other=0.0).to(acc_dtype)
        tl.store(out_ptr + start + i, e * rec, mask=valid)
        carry = tl.sum(tl.where(lanes == BLOCK - 1, rec, 0.0), axis=0)


def _launch_scan(x: Tensor, packed_info: Tensor, is_prod: bool, exclusive: bool, reverse: bool,
                 block: int) -> Tensor:
    out = torch.empty_like(x)
    n_rays = packed_info.shape[0]
    if n_rays == 0 or x.numel() == 0:
        return out.fill_(1.0 if is_prod else 0.0)
    check_launchable(_scan_kernel, x)
    _scan_kernel[(n_rays,)](x, packed_info, out, IS_PROD=is_prod, EXCLUSIVE=exclusive, REVERSE=reverse,
                            BLOCK=block)
    return out


class _SegmentScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, packed_info: Tensor, is_prod: bool, exclusive: bool, block: int) -> Tensor:
        out = _launch_scan(x, packed_info, is_prod, exclusive, reverse=False, block=block)
        ctx.is_prod, ctx.exclusive, ctx.block = is_prod, exclusive, block
        if is_prod:
            ctx.save_for_backward(x, packed_info, out)
        else:
            ctx.save_for_backward(packed_info)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous()
        if not ctx.is_prod:
            (packed_info,) = ctx.saved_tensors
            return _launch_scan(grad, packed_info, False, ctx.exclusive, True, ctx.block), None, None, None, None
        x, packed_info, out = ctx.saved_tensors
        grad_x = torch.zeros_like(x)
        if packed_info.shape[0] == 0 or x.numel() == 0:
            return grad_x, None, None, None, None
        excl = out if ctx.exclusive else _launch_scan(x, packed_info, True, True, False, ctx.block)
        grad = grad.to(x.dtype)
        check_launchable(_prod_backward_kernel, x)
        _prod_backward_kernel[(packed_info.shape[0],)](x, grad, excl, packed_info, grad_x,
                                                       EXCLUSIVE=ctx.exclusive, BLOCK=ctx.block)
        return grad_x, None, None, None, None


def _check_block(block: int) -> None:
    if block < 1 or block & (block - 1):
        raise ValueError(f"block must be a positive power of two, got {block}")


def segment_scan(inputs: Tensor, packed_info: Tensor | None, op: str, exclusive: bool,
                 block: int = DEFAULT_BLOCK) -> Tensor:
    """Triton version of :func:`nerfkit.render.scan._scan` (same arguments, same result, differentiable).

    Args:
        inputs: batched ``(..., n_samples)`` (``packed_info=None``) or packed ``(N,)`` floating-point values.
        packed_info: ``(n_rays, 2) = [start, count]`` for packed input.
        op: ``"sum"`` or ``"prod"``.
        exclusive: exclude the current sample.
        block: samples per chunk (a power of two).
    """
    if op not in ("sum", "prod"):
        raise ValueError(f"op must be 'sum' or 'prod', got {op!r}")
    _check_block(block)
    orig_dtype = inputs.dtype
    acc_dtype = torch.float64 if orig_dtype == torch.float64 else torch.float32
    if packed_info is None:
        shape = inputs.shape
        width = shape[-1] if inputs.ndim else 1
        rows = inputs.reshape(-1 if width else inputs.numel(), width)
        starts = torch.arange(rows.shape[0], device=inputs.device, dtype=torch.int64) * width
        info = torch.stack([starts, torch.full_like(starts, width)], dim=-1)
        flat = rows.reshape(-1)
    else:
        if inputs.ndim != 1:
            raise ValueError(f"packed inputs must be 1-D (N,), got shape {tuple(inputs.shape)}")
        info = packed_info.to(device=inputs.device, dtype=torch.int64).contiguous()
        flat = inputs
    out = _SegmentScan.apply(flat.to(acc_dtype).contiguous(), info, op == "prod", exclusive, block)
    out = out.to(orig_dtype)
    return out.reshape(inputs.shape) if packed_info is None else out
