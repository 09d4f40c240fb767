"""Fused weights/transmittance/opacity from density for packed samples (Triton).

Torch reference it must match: :func:`nerfkit.render.volrend.render_weight_from_density` and
:func:`nerfkit.render.volrend.render_transmittance_from_density` on packed input (``prefix_trans`` is applied by
the caller), forward values and gradients w.r.t. ``t_starts``, ``t_ends`` and ``sigmas``.

With ``s_i = sigma_i * (t_end_i - t_start_i)`` along each ray:
``trans_i = exp(-sum_{j<i} s_j)``, ``alpha_i = 1 - exp(-s_i)``, ``w_i = trans_i * alpha_i``.

Forward: one program per ray walks it in ``BLOCK``-sized chunks, carrying the running optical depth.
Backward: one reverse pass per ray, carrying ``sum_{k>i} (gw_k * w_k + gT_k * trans_k)``::

    dL/ds_i = (gw_i * trans_i + galpha_i) * exp(-s_i) - sum_{k>i} (gw_k * w_k + gT_k * trans_k)

then ``dL/dsigma_i = dL/ds_i * dt_i``, ``dL/dt_end_i = dL/ds_i * sigma_i = -dL/dt_start_i``.
Accumulation is in float32 (float64 for float64 inputs).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import check_launchable

__all__ = ["weights_from_density_packed", "DEFAULT_BLOCK"]

DEFAULT_BLOCK = 128


@triton.jit
def _weights_forward_kernel(t0_ptr, t1_ptr, sigma_ptr, info_ptr, w_ptr, trans_ptr, alpha_ptr,
                            BLOCK: tl.constexpr):
    ray = tl.program_id(0).to(tl.int64)
    start = tl.load(info_ptr + 2 * ray)
    count = tl.load(info_ptr + 2 * ray + 1)
    lanes = tl.arange(0, BLOCK)
    acc_dtype = w_ptr.dtype.element_ty
    carry = tl.sum(tl.zeros([BLOCK], dtype=acc_dtype), axis=0)  # optical depth before the chunk
    for off in range(0, count, BLOCK):
        idx = off + lanes
        valid = idx < count
        ptr = start + idx
        t0 = tl.load(t0_ptr + ptr, mask=valid, other=0.0).to(acc_dtype)
        t1 = tl.load(t1_ptr + ptr, mask=valid, other=0.0).to(acc_dtype)
        sigma = tl.load(sigma_ptr + ptr, mask=valid, other=0.0).to(acc_dtype)
        s = sigma * (t1 - t0)
        incl = carry + tl.cumsum(s, axis=0)
        trans = tl.exp(-(incl - s))
        alpha = 1.0 - tl.exp(-s)
        tl.store(w_ptr + ptr, trans * alpha, mask=valid)
        tl.store(trans_ptr + ptr, trans, mask=valid)
        tl.store(alpha_ptr + ptr, alpha, mask=valid)
        carry = tl.sum(tl.where(lanes == BLOCK - 1, incl, 0.0), axis=0)


@triton.jit
def _weights_backward_kernel(t0_ptr, t1_ptr, sigma_ptr, info_ptr, w_ptr, trans_ptr,
                             gw_ptr, gtrans_ptr, galpha_ptr, gsigma_ptr, gt0_ptr, gt1_ptr,
                             NEED_T: tl.constexpr, BLOCK: tl.constexpr):
    ray = tl.program_id(0).to(tl.int64)
    start = tl.load(info_ptr + 2 * ray)
    count = tl.load(info_ptr + 2 * ray + 1)
    lanes = tl.arange(0, BLOCK)
    acc_dtype = gsigma_ptr.dtype.element_ty
    carry = tl.sum(tl.zeros([BLOCK], dtype=acc_dtype), axis=0)  # sum_{k past the chunk} (gw_k w_k + gT_k T_k)
    for off in range(0, count, BLOCK):
        r = off + lanes  # position counted from the ray's end
        valid = r < count
        ptr = start + (count - 1 - r)
        t0 = tl.load(t0_ptr + ptr, mask=valid, other=0.0).to(acc_dtype)
        t1 = tl.load(t1_ptr + ptr, mask=valid, other=0.0).to(acc_dtype)
        sigma = tl.load(sigma_ptr + ptr, mask=valid, other=0.0).to(acc_dtype)
        w = tl.load(w_ptr + ptr, mask=valid, other=0.0).to(acc_dtype)
        trans = tl.load(trans_ptr + ptr, mask=valid, other=0.0).to(acc_dtype)
        gw = tl.load(gw_ptr + ptr, mask=valid, other=0.0).to(acc_dtype)
        gtrans = tl.load(gtrans_ptr + ptr, mask=valid, other=0.0).to(acc_dtype)
        galpha = tl.load(galpha_ptr + ptr, mask=valid, other=0.0).to(acc_dtype)
        dt = t1 - t0
        q = gw * w + gtrans * trans
        incl = carry + tl.cumsum(q, axis=0)
        ds = (gw * trans + galpha) * tl.exp(-(sigma * dt)) - (incl - q)
        tl.store(gsigma_ptr + ptr, ds * dt, mask=valid)
        if NEED_T:
            tl.store(gt1_ptr + ptr, ds * sigma, mask=valid)
            tl.store(gt0_ptr + ptr, -ds * sigma, mask=valid)
        carry = tl.sum(tl.where(lanes == BLOCK - 1, incl, 0.0), axis=0)


class _WeightsFromDensity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t_starts: Tensor, t_ends: Tensor, sigmas: Tensor, packed_info: Tensor, block: int):
        weights, trans, alphas = (torch.empty_like(sigmas) for _ in range(3))
        n_rays = packed_info.shape[0]
        if n_rays > 0 and sigmas.numel() > 0:
            check_launchable(_weights_forward_kernel, sigmas)
            _weights_forward_kernel[(n_rays,)](t_starts, t_ends, sigmas, packed_info, weights, trans, alphas,
                                               BLOCK=block)
        ctx.block = block
        ctx.save_for_backward(t_starts, t_ends, sigmas, packed_info, weights, trans)
        return weights, trans, alphas

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_weights: Tensor, grad_trans: Tensor, grad_alphas: Tensor):
        t_starts, t_ends, sigmas, packed_info, weights, trans = ctx.saved_tensors
        need_t = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_sigmas = torch.zeros_like(sigmas)
        grad_t0 = torch.zeros_like(sigmas) if need_t else grad_sigmas
        grad_t1 = torch.zeros_like(sigmas) if need_t else grad_sigmas
        n_rays = packed_info.shape[0]
        if n_rays > 0 and sigmas.numel() > 0:
            grads = [g.to(sigmas.dtype).contiguous() for g in (grad_weights, grad_trans, grad_alphas)]
            check_launchable(_weights_backward_kernel, sigmas)
            _weights_backward_kernel[(n_rays,)](t_starts, t_ends, sigmas, packed_info, weights, trans, *grads,
                                                grad_sigmas, grad_t0, grad_t1, NEED_T=need_t, BLOCK=ctx.block)
        return (grad_t0 if ctx.needs_input_grad[0] else None, grad_t1 if ctx.needs_input_grad[1] else None,
                grad_sigmas if ctx.needs_input_grad[2] else None, None, None)


def weights_from_density_packed(t_starts: Tensor, t_ends: Tensor, sigmas: Tensor, packed_info: Tensor,
                                block: int = DEFAULT_BLOCK) -> tuple[Tensor, Tensor, Tensor]:
    """``(weights, trans, alphas)`` for packed ``(N,)`` intervals and densities (differentiable in all three).

    Args:
        t_starts, t_ends, sigmas: ``(N,)`` floating-point tensors.
        packed_info: ``(n_rays, 2) = [start, count]``.
        block: samples per chunk (a power of two).
    """
    if not (t_starts.shape == t_ends.shape == sigmas.shape) or sigmas.ndim != 1:
        raise ValueError("packed t_starts, t_ends and sigmas must share one 1-D shape (N,), got "
                         f"{tuple(t_starts.shape)}, {tuple(t_ends.shape)}, {tuple(sigmas.shape)}")
    if block < 1 or block & (block - 1):
        raise ValueError(f"block must be a positive power of two, got {block}")
    orig_dtype = sigmas.dtype
    acc_dtype = torch.float64 if torch.float64 in (t_starts.dtype, t_ends.dtype, sigmas.dtype) else torch.float32
    info = packed_info.to(device=sigmas.device, dtype=torch.int64).contiguous()
    args = [t.to(acc_dtype).contiguous() for t in (t_starts, t_ends, sigmas)]
    weights, trans, alphas = _WeightsFromDensity.apply(*args, info, block)
    out_dtype = torch.promote_types(torch.promote_types(t_starts.dtype, t_ends.dtype), orig_dtype)
    return weights.to(out_dtype), trans.to(out_dtype), alphas.to(out_dtype)
