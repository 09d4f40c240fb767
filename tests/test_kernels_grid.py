"""The Triton grid-marching kernel (nerfkit.kernels.grid_triton) against the torch reference of traverse_grids.

Both paths run through the public ``traverse_grids``, forced by ``NERFKIT_KERNELS`` (``triton`` / ``torch``). Without
a GPU the kernel runs on CPU under Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1), so the cases are
small: few rays, coarse grids and large steps (under 100 candidate steps per ray).
"""

import functools

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed, so its kernels cannot be tested "
                                     "(it comes with the `test` extra on Linux x86_64)")

from nerfkit import kernels  # noqa: E402
from nerfkit.sampling import traverse_grids  # noqa: E402

if not (torch.cuda.is_available() or kernels.triton_interpreting()):
    pytest.skip("no CUDA device and TRITON_INTERPRET is not 1, so Triton kernels cannot run here",
                allow_module_level=True)

from nerfkit.kernels import grid_triton  # noqa: E402  (after the interpreter check)

DEVICE = "cuda" if torch.cuda.is_available() and not kernels.triton_interpreting() else "cpu"


def make_scene(seed, levels, n_rays=24, res=6, dtype=torch.float32, planes=True):
    """Random occupancy in nested boxes (level l spans [-2^l, 2^l] + 0.1), and rays of every kind: starting inside
    the boxes, outside and hitting them, outside and missing them (pointing away), with random near/far planes
    (some infinite, some far < near)."""
    g = torch.Generator().manual_seed(seed)
    binaries = torch.rand(levels, res, res, res, generator=g) > 0.5
    half = 2.0 ** torch.arange(levels, dtype=torch.float64)[:, None]
    aabbs = (torch.cat([-half.expand(-1, 3), half.expand(-1, 3)], dim=-1) + 0.1).to(dtype)
    o = (torch.rand(n_rays, 3, generator=g, dtype=torch.float64) - 0.5) * 6
    o[: n_rays // 4] *= 0.25  # inside the boxes
    target = torch.rand(n_rays, 3, generator=g, dtype=torch.float64) * 1.6 - 0.7  # inside the smallest box
    d = torch.nn.functional.normalize(target - o, dim=-1)
    d[: n_rays // 8] = torch.nn.functional.normalize(torch.randn(n_rays // 8, 3, generator=g, dtype=torch.float64),
                                                     dim=-1)
    d[-3:] = torch.nn.functional.normalize(o[-3:], dim=-1)  # pointing away from the boxes: these miss
    o[-3:] += d[-3:] * 3
    d[n_rays // 2] = torch.tensor([1.0, 0.0, 0.0])  # axis-aligned rays (zero direction components)
    d[n_rays // 2 + 1] = torch.tensor([0.0, 0.0, -1.0])
    kwargs = {}
    if planes:
        near = torch.rand(n_rays, generator=g, dtype=torch.float64) * 0.6
        far = near + 0.5 + torch.rand(n_rays, generator=g, dtype=torch.float64) * 6
        far[1::5] = float("inf")
        far[2] = near[2] - 0.1  # far < near: nothing
        kwargs = dict(near_planes=near.to(dtype).to(DEVICE), far_planes=far.to(dtype).to(DEVICE))
    return (o.to(dtype).to(DEVICE), d.to(dtype).to(DEVICE), binaries.to(DEVICE), aabbs.to(DEVICE)), kwargs


def run(monkeypatch, mode, *args, **kwargs):
    monkeypatch.setenv(kernels.ENV_VAR, mode)
    return traverse_grids(*args, **kwargs)


def assert_same(got, want):
    """Identical samples (ray indices, packing, interval flags), t values within 1e-6, equal termination planes."""
    (gi, gs, gterm), (wi, ws, wterm) = got, want
    assert torch.equal(gs.ray_indices, ws.ray_indices)
    assert torch.equal(gs.packed_info, ws.packed_info)
    assert torch.equal(gi.packed_info, wi.packed_info) and torch.equal(gi.ray_indices, wi.ray_indices)
    assert torch.equal(gi.is_left, wi.is_left) and torch.equal(gi.is_right, wi.is_right)
    assert gs.vals.dtype == ws.vals.dtype and gi.vals.dtype == wi.vals.dtype
    torch.testing.assert_close(gi.vals, wi.vals, atol=1e-6, rtol=0)
    torch.testing.assert_close(gs.vals, ws.vals, atol=1e-6, rtol=0)
    assert torch.equal(gterm, wterm)


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the calls of the kernel wrapper (to prove which path ran)."""
    calls = []
    original = grid_triton.march_grids

    def spy(*args, **kwargs):
        calls.append(kwargs.get("max_per_ray"))
        return original(*args, **kwargs)

    monkeypatch.setattr(grid_triton, "march_grids", spy)
    return calls


@pytest.mark.parametrize("cone", [0.0, 0.05])
@pytest.mark.parametrize("levels", [1, 2])
def test_kernel_matches_reference(monkeypatch, kernel_calls, cone, levels):
    args, kwargs = make_scene(10 * levels + int(cone * 100), levels)
    step = 0.1 if levels == 1 else 0.15
    want = run(monkeypatch, "torch", *args, step_size=step, cone_angle=cone, **kwargs)
    assert not kernel_calls
    got = run(monkeypatch, "triton", *args, step_size=step, cone_angle=cone, **kwargs)
    assert kernel_calls == [None]
    assert_same(got, want)
    counts = want[1].packed_info[:, 1]
    assert counts.sum() > 40 and (counts == 0).sum() >= 3  # samples kept, and rays without any
    assert torch.equal(got[0].vals, want[0].vals)  # in fact bit for bit


@pytest.mark.parametrize("block,limit", [(4, None), (16, None), (4, 5)])
def test_candidates_spanning_several_blocks(monkeypatch, kernel_calls, block, limit):
    """Rays with more candidate steps than a block, no planes (near 0, far infinite), growing steps; with a limit
    the kernel stops the ray inside a later block."""
    monkeypatch.setattr(grid_triton, "march_grids", functools.partial(grid_triton.march_grids, block=block))
    args, _ = make_scene(5, levels=2, n_rays=12, planes=False)
    options = dict(step_size=0.12, cone_angle=0.03, traverse_steps_limit=limit)
    want = run(monkeypatch, "torch", *args, **options)
    got = run(monkeypatch, "triton", *args, **options)
    assert_same(got, want)
    full = run(monkeypatch, "torch", *args, step_size=0.12, cone_angle=0.03)[1].packed_info[:, 1]
    assert full.max() > max(block, limit or 0) and full.sum() > 60


def test_float64_rays(monkeypatch):
    args, kwargs = make_scene(7, levels=2, dtype=torch.float64)
    want = run(monkeypatch, "torch", *args, step_size=0.13, cone_angle=0.02, **kwargs)
    got = run(monkeypatch, "triton", *args, step_size=0.13, cone_angle=0.02, **kwargs)
    assert got[1].vals.dtype == torch.float64
    assert_same(got, want)
    assert want[1].vals.numel() > 40


@pytest.mark.parametrize("limit", [1, 3])
def test_traverse_steps_limit_and_rays_mask(monkeypatch, kernel_calls, limit):
    args, kwargs = make_scene(3, levels=2)
    mask = torch.rand(args[0].shape[0], generator=torch.Generator().manual_seed(1)) > 0.25
    options = dict(step_size=0.15, cone_angle=0.02, traverse_steps_limit=limit, rays_mask=mask.to(DEVICE), **kwargs)
    want = run(monkeypatch, "torch", *args, **options)
    got = run(monkeypatch, "triton", *args, **options)
    assert kernel_calls == [limit + 1]  # the kernel stops one sample past the limit
    assert_same(got, want)
    counts = want[1].packed_info[:, 1]
    assert (counts <= limit).all() and (~mask & (counts > 0)).sum() == 0
    full = run(monkeypatch, "torch", *args, **{**options, "traverse_steps_limit": None})[1].packed_info[:, 1]
    assert (full > limit).sum() >= 3  # the limit does cut rays (their termination planes move)


@pytest.mark.parametrize("mode", ["torch", "triton"])
def test_a_steps_limit_of_zero_or_less_means_no_limit(monkeypatch, mode):
    """nerfacc's convention (its kernel marches while ``limit <= 0 or n < limit``)."""
    args, kwargs = make_scene(3, levels=2)
    options = dict(step_size=0.15, cone_angle=0.02, **kwargs)
    full = run(monkeypatch, mode, *args, **options)
    assert full[1].packed_info[:, 1].max() > 3
    for limit in (0, -1):
        assert_same(run(monkeypatch, mode, *args, traverse_steps_limit=limit, **options), full)


def test_rays_mask_only_and_all_masked(monkeypatch):
    args, kwargs = make_scene(4, levels=1)
    n = args[0].shape[0]
    for mask in (torch.arange(n) % 2 == 0, torch.zeros(n, dtype=torch.bool)):
        options = dict(step_size=0.1, rays_mask=mask.to(DEVICE), **kwargs)
        assert_same(run(monkeypatch, "triton", *args, **options), run(monkeypatch, "torch", *args, **options))


def test_zero_rays_and_empty_grids(monkeypatch):
    (o, d, binaries, aabbs), _ = make_scene(2, levels=2)
    for args in ((o[:0], d[:0], binaries, aabbs), (o, d, torch.zeros_like(binaries), aabbs)):
        for limit in (None, 2):
            got = run(monkeypatch, "triton", *args, step_size=0.1, cone_angle=0.01, traverse_steps_limit=limit)
            want = run(monkeypatch, "torch", *args, step_size=0.1, cone_angle=0.01, traverse_steps_limit=limit)
            assert_same(got, want)
            assert got[1].vals.numel() == 0 and got[1].packed_info.shape == (args[0].shape[0], 2)


def test_wrapper_arguments(monkeypatch):
    (o, d, binaries, aabbs), _ = make_scene(2, levels=1, n_rays=4)
    z = torch.zeros(4, device=DEVICE)
    with pytest.raises(ValueError, match="power of two"):
        grid_triton.march_grids(o, d, binaries, aabbs, z, z, z, 0.1, block=12)
    with pytest.raises(TypeError, match="float32"):
        grid_triton.march_grids(o.half(), d.half(), binaries, aabbs, z, z, z, 0.1)
    r, t0, t1 = grid_triton.march_grids(o, d, binaries, aabbs, z, z, z + 5, 0.1, max_per_ray=0)
    assert r.numel() == t0.numel() == t1.numel() == 0
