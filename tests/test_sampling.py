import math

import pytest
import torch

from nerfkit.sampling import merge_edges, ray_aabb_intersect, sample_pdf, stratified_edges


def test_stratified_edges_even_and_jittered():
    near, far = torch.tensor([2.0, 1.0]), torch.tensor([6.0, 2.0])
    edges = stratified_edges(near, far, 4)
    torch.testing.assert_close(edges[0], torch.tensor([2.0, 3.0, 4.0, 5.0, 6.0]))
    g = torch.Generator().manual_seed(0)
    jittered = stratified_edges(near.repeat(500), far.repeat(500), 4, stratified=True, generator=g)
    assert torch.all(jittered[:, 1:] >= jittered[:, :-1])  # ordered, non-overlapping intervals
    assert torch.all(jittered[0::2] >= 2.0) and torch.all(jittered[0::2] <= 6.0)
    # Each interior edge stays within half a bin of its even position and covers that range.
    interior = jittered[0::2, 2]
    assert interior.min() < 3.6 and interior.max() > 4.4 and interior.min() >= 3.5 and interior.max() <= 4.5
    again = stratified_edges(near.repeat(500), far.repeat(500), 4, True, torch.Generator().manual_seed(0))
    torch.testing.assert_close(jittered, again)  # deterministic with a seeded generator


def test_inverse_cdf_reproduces_a_known_piecewise_constant_distribution():
    edges = torch.tensor([[0.0, 1.0, 2.0, 4.0]])
    weights = torch.tensor([[1.0, 0.0, 3.0]])  # density 1/4 on [0,1], 0 on [1,2], 3/8 on [2,4]
    n = 40000
    samples = sample_pdf(edges, weights, n, padding=0.0)[0]
    assert torch.all(samples[1:] >= samples[:-1])
    frac_first = (samples < 1.0).float().mean().item()
    frac_middle = ((samples > 1.0) & (samples < 2.0)).float().mean().item()
    frac_upper_half = (samples > 3.0).float().mean().item()
    assert frac_first == pytest.approx(0.25, abs=1e-3)
    assert frac_middle < 1e-3
    assert frac_upper_half == pytest.approx(0.375, abs=1e-3)  # uniform inside the last bin


def test_stratified_inverse_cdf_matches_the_cdf_statistically():
    g = torch.Generator().manual_seed(0)
    edges = torch.linspace(0.0, 1.0, 11).expand(2000, -1).contiguous()
    weights = torch.linspace(0.0, 1.0, 10).expand(2000, -1).contiguous()  # rising density
    samples = sample_pdf(edges, weights, 8, stratified=True, generator=g, padding=0.0).reshape(-1)
    # Compare the empirical CDF with the exact piecewise-linear CDF at the bin edges.
    cdf = torch.cat([torch.zeros(1), torch.cumsum(weights[0] / weights[0].sum(), 0)])
    for i, x in enumerate(edges[0].tolist()):
        assert (samples <= x).float().mean().item() == pytest.approx(cdf[i].item(), abs=0.01)


def test_inverse_cdf_with_zero_weights_falls_back_to_uniform():
    edges = torch.tensor([[0.0, 1.0, 2.0]])
    samples = sample_pdf(edges, torch.zeros(1, 2), 4)[0]
    torch.testing.assert_close(samples, torch.tensor([0.25, 0.75, 1.25, 1.75]))
    merged = merge_edges(edges, samples[None])
    assert merged.shape == (1, 7) and torch.all(merged[:, 1:] >= merged[:, :-1])


def test_ray_aabb_intersect_hits_misses_and_inside():
    aabb = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
    rays_o = torch.tensor([[-3.0, 0.0, 0.0], [-3.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    rays_d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    rays_d = rays_d / rays_d.norm(dim=-1, keepdim=True)
    t_min, t_max, hit = ray_aabb_intersect(rays_o, rays_d, aabb, near_plane=0.0)
    assert hit[:, 0].tolist() == [True, False, True, True]
    torch.testing.assert_close(t_min[0, 0], torch.tensor(2.0))
    torch.testing.assert_close(t_max[0, 0], torch.tensor(4.0))
    assert math.isinf(t_min[1, 0].item())
    torch.testing.assert_close(t_min[2, 0], torch.tensor(0.0))  # starts inside: clipped to the near plane
    torch.testing.assert_close(t_max[3, 0], torch.tensor(math.sqrt(2.0)))
    _, _, hit = ray_aabb_intersect(rays_o, rays_d, aabb, near_plane=0.0, far_plane=1.5)
    assert hit[0, 0].item() is False  # the box starts beyond the far plane


def test_ray_aabb_intersect_several_boxes_and_miss_value():
    """Three boxes along x; a ray along +x from x = -5 hits all three, one offset in y only the tall middle one;
    misses get ``miss_value`` in both t_mins and t_maxs."""
    aabbs = torch.tensor([[-3.0, -1, -1, -2, 1, 1], [-1.0, -3, -1, 1, 3, 1], [2.0, -1, -1, 3, 1, 1]])
    rays_o = torch.tensor([[-5.0, 0, 0], [-5.0, 2, 0]])
    rays_d = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])
    t_min, t_max, hit = ray_aabb_intersect(rays_o, rays_d, aabbs, miss_value=-7.0)
    assert hit.tolist() == [[True, True, True], [False, True, False]]
    torch.testing.assert_close(t_min, torch.tensor([[2.0, 4.0, 7.0], [-7.0, 4.0, -7.0]]))
    torch.testing.assert_close(t_max, torch.tensor([[3.0, 6.0, 8.0], [-7.0, 6.0, -7.0]]))


def test_ray_aabb_intersect_matches_brute_force_marching():
    g = torch.Generator().manual_seed(0)
    rays_o = torch.randn(200, 3, generator=g) * 2
    rays_d = torch.randn(200, 3, generator=g)
    rays_d = rays_d / rays_d.norm(dim=-1, keepdim=True)
    aabb = torch.tensor([[-1.0, -0.5, -1.0, 1.0, 0.5, 0.8]])
    t_min, t_max, hit = ray_aabb_intersect(rays_o, rays_d, aabb, near_plane=0.0)
    ts = torch.linspace(0, 10, 20001)
    pts = rays_o[:, None] + rays_d[:, None] * ts[None, :, None]
    inside = ((pts >= aabb[0, :3]) & (pts <= aabb[0, 3:])).all(-1)
    for i in range(200):
        if inside[i].any():
            idx = inside[i].nonzero()[:, 0]
            assert hit[i, 0]
            assert t_min[i, 0].item() == pytest.approx(ts[idx[0]].item(), abs=1e-3)
            assert t_max[i, 0].item() == pytest.approx(ts[idx[-1]].item(), abs=1e-3)
        else:
            assert not hit[i, 0]
