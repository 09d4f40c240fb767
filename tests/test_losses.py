import pytest
import torch

from nerfkit.render import distortion as nerfkit_distortion
from nerfkit.render import pack_info


def distortion(*args, **kwargs):
    """The loss per ray without nerfacc's trailing unit dimension (checked in its own test below)."""
    out = nerfkit_distortion(*args, **kwargs)
    assert out.shape[-1] == 1
    return out.squeeze(-1)


def test_distortion_returns_nerfaccs_shapes():
    w = torch.rand(4, 3)
    assert nerfkit_distortion(w, w.cumsum(-1), w.cumsum(-1) + 1).shape == (4, 1)
    assert nerfkit_distortion(w.reshape(-1), torch.arange(12.0), torch.arange(12.0) + 1,
                              ray_indices=torch.arange(4).repeat_interleave(3), n_rays=5).shape == (5, 1)


def reference_distortion(weights, t_starts, t_ends):
    """The quadratic definition on one ray ``(n,)`` -> scalar: sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 d_i."""
    mids = 0.5 * (t_starts + t_ends)
    pair = (weights[:, None] * weights[None, :] * (mids[:, None] - mids[None, :]).abs()).sum()
    return pair + (weights.square() * (t_ends - t_starts)).sum() / 3.0


def random_rays(counts, generator):
    """Packed float64 samples for rays with the given sample counts: (weights, t_starts, t_ends, ray_indices)."""
    ws, t0s, t1s, ids = [], [], [], []
    for ray, n in enumerate(counts):
        edges = torch.sort(torch.rand(n + 1, generator=generator, dtype=torch.float64) * 5, dim=0).values
        ws.append(torch.rand(n, generator=generator, dtype=torch.float64))
        t0s.append(edges[:-1])
        t1s.append(edges[1:])
        ids.append(torch.full((n,), ray, dtype=torch.long))
    return torch.cat(ws), torch.cat(t0s), torch.cat(t1s), torch.cat(ids)


def test_distortion_matches_hand_computed_value_on_three_samples():
    weights = torch.tensor([[0.5, 0.25, 0.25]])
    t_starts = torch.tensor([[0.0, 1.0, 2.0]])
    t_ends = torch.tensor([[1.0, 2.0, 4.0]])
    # mids 0.5, 1.5, 3.0; pairs: 2 * (0.5*0.25*1 + 0.5*0.25*2.5 + 0.25*0.25*1.5) = 1.0625
    # uni: (0.25*1 + 0.0625*1 + 0.0625*2) / 3 = 0.4375 / 3
    expected = 1.0625 + 0.4375 / 3
    loss = distortion(weights, t_starts, t_ends)
    assert loss.shape == (1,)
    torch.testing.assert_close(loss, torch.tensor([expected]))


def test_batched_distortion_equals_quadratic_definition_float64():
    g = torch.Generator().manual_seed(0)
    edges = torch.sort(torch.rand(2, 3, 8, generator=g, dtype=torch.float64) * 5, dim=-1).values
    t0, t1 = edges[..., :-1], edges[..., 1:]
    w = torch.rand(2, 3, 7, generator=g, dtype=torch.float64)
    loss = distortion(w, t0, t1)
    assert loss.shape == (2, 3)
    expected = torch.stack([torch.stack([reference_distortion(w[a, b], t0[a, b], t1[a, b]) for b in range(3)])
                            for a in range(2)])
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)


def test_packed_distortion_equals_quadratic_definition_with_empty_and_single_sample_rays():
    g = torch.Generator().manual_seed(1)
    counts = [4, 0, 1, 9, 0, 3]
    w, t0, t1, ray_indices = random_rays(counts, g)
    expected = torch.zeros(len(counts), dtype=torch.float64)
    start = 0
    for ray, n in enumerate(counts):
        sl = slice(start, start + n)
        expected[ray] = reference_distortion(w[sl], t0[sl], t1[sl])
        start += n
    by_indices = distortion(w, t0, t1, ray_indices=ray_indices, n_rays=len(counts))
    by_info = distortion(w, t0, t1, packed_info=pack_info(ray_indices, len(counts)))
    assert by_indices.shape == (len(counts),)
    torch.testing.assert_close(by_indices, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(by_info, expected, rtol=1e-12, atol=1e-12)
    assert by_indices[1] == 0 and by_indices[4] == 0
    torch.testing.assert_close(by_indices[2], w[4] ** 2 * (t1[4] - t0[4]) / 3)


def test_packed_and_batched_layouts_agree_on_the_same_samples():
    g = torch.Generator().manual_seed(2)
    edges = torch.sort(torch.rand(5, 11, generator=g, dtype=torch.float64) * 3, dim=-1).values
    t0, t1 = edges[:, :-1], edges[:, 1:]
    w = torch.rand(5, 10, generator=g, dtype=torch.float64)
    ray_indices = torch.arange(5).repeat_interleave(10)
    batched = distortion(w, t0, t1)
    packed = distortion(w.reshape(-1), t0.reshape(-1), t1.reshape(-1), ray_indices=ray_indices, n_rays=5)
    torch.testing.assert_close(packed, batched, rtol=1e-12, atol=1e-12)


def test_gradients_wrt_weights_and_intervals_equal_autograd_of_quadratic_definition():
    g = torch.Generator().manual_seed(3)
    counts = [5, 0, 1, 7]
    w, t0, t1, ray_indices = random_rays(counts, g)
    upstream = torch.rand(len(counts), generator=g, dtype=torch.float64)

    inputs = [x.clone().requires_grad_(True) for x in (w, t0, t1)]
    (distortion(*inputs, ray_indices=ray_indices, n_rays=len(counts)) * upstream).sum().backward()

    ref_inputs = [x.clone().requires_grad_(True) for x in (w, t0, t1)]
    total, start = 0.0, 0
    for ray, n in enumerate(counts):
        sl = slice(start, start + n)
        total = total + upstream[ray] * reference_distortion(*(x[sl] for x in ref_inputs))
        start += n
    total.backward()
    for name, got, ref in zip(("weights", "t_starts", "t_ends"), inputs, ref_inputs):
        assert got.grad is not None, name
        assert got.grad.abs().sum() > 0, name
        torch.testing.assert_close(got.grad, ref.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_batched_gradients_equal_autograd_of_quadratic_definition():
    g = torch.Generator().manual_seed(4)
    edges = torch.sort(torch.rand(3, 7, generator=g, dtype=torch.float64) * 4, dim=-1).values
    data = (torch.rand(3, 6, generator=g, dtype=torch.float64), edges[:, :-1], edges[:, 1:])
    inputs = [x.clone().requires_grad_(True) for x in data]
    distortion(*inputs).sum().backward()
    ref_inputs = [x.clone().requires_grad_(True) for x in data]
    sum(reference_distortion(*(x[r] for x in ref_inputs)) for r in range(3)).backward()
    for got, ref in zip(inputs, ref_inputs):
        torch.testing.assert_close(got.grad, ref.grad, rtol=1e-10, atol=1e-12)


def test_distortion_passes_gradcheck_packed_and_batched():
    g = torch.Generator().manual_seed(5)
    w, t0, t1, ray_indices = random_rays([3, 0, 1, 4], g)
    args = tuple(x.clone().requires_grad_(True) for x in (w, t0, t1))
    assert torch.autograd.gradcheck(lambda a, b, c: distortion(a, b, c, ray_indices=ray_indices, n_rays=4), args)
    batched = tuple(x[:3].reshape(1, 3).clone().requires_grad_(True) for x in (w, t0, t1))
    assert torch.autograd.gradcheck(distortion, batched)


def test_empty_input_returns_zeros_per_ray_and_backward_works():
    w = torch.zeros(0, requires_grad=True)
    t0 = torch.zeros(0, requires_grad=True)
    t1 = torch.zeros(0, requires_grad=True)
    loss = distortion(w, t0, t1, ray_indices=torch.zeros(0, dtype=torch.long), n_rays=3)
    assert loss.shape == (3,)
    assert torch.equal(loss.detach(), torch.zeros(3))
    loss.sum().backward()
    assert w.grad is not None and w.grad.shape == (0,)
    assert t0.grad is not None and t1.grad is not None
    loss = distortion(w, t0, t1, packed_info=torch.zeros(2, 2, dtype=torch.long))
    assert loss.shape == (2,) and torch.equal(loss.detach(), torch.zeros(2))
    loss = distortion(torch.zeros(4, 0), torch.zeros(4, 0), torch.zeros(4, 0))
    assert torch.equal(loss, torch.zeros(4))


@pytest.mark.parametrize("kwargs, match", [
    (dict(t_starts=torch.zeros(2, 4)), "t_starts"),
    (dict(t_ends=torch.zeros(3)), "t_ends"),
    (dict(ray_indices=torch.zeros(5, dtype=torch.long)), "ray_indices"),
    (dict(packed_info=torch.zeros(2, 3, dtype=torch.long)), "packed_info"),
    (dict(packed_info=torch.tensor([[0, 1], [1, 1]])), "packed_info"),
    (dict(ray_indices=torch.tensor([0, 0, 1, 3]), n_rays=2), "n_rays"),
])
def test_bad_shapes_raise_value_error_naming_the_argument(kwargs, match):
    args = dict(weights=torch.rand(4), t_starts=torch.rand(4), t_ends=torch.rand(4))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        distortion(**args)


def test_packed_layout_rejects_batched_weights_naming_weights():
    w = torch.rand(2, 3)
    with pytest.raises(ValueError, match="weights"):
        distortion(w, w, w, ray_indices=torch.zeros(6, dtype=torch.long))
