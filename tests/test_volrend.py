import math

import pytest
import torch

from nerfkit.render import (accumulate_along_rays, exclusive_prod, exclusive_sum, inclusive_prod, inclusive_sum,
                            pack_info, render_transmittance_from_alpha, render_transmittance_from_density,
                            render_visibility_from_alpha, render_visibility_from_density,
                            render_weight_from_alpha, render_weight_from_density,
                            rendering)


def test_weights_from_density_match_hand_computed_values():
    t_starts = torch.tensor([[0.0, 1.0, 2.0]])
    t_ends = torch.tensor([[1.0, 2.0, 4.0]])
    sigmas = torch.tensor([[0.5, 1.0, 0.25]])
    weights, trans, alphas = render_weight_from_density(t_starts, t_ends, sigmas)
    a = [1 - math.exp(-0.5), 1 - math.exp(-1.0), 1 - math.exp(-0.5)]
    t = [1.0, math.exp(-0.5), math.exp(-1.5)]
    torch.testing.assert_close(alphas, torch.tensor([a]))
    torch.testing.assert_close(trans, torch.tensor([t]))
    torch.testing.assert_close(weights, torch.tensor([[t[i] * a[i] for i in range(3)]]))


def test_weights_from_alpha_match_hand_computed_values():
    alphas = torch.tensor([[0.5, 0.5, 1.0, 0.3]])
    weights, trans = render_weight_from_alpha(alphas)
    torch.testing.assert_close(trans, torch.tensor([[1.0, 0.5, 0.25, 0.0]]))
    torch.testing.assert_close(weights, torch.tensor([[0.5, 0.25, 0.25, 0.0]]))
    vis = render_visibility_from_alpha(alphas, early_stop_eps=0.3)
    assert vis.tolist() == [[True, True, False, False]]
    vis = render_visibility_from_alpha(alphas, alpha_thre=0.4)
    assert vis.tolist() == [[True, True, True, False]]


def reference_weights(t_starts, t_ends, sigmas):
    """The quadratic definition in float64: w_i = (1 - exp(-s_i d_i)) * prod_{j<i} exp(-s_j d_j)."""
    dt = t_ends - t_starts
    n = sigmas.shape[-1]
    out = []
    for i in range(n):
        trans = torch.exp(-(sigmas[..., :i] * dt[..., :i]).sum(-1))
        out.append(trans * (1 - torch.exp(-sigmas[..., i] * dt[..., i])))
    return torch.stack(out, -1)


def random_intervals(n_rays, n_samples, generator, dtype=torch.float32):
    edges = torch.sort(torch.rand(n_rays, n_samples + 1, generator=generator, dtype=dtype) * 4, dim=-1).values
    sigmas = torch.rand(n_rays, n_samples, generator=generator, dtype=dtype) * 3
    return edges[:, :-1], edges[:, 1:], sigmas


def test_weights_and_gradients_match_float64_reference_on_random_inputs():
    g = torch.Generator().manual_seed(0)
    t0, t1, sigmas = random_intervals(16, 12, g)
    sigmas.requires_grad_(True)
    weights, _, _ = render_weight_from_density(t0, t1, sigmas)
    values = torch.rand(16, 12, generator=g)
    (weights * values).sum().backward()

    s64 = sigmas.detach().double().requires_grad_(True)
    ref = reference_weights(t0.double(), t1.double(), s64)
    (ref * values.double()).sum().backward()
    torch.testing.assert_close(weights.double(), ref.detach(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sigmas.grad.double(), s64.grad, atol=1e-5, rtol=1e-4)


def test_gradients_pass_finite_difference_check_in_float64():
    g = torch.Generator().manual_seed(1)
    t0, t1, sigmas = random_intervals(3, 5, g, torch.float64)
    sigmas.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: render_weight_from_density(t0, t1, s)[0], (sigmas,))
    alphas = torch.rand(3, 5, generator=g, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: render_weight_from_alpha(a)[0], (alphas,))


def packed_from_batched(x, counts):
    return torch.cat([x[i, :c] for i, c in enumerate(counts)])


def test_packed_input_gives_the_same_results_as_batched():
    g = torch.Generator().manual_seed(2)
    counts = [3, 0, 5, 1]
    t0, t1, sigmas = random_intervals(4, 5, g)
    ray_indices = torch.cat([torch.full((c,), i) for i, c in enumerate(counts)])
    p0, p1, ps = (packed_from_batched(x, counts) for x in (t0, t1, sigmas))
    packed_info = pack_info(ray_indices, 4)
    assert packed_info.tolist() == [[0, 3], [3, 0], [3, 5], [8, 1]]
    w_packed, tr_packed, _ = render_weight_from_density(p0, p1, ps, packed_info=packed_info)
    w_idx, _, _ = render_weight_from_density(p0, p1, ps, ray_indices=ray_indices, n_rays=4)
    for i, c in enumerate(counts):  # each ray rendered alone in batched form
        w, tr, _ = render_weight_from_density(t0[i:i + 1, :c], t1[i:i + 1, :c], sigmas[i:i + 1, :c])
        torch.testing.assert_close(w_packed[ray_indices == i], w[0])
        torch.testing.assert_close(tr_packed[ray_indices == i], tr[0])
    torch.testing.assert_close(w_packed, w_idx)
    alphas = torch.rand(ps.shape, generator=g)
    trans = render_transmittance_from_alpha(alphas, packed_info=packed_info)
    torch.testing.assert_close(trans, exclusive_prod(1 - alphas, packed_info))


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


RENDER_FUNCTIONS = {
    "transmittance_from_density": lambda t0, t1, s, a, **kw: render_transmittance_from_density(t0, t1, s, **kw),
    "transmittance_from_alpha": lambda t0, t1, s, a, **kw: render_transmittance_from_alpha(a, **kw),
    "weight_from_density": lambda t0, t1, s, a, **kw: render_weight_from_density(t0, t1, s, **kw),
    "weight_from_alpha": lambda t0, t1, s, a, **kw: render_weight_from_alpha(a, **kw),
    "visibility_from_alpha": lambda t0, t1, s, a, **kw: render_visibility_from_alpha(
        a, early_stop_eps=0.05, alpha_thre=0.1, **kw),
    "visibility_from_density": lambda t0, t1, s, a, **kw: render_visibility_from_density(
        t0, t1, s, early_stop_eps=0.05, alpha_thre=0.1, **kw),
}


@pytest.mark.parametrize("name", sorted(RENDER_FUNCTIONS))
def test_every_rendering_function_gives_the_same_packed_and_batched(name):
    """Packed input, as ``packed_info`` or as ``ray_indices`` + ``n_rays``, gives per ray what the batched form
    gives for that ray alone, for every output (and the visibility masks really cut: some samples kept, some
    not), including with a ``prefix_trans``; and the gradients agree too."""
    fn = RENDER_FUNCTIONS[name]
    g = torch.Generator().manual_seed(5)
    counts = [4, 0, 7, 1, 7]
    t0, t1, sigmas = random_intervals(5, 7, g)
    alphas = 1 - torch.exp(-sigmas * (t1 - t0))
    prefix = torch.rand(5, 7, generator=g) * 0.5 + 0.5
    ray_indices = torch.cat([torch.full((c,), i) for i, c in enumerate(counts)])
    info = pack_info(ray_indices, 5)
    flat = [packed_from_batched(x, counts).requires_grad_() for x in (t0, t1, sigmas, alphas)]
    flat_prefix = packed_from_batched(prefix, counts)
    for kwargs in ({}, {"prefix": True}):
        extra = {"prefix_trans": flat_prefix} if kwargs else {}
        by_info = _as_tuple(fn(*flat, packed_info=info, **extra))
        by_indices = _as_tuple(fn(*flat, ray_indices=ray_indices, n_rays=5, **extra))
        for a, b in zip(by_info, by_indices):
            torch.testing.assert_close(a, b)
        for i, c in enumerate(counts):
            rows = [x[i:i + 1, :c] for x in (t0, t1, sigmas, alphas)]
            alone = _as_tuple(fn(*rows, **({"prefix_trans": prefix[i:i + 1, :c]} if kwargs else {})))
            for packed_out, batched_out in zip(by_info, alone):
                torch.testing.assert_close(packed_out[ray_indices == i], batched_out[0])
    if name.startswith("visibility"):
        assert 0 < int(by_info[0].sum()) < len(ray_indices)
        return
    # gradients: packed against batched on the rays with all 7 samples (rows 2 and 4)
    loss_packed = sum((out * torch.linspace(1, 2, out.shape[0])).sum() for out in by_info if out.requires_grad)
    grads = torch.autograd.grad(loss_packed, flat, allow_unused=True)
    rows = [x[[2, 4]].clone().requires_grad_() for x in (t0, t1, sigmas, alphas)]
    weights = torch.linspace(1, 2, len(ray_indices))
    sel = torch.cat([torch.nonzero(ray_indices == 2)[:, 0], torch.nonzero(ray_indices == 4)[:, 0]])
    outs = _as_tuple(fn(*rows, prefix_trans=prefix[[2, 4]]))
    loss_batched = sum((out * weights[sel].view(2, 7)).sum() for out in outs if out.requires_grad)
    grads_batched = torch.autograd.grad(loss_batched, rows, allow_unused=True)
    for gp, gb in zip(grads, grads_batched):
        if gb is None:
            continue
        assert gp is not None
        torch.testing.assert_close(gp[sel].view(2, 7), gb)


def test_scans_packed_and_batched():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 2.0]])
    assert inclusive_sum(x).tolist() == [[1, 3, 6], [4, 4, 6]]
    assert exclusive_sum(x).tolist() == [[0, 1, 3], [0, 4, 4]]
    assert inclusive_prod(x).tolist() == [[1, 2, 6], [4, 0, 0]]
    assert exclusive_prod(x).tolist() == [[1, 1, 2], [1, 4, 0]]
    info = torch.tensor([[0, 2], [2, 0], [2, 3]])
    flat = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert exclusive_sum(flat, info).tolist() == [0, 1, 0, 3, 7]
    assert inclusive_prod(flat, info).tolist() == [1, 2, 3, 12, 60]


def test_packed_sums_stay_exact_per_ray_over_many_large_samples():
    """Packed sums run as one float64 running sum less each ray's start: per-ray results must not inherit the
    rounding of the (large) total."""
    g = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 60, (2000,), generator=g)
    info = torch.stack([torch.cumsum(counts, 0) - counts, counts], dim=-1)
    x = torch.rand(int(counts.sum()), generator=g) * 1000.0  # a total of ~3e7
    parts = [part.double() for part in torch.split(x, counts.tolist())]
    inclusive = torch.cat([torch.cumsum(p, 0) for p in parts]).float()
    exclusive = torch.cat([torch.cumsum(p, 0) - p for p in parts]).float()
    torch.testing.assert_close(inclusive_sum(x, info), inclusive, rtol=1e-6, atol=0)
    torch.testing.assert_close(exclusive_sum(x, info), exclusive, rtol=1e-6, atol=0)
    # rays listed out of order (not one slice after another): the padded float32 scan, the same values to its
    # rounding (which subtracts each sample from an inclusive sum), each sample's at its own index (as nerfacc's
    # and the Triton kernels' outputs are)
    order = torch.randperm(2000, generator=g)
    torch.testing.assert_close(exclusive_sum(x, info[order]), exclusive, rtol=1e-4, atol=0)
    torch.testing.assert_close(exclusive_prod(x / 1000.0, info[order]), exclusive_prod(x / 1000.0, info))
    small = torch.tensor([[0, 2], [2, 0], [2, 3]])
    v = torch.rand(5, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: exclusive_sum(t, small), (v,))
    assert torch.autograd.gradcheck(lambda t: inclusive_sum(t, small), (v,))


@pytest.mark.parametrize("exclusive", [False, True])
def test_packed_products_pad_little_when_a_few_rays_are_much_longer(monkeypatch, exclusive):
    """One ray of 400 samples among 300 of 0-6 (as when rendering whole images): the products, and their gradients
    (zeros included), equal each ray's own cumprod, and the padded blocks hold under 2x the samples (one block
    would hold 301 x 400 = 60x them)."""
    from nerfkit.render import scan

    g = torch.Generator().manual_seed(7)
    counts = torch.cat([torch.randint(0, 7, (150,), generator=g), torch.tensor([400]),
                        torch.randint(0, 7, (150,), generator=g)])
    n = int(counts.sum())
    x = (0.5 + torch.rand(n, generator=g, dtype=torch.float64)).requires_grad_()
    with torch.no_grad():
        x[::37] = 0.0  # zeros, whose gradients a division-based product would get wrong
    info = torch.stack([torch.cumsum(counts, 0) - counts, counts], -1)
    padded = []
    real = scan.packed_to_padded
    monkeypatch.setattr(scan, "packed_to_padded", lambda v, i, fill: padded.append(real(v, i, fill)[1].numel())
                        or real(v, i, fill))
    fn = exclusive_prod if exclusive else inclusive_prod
    out = fn(x, info)
    assert sum(padded) < 2 * n
    weights = torch.linspace(0.5, 1.5, n, dtype=torch.float64)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    for (start, count) in info.tolist():
        seg = x[start:start + count].detach().clone().requires_grad_()
        want = torch.cumprod(torch.cat([seg.new_ones(1), seg[:-1]])[:count] if exclusive else seg, 0)
        torch.testing.assert_close(out[start:start + count], want)
        if count:
            (want_grad,) = torch.autograd.grad((want * weights[start:start + count]).sum(), seg)
            torch.testing.assert_close(grad[start:start + count], want_grad)


def test_exclusive_prod_gradient_is_exact_with_zeros():
    x = torch.tensor([[2.0, 0.0, 3.0, 4.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: exclusive_prod(v), (x,))


def test_accumulate_along_rays_batched_and_packed():
    weights = torch.tensor([[0.5, 0.25], [0.1, 0.0]])
    values = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[3.0, 3.0], [9.0, 9.0]]])
    torch.testing.assert_close(accumulate_along_rays(weights, values), torch.tensor([[0.5, 0.5], [0.3, 0.3]]))
    torch.testing.assert_close(accumulate_along_rays(weights), torch.tensor([[0.75], [0.1]]))
    ray_indices = torch.tensor([0, 0, 2])
    out = accumulate_along_rays(torch.tensor([0.5, 0.25, 1.0]), torch.tensor([[2.0], [4.0], [1.0]]),
                                ray_indices, n_rays=4)
    torch.testing.assert_close(out, torch.tensor([[2.0], [0.0], [1.0], [0.0]]))


def test_rendering_composites_background_and_expected_depth():
    t0 = torch.tensor([[1.0, 2.0]])
    t1 = torch.tensor([[2.0, 3.0]])

    def rgb_sigma_fn(ts, te, ri):
        return torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]), torch.tensor([[math.log(2.0), 0.0]])

    colors, opac, depth, extras = rendering(t0, t1, rgb_sigma_fn=rgb_sigma_fn, render_bkgd=torch.ones(3))
    # First interval: alpha 0.5; second: alpha 0. Colour = 0.5 * red + 0.5 * white background.
    torch.testing.assert_close(colors, torch.tensor([[1.0, 0.5, 0.5]]))
    torch.testing.assert_close(opac, torch.tensor([[0.5]]))
    torch.testing.assert_close(depth, torch.tensor([[1.5]]))
    assert set(extras) >= {"weights", "alphas", "trans", "sigmas", "rgbs"}


def test_rendering_packed_matches_batched_and_handles_empty_input():
    g = torch.Generator().manual_seed(3)
    t0, t1, sigmas = random_intervals(3, 4, g)
    rgbs = torch.rand(3, 4, 3, generator=g)
    ri = torch.arange(3).repeat_interleave(4)
    batched = rendering(t0, t1, rgb_sigma_fn=lambda a, b, r: (rgbs, sigmas), render_bkgd=torch.zeros(3))
    packed = rendering(t0.reshape(-1), t1.reshape(-1), ri, 3,
                       rgb_sigma_fn=lambda a, b, r: (rgbs.reshape(-1, 3), sigmas.reshape(-1)),
                       render_bkgd=torch.zeros(3))
    for a, b in zip(batched[:3], packed[:3]):
        torch.testing.assert_close(a, b)
    empty = torch.zeros(0)
    colors, opac, depth, _ = rendering(empty, empty, torch.zeros(0, dtype=torch.long), 2,
                                       rgb_sigma_fn=lambda a, b, r: (torch.zeros(0, 3), torch.zeros(0)),
                                       render_bkgd=torch.ones(3))
    torch.testing.assert_close(colors, torch.ones(2, 3))
    torch.testing.assert_close(opac, torch.zeros(2, 1))


def test_rendering_rejects_wrong_field_output_shapes():
    t = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="sigmas of shape"):
        rendering(t, t, rgb_sigma_fn=lambda a, b, r: (torch.zeros(2, 3, 3), torch.zeros(2, 4)))
    with pytest.raises(ValueError, match="exactly one"):
        rendering(t, t)


def test_transmittance_from_density_accepts_prefix():
    t0, t1 = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 2.0]])
    trans, _ = render_transmittance_from_density(t0, t1, torch.ones(1, 2), prefix_trans=torch.full((1, 2), 0.5))
    torch.testing.assert_close(trans, torch.tensor([[0.5, 0.5 * math.exp(-1.0)]]))


def test_visibility_from_density_matches_alpha_form():
    g = torch.Generator().manual_seed(4)
    t0, t1, sigmas = random_intervals(8, 6, g)
    _, alphas = render_transmittance_from_density(t0, t1, sigmas)
    for eps, thre in ((1e-4, 0.0), (0.2, 0.0), (1e-4, 0.3)):
        torch.testing.assert_close(render_visibility_from_density(t0, t1, sigmas, early_stop_eps=eps, alpha_thre=thre),
                                   render_visibility_from_alpha(alphas, early_stop_eps=eps, alpha_thre=thre))
