"""Triton kernels (nerfkit.kernels) against their torch references, forward and backward.

Without a GPU the kernels run on CPU under Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1 before
anything imports them); with one, on CUDA tensors.
"""

import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed, so its kernels cannot be tested "
                                     "(it comes with the `test` extra on Linux x86_64)")

from nerfkit import kernels  # noqa: E402
from nerfkit.render import (exclusive_prod, exclusive_sum, inclusive_prod, inclusive_sum,  # noqa: E402
                            render_transmittance_from_density, render_weight_from_density)

if not (torch.cuda.is_available() or kernels.triton_interpreting()):
    pytest.skip("no CUDA device and TRITON_INTERPRET is not 1, so Triton kernels cannot run here",
                allow_module_level=True)

from nerfkit.kernels import scan_triton, volrend_triton  # noqa: E402  (after the interpreter check)

DEVICE = "cuda" if torch.cuda.is_available() and not kernels.triton_interpreting() else "cpu"
SCANS = {"inclusive_sum": inclusive_sum, "exclusive_sum": exclusive_sum,
         "inclusive_prod": inclusive_prod, "exclusive_prod": exclusive_prod}
# empty rays, single-sample rays, and rays longer than the blocks used below (1, 4, 16; 33 > 16)
COUNTS = [0, 1, 3, 17, 0, 5, 33, 2, 1, 9, 0, 12, 4, 1, 20, 7, 0]
TOL = dict(rtol=1e-5, atol=1e-5)


def packing(counts):
    counts = torch.tensor(counts, dtype=torch.int64, device=DEVICE)
    info = torch.stack([torch.cumsum(counts, 0) - counts, counts], dim=-1)
    ray_indices = torch.repeat_interleave(torch.arange(len(counts), device=DEVICE), counts)
    return info, ray_indices


def scan_inputs(op, info, generator, dtype=torch.float32):
    """Random values; products get zeros: random ones, each ray's first and last sample, and adjacent pairs."""
    n = int(info[:, 1].sum())
    if op == "sum":
        return (torch.rand(n, generator=generator, dtype=dtype) * 2 - 1).to(DEVICE)
    x = torch.rand(n, generator=generator, dtype=dtype) + 0.5
    x[torch.rand(n, generator=generator) < 0.15] = 0.0
    for k, (start, count) in enumerate(info.tolist()):
        if count >= 3 and k % 3 == 0:
            x[start] = 0.0
        if count >= 3 and k % 3 == 1:
            x[start + count - 1] = 0.0
        if count >= 5 and k % 3 == 2:
            x[start + 2] = x[start + 3] = 0.0
    return x.to(DEVICE)


def value_and_grads(fn, inputs, grads_out):
    """fn's outputs (a tensor or a tuple) and the gradient of sum(out * g) w.r.t. each input (None: no grad)."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    outs = out if isinstance(out, tuple) else (out,)
    loss = sum((o * g).sum() for o, g in zip(outs, grads_out))
    grads = torch.autograd.grad(loss, leaves, allow_unused=True) if loss.requires_grad else [None] * len(leaves)
    return [o.detach() for o in outs], [None if g is None else g.detach() for g in grads]


def assert_all_close(a, b, **tol):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if x is None or y is None:
            assert x is None and y is None
        else:
            torch.testing.assert_close(x, y, **(tol or TOL))


def reference(monkeypatch, fn, *args, **kwargs):
    monkeypatch.setenv(kernels.ENV_VAR, "torch")
    try:
        return fn(*args, **kwargs)
    finally:
        monkeypatch.setenv(kernels.ENV_VAR, "triton")


# ----------------------------------------------------------------------------------------------------------- scans


@pytest.mark.parametrize("name", list(SCANS))
def test_packed_scans_with_rays_listed_out_of_order_match_reference(monkeypatch, name):
    """packed_info whose rays are not listed one slice after another: kernel and reference both leave each
    sample's result at its own index."""
    monkeypatch.setenv(kernels.ENV_VAR, "triton")
    g = torch.Generator().manual_seed(7 + list(SCANS).index(name))
    info, _ = packing(COUNTS)
    op = name.split("_")[1]
    x = scan_inputs(op, info, g)
    shuffled = info[torch.randperm(info.shape[0], generator=g).to(DEVICE)]
    gout = torch.randn(x.shape, generator=g).to(DEVICE)
    got = value_and_grads(lambda v: SCANS[name](v, shuffled), [x], [gout])
    want = reference(monkeypatch, value_and_grads, lambda v: SCANS[name](v, shuffled), [x], [gout])
    in_order = reference(monkeypatch, value_and_grads, lambda v: SCANS[name](v, info), [x], [gout])
    assert_all_close(got[0] + got[1], want[0] + want[1])
    assert_all_close(want[0] + want[1], in_order[0] + in_order[1])


@pytest.mark.parametrize("name", list(SCANS))
@pytest.mark.parametrize("block", [None, 1, 4, 16])
def test_packed_scans_match_reference(monkeypatch, name, block):
    """block None: the public function with NERFKIT_KERNELS=triton; else the kernel wrapper at that block size."""
    monkeypatch.setenv(kernels.ENV_VAR, "triton")
    g = torch.Generator().manual_seed(10 * list(SCANS).index(name) + (block or 0))
    info, _ = packing(COUNTS)
    op = name.split("_")[1]
    x = scan_inputs(op, info, g)
    gout = torch.randn(x.shape, generator=g).to(DEVICE)
    if block is None:
        def triton_fn(v):
            return SCANS[name](v, info)
    else:
        def triton_fn(v):
            return scan_triton.segment_scan(v, info, op, name.startswith("exclusive"), block=block)
    got = value_and_grads(triton_fn, [x], [gout])
    want = reference(monkeypatch, value_and_grads, lambda v: SCANS[name](v, info), [x], [gout])
    assert_all_close(got[0] + got[1], want[0] + want[1])
    if op == "prod":
        assert (x == 0).sum() >= 8 and (got[1][0][x == 0] != 0).any()  # zeros with non-zero gradients


@pytest.mark.parametrize("name", list(SCANS))
@pytest.mark.parametrize("shape", [(5, 13), (2, 3, 6), (4, 1), (3, 0)])
def test_batched_scans_match_reference(monkeypatch, name, shape):
    monkeypatch.setenv(kernels.ENV_VAR, "triton")
    g = torch.Generator().manual_seed(7)
    x = (torch.rand(shape, generator=g) + 0.5)
    if name.endswith("prod"):
        x[torch.rand(shape, generator=g) < 0.2] = 0.0
    x, gout = x.to(DEVICE), torch.randn(shape, generator=g).to(DEVICE)
    got = value_and_grads(SCANS[name], [x], [gout])
    want = reference(monkeypatch, value_and_grads, SCANS[name], [x], [gout])
    assert got[0][0].shape == shape and got[1][0].shape == shape
    assert_all_close(got[0] + got[1], want[0] + want[1])


@pytest.mark.parametrize("mode", ["torch", "triton"])
def test_indices_argument_matches_packed_info(monkeypatch, mode):
    monkeypatch.setenv(kernels.ENV_VAR, mode)
    g = torch.Generator().manual_seed(3)
    info, ray_indices = packing(COUNTS)
    for name, fn in SCANS.items():
        x = scan_inputs(name.split("_")[1], info, g)
        torch.testing.assert_close(fn(x, None, ray_indices), fn(x, info))
        torch.testing.assert_close(fn(x, indices=ray_indices), fn(x, packed_info=info))
        with pytest.raises(ValueError, match="only one"):
            fn(x, info, ray_indices)


@pytest.mark.parametrize("mode", ["torch", "triton"])
@pytest.mark.parametrize("n_rays", [0, 3])
def test_empty_input(monkeypatch, mode, n_rays):
    monkeypatch.setenv(kernels.ENV_VAR, mode)
    info = torch.zeros(n_rays, 2, dtype=torch.int64, device=DEVICE)
    for fn in SCANS.values():
        for kwargs in (dict(packed_info=info), dict(indices=torch.zeros(0, dtype=torch.int64, device=DEVICE))):
            x = torch.zeros(0, device=DEVICE, requires_grad=True)
            out = fn(x, **kwargs)
            assert out.shape == (0,)
            out.sum().backward()
            assert x.grad.shape == (0,)
    t = torch.zeros(0, device=DEVICE, requires_grad=True)
    weights, trans, alphas = render_weight_from_density(t, t, t, packed_info=info)
    assert weights.shape == trans.shape == alphas.shape == (0,)
    (weights.sum() + trans.sum() + alphas.sum()).backward()
    assert t.grad.shape == (0,)


def brute_force_prod_grad(x, info, gout, exclusive):
    """d(sum_k g_k * y_k)/dx_i for y = (exclusive|inclusive) prod, summed term by term in float64 (no division)."""
    xs, gs = x.double().tolist(), gout.double().tolist()
    grad = [0.0] * len(xs)
    for start, count in info.tolist():
        for i in range(count):
            for k in range(i + 1 if exclusive else i, count):
                term = gs[start + k]
                for j in range(k if exclusive else k + 1):
                    if j != i:
                        term *= xs[start + j]
                grad[start + i] += term
    return torch.tensor(grad, dtype=torch.float64)


@pytest.mark.parametrize("exclusive", [False, True])
def test_product_gradients_with_zeros_match_float64_brute_force(monkeypatch, exclusive):
    g = torch.Generator().manual_seed(11)
    info, _ = packing([0, 1, 2, 5, 9, 4, 6, 0, 3])
    x = torch.rand(int(info[:, 1].sum()), generator=g) + 0.5
    x[[1, 3, 4, 7, 9, 10, 14, 18, 21, 22]] = 0.0  # single zeros, adjacent zeros, zeros at rays' ends
    x = x.to(DEVICE)
    gout = torch.randn(x.shape, generator=g).to(DEVICE)
    fn = exclusive_prod if exclusive else inclusive_prod
    want = brute_force_prod_grad(x.cpu(), info.cpu(), gout.cpu(), exclusive)
    assert (want[x.cpu() == 0] != 0).any()
    for mode in ("torch", "triton"):
        monkeypatch.setenv(kernels.ENV_VAR, mode)
        _, (grad32,) = value_and_grads(lambda v: fn(v, info), [x], [gout])
        torch.testing.assert_close(grad32.cpu().double(), want, rtol=1e-5, atol=1e-5)
        _, (grad64,) = value_and_grads(lambda v: fn(v, info), [x.double()], [gout.double()])
        assert grad64.dtype == torch.float64
        torch.testing.assert_close(grad64.cpu(), want, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------------- fused weights


def density_inputs(info, generator):
    n = int(info[:, 1].sum())
    t_starts = torch.rand(n, generator=generator) * 4
    t_ends = t_starts + torch.rand(n, generator=generator) * 0.5
    sigmas = torch.rand(n, generator=generator) * 5
    sigmas[torch.rand(n, generator=generator) < 0.1] = 0.0
    sigmas[5] = 60.0  # an opaque sample: transmittance underflows behind it
    return t_starts.to(DEVICE), t_ends.to(DEVICE), sigmas.to(DEVICE)


@pytest.mark.parametrize("block", [None, 1, 4, 16])
def test_fused_weights_match_reference(monkeypatch, block):
    monkeypatch.setenv(kernels.ENV_VAR, "triton")
    g = torch.Generator().manual_seed(5 + (block or 0))
    info, _ = packing(COUNTS)
    inputs = density_inputs(info, g)
    gouts = [torch.randn(inputs[0].shape, generator=g).to(DEVICE) for _ in range(3)]
    if block is None:
        def triton_fn(t0, t1, s):
            return render_weight_from_density(t0, t1, s, packed_info=info)
    else:
        def triton_fn(t0, t1, s):
            return volrend_triton.weights_from_density_packed(t0, t1, s, info, block=block)
    got = value_and_grads(triton_fn, inputs, gouts)
    want = reference(monkeypatch, value_and_grads,
                     lambda t0, t1, s: render_weight_from_density(t0, t1, s, packed_info=info), inputs, gouts)
    assert_all_close(got[0] + got[1], want[0] + want[1])


def test_fused_transmittance_with_ray_indices_and_prefix_trans(monkeypatch):
    monkeypatch.setenv(kernels.ENV_VAR, "triton")
    g = torch.Generator().manual_seed(9)
    info, ray_indices = packing(COUNTS)
    t0, t1, sigmas = density_inputs(info, g)
    prefix = (torch.rand(t0.shape, generator=g) * 0.5 + 0.5).to(DEVICE)
    gouts = [torch.randn(t0.shape, generator=g).to(DEVICE) for _ in range(3)]
    for fn in (render_transmittance_from_density, render_weight_from_density):
        def call(s, p, fn=fn):  # t_starts/t_ends without gradients: the kernel skips their gradients
            return fn(t0, t1, s, ray_indices=ray_indices, n_rays=len(COUNTS), prefix_trans=p)
        got = value_and_grads(call, [sigmas, prefix], gouts)
        want = reference(monkeypatch, value_and_grads, call, [sigmas, prefix], gouts)
        assert_all_close(got[0] + got[1], want[0] + want[1])


# -------------------------------------------------------------------------------------------------------- dispatch


def test_dispatch(monkeypatch):
    x = torch.ones(3)
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    assert kernels.kernel_mode() == "auto" and kernels.triton_available()
    assert kernels.use_triton(x) == x.is_cuda
    assert kernels.use_triton(x.to(DEVICE)) == (DEVICE == "cuda")
    monkeypatch.setenv(kernels.ENV_VAR, "torch")
    assert not kernels.use_triton(x.to(DEVICE))
    monkeypatch.setenv(kernels.ENV_VAR, "triton")
    assert kernels.use_triton(x.to(DEVICE))
    assert not kernels.use_triton(torch.ones(3, dtype=torch.int64))  # integers: always the reference
    monkeypatch.setenv(kernels.ENV_VAR, "cuda-please")
    with pytest.raises(ValueError, match=kernels.ENV_VAR):
        kernels.use_triton(x)
    monkeypatch.setenv(kernels.ENV_VAR, "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        kernels.use_triton(torch.ones(3))


def test_public_functions_take_the_selected_path(monkeypatch):
    calls = []
    monkeypatch.setattr(scan_triton, "segment_scan",
                        lambda *a, _f=scan_triton.segment_scan, **k: calls.append("scan") or _f(*a, **k))
    monkeypatch.setattr(volrend_triton, "weights_from_density_packed",
                        lambda *a, _f=volrend_triton.weights_from_density_packed, **k:
                        calls.append("weights") or _f(*a, **k))
    info, _ = packing([2, 3])
    x = torch.rand(5, device=DEVICE)
    monkeypatch.setenv(kernels.ENV_VAR, "torch")
    inclusive_sum(x, info), render_weight_from_density(x, x + 1, x, packed_info=info)
    assert calls == []
    monkeypatch.setenv(kernels.ENV_VAR, "triton")
    inclusive_sum(x, info), render_weight_from_density(x, x + 1, x, packed_info=info)
    render_weight_from_density(x[None], x[None] + 1, x[None])  # batched: the scan kernel, not the fused one
    assert calls == ["scan", "weights", "scan"]


def test_import_nerfkit_does_not_import_triton():
    env = {k: v for k, v in os.environ.items() if k != kernels.ENV_VAR}
    code = ("import sys, torch, nerfkit\n"
            "nerfkit.inclusive_prod(torch.rand(4), torch.tensor([[0, 4]]))\n"
            "assert 'triton' not in sys.modules, 'triton imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
