import math

import pytest
import torch

from nerfkit.estimators import PropNetEstimator, get_proposal_requires_grad_fn
from nerfkit.estimators.prop_net import _interlevel_loss
from nerfkit.render import render_transmittance_from_density
from nerfkit.sampling import RayIntervals, RaySamples, importance_sampling, searchsorted


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------

def _brute_bracket(keys: list[float], v: float) -> tuple[int, int]:
    """Reference: indices (relative to the ray) of the keys bracketing v, clipped to the keys' range."""
    n = len(keys)
    if n <= 1 or v < keys[0]:
        return 0, 0
    j = max(i for i in range(n - 1) if keys[i] <= v)  # the last interval also takes values past the last key
    return j, j + 1


def _packed(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    counts = torch.tensor([len(r) for r in rows])
    starts = torch.cumsum(counts, 0) - counts
    return torch.cat(rows), torch.stack([starts, counts], -1)


def _gaussian_bump(mu: float, width: float, amp: float):
    """A proposal/field fn whose sigma is the exact mean density of amp*exp(-((t-mu)/width)^2) over each interval."""
    def antiderivative(t):
        return amp * width * math.sqrt(math.pi) / 2 * torch.erf((t - mu) / width)

    def sigma_fn(t_starts, t_ends):
        return (antiderivative(t_ends) - antiderivative(t_starts)) / (t_ends - t_starts).clamp_min(1e-9)

    return sigma_fn


# --------------------------------------------------------------------------------------------------------------
# searchsorted
# --------------------------------------------------------------------------------------------------------------

def test_searchsorted_batched_matches_brute_force_loop_including_ties_and_out_of_range():
    g = torch.Generator().manual_seed(0)
    keys = torch.sort(torch.randint(0, 20, (6, 9), generator=g).float() / 4, dim=-1).values  # with ties
    queries = torch.randint(-4, 28, (6, 15), generator=g).float() / 4  # some equal to keys, some outside
    ids_left, ids_right = searchsorted(RayIntervals(vals=keys), RaySamples(vals=queries))
    assert ids_left.shape == queries.shape and ids_left.dtype == torch.long
    for r in range(6):
        for j in range(15):
            assert (ids_left[r, j].item(), ids_right[r, j].item()) == _brute_bracket(keys[r].tolist(),
                                                                                     queries[r, j].item())
    # Bare tensors are batched input.
    left2, right2 = searchsorted(keys, queries)
    assert torch.equal(left2, ids_left) and torch.equal(right2, ids_right)


def _brute_packed_brackets(key_rows, query_rows, key_info) -> tuple[list[int], list[int]]:
    """Expected absolute ``(ids_left, ids_right)`` of packed queries in packed keys, by the per-ray loop."""
    left, right = [], []
    for r, (k_row, q_row) in enumerate(zip(key_rows, query_rows)):
        base = int(key_info[r, 0])
        for v in q_row.tolist():
            lo, hi = _brute_bracket(k_row.tolist(), v)
            left.append(base + lo)
            right.append(base + hi)
    return left, right


def test_searchsorted_packed_matches_brute_force_loop_with_absolute_indices():
    g = torch.Generator().manual_seed(1)
    key_counts, query_counts = [5, 1, 8, 3, 2], [4, 2, 0, 6, 3]
    key_rows = [torch.sort(torch.randint(0, 16, (k,), generator=g).float() / 2).values for k in key_counts]
    query_rows = [torch.randint(-2, 20, (q,), generator=g).float() / 2 for q in query_counts]
    key_vals, key_info = _packed(key_rows)
    query_vals, query_info = _packed(query_rows)
    ids_left, ids_right = searchsorted(RayIntervals(vals=key_vals, packed_info=key_info),
                                       RaySamples(vals=query_vals, packed_info=query_info))
    expected_left, expected_right = _brute_packed_brackets(key_rows, query_rows, key_info)
    assert ids_left.tolist() == expected_left and ids_right.tolist() == expected_right
    # Describing the packed query by ray_indices alone gives the same answer.
    ray_indices = torch.repeat_interleave(torch.arange(5), torch.tensor(query_counts))
    left2, right2 = searchsorted(RayIntervals(vals=key_vals, packed_info=key_info),
                                 RaySamples(vals=query_vals, ray_indices=ray_indices))
    assert torch.equal(left2, ids_left) and torch.equal(right2, ids_right)


@pytest.mark.parametrize("by_ray_indices", [False, True])
def test_searchsorted_packed_with_a_few_long_rays_matches_brute_force(by_ray_indices, monkeypatch):
    """Many short rays and two long ones (padded rows would hold ~60x the entries, so the values and keys are
    sorted together instead), with ties, values outside the keys, rays of 0 and 1 keys, and (by ray_indices) the
    values in shuffled order."""
    g = torch.Generator().manual_seed(4)
    key_counts = [0, 1] + torch.randint(0, 5, (120,), generator=g).tolist() + [300, 250]
    query_counts = torch.randint(0, 4, (len(key_counts),), generator=g).tolist()
    key_rows = [torch.sort(torch.randint(0, 16, (k,), generator=g).float() / 2).values for k in key_counts]
    query_rows = [torch.randint(-2, 20, (q,), generator=g).float() / 2 for q in query_counts]
    key_vals, key_info = _packed(key_rows)
    query_vals, query_info = _packed(query_rows)
    assert len(key_counts) * 300 > 20 * (len(key_vals) + len(query_vals))
    from nerfkit.sampling import pdf

    flat_results = []
    real = pdf._searchsorted_flat
    monkeypatch.setattr(pdf, "_searchsorted_flat", lambda *a: flat_results.append(real(*a)) or flat_results[-1])
    expected_left, expected_right = _brute_packed_brackets(key_rows, query_rows, key_info)
    keys = RayIntervals(vals=key_vals, packed_info=key_info)
    if by_ray_indices:
        ray_of = torch.repeat_interleave(torch.arange(len(query_counts)), torch.tensor(query_counts))
        shuffle = torch.randperm(len(query_vals), generator=g)
        left, right = searchsorted(keys, RaySamples(vals=query_vals[shuffle], ray_indices=ray_of[shuffle]))
        assert left.tolist() == torch.tensor(expected_left)[shuffle].tolist()
        assert right.tolist() == torch.tensor(expected_right)[shuffle].tolist()
    else:
        left, right = searchsorted(keys, RaySamples(vals=query_vals, packed_info=query_info))
        assert left.tolist() == expected_left and right.tolist() == expected_right
    assert len(flat_results) == 1 and flat_results[0] is not None  # the path without padding answered


def test_searchsorted_packed_query_into_batched_key_indexes_the_flattened_keys():
    keys = torch.tensor([[0.0, 1.0, 2.0], [10.0, 20.0, 30.0]])
    query = RaySamples(vals=torch.tensor([1.5, -1.0, 25.0, 30.0]), packed_info=torch.tensor([[0, 2], [2, 2]]))
    ids_left, ids_right = searchsorted(RayIntervals(vals=keys), query)
    assert ids_left.tolist() == [1, 0, 4, 4] and ids_right.tolist() == [2, 0, 5, 5]
    # nerfacc's documented example (packed key, packed query).
    left, right = searchsorted(
        RayIntervals(vals=torch.tensor([0.0, 1.0, 0.0, 1.0, 2.0]), packed_info=torch.tensor([[0, 2], [2, 3]])),
        RayIntervals(vals=torch.tensor([0.5, 1.5, 2.5]), packed_info=torch.tensor([[0, 1], [1, 2]])))
    assert left.tolist() == [0, 3, 3] and right.tolist() == [1, 4, 4]


# --------------------------------------------------------------------------------------------------------------
# importance_sampling
# --------------------------------------------------------------------------------------------------------------

def _random_intervals_and_cdfs(n_rays, n_edges, seed):
    g = torch.Generator().manual_seed(seed)
    edges = torch.sort(torch.rand(n_rays, n_edges, generator=g) * 5 + 1, dim=-1).values
    cdfs = torch.sort(torch.rand(n_rays, n_edges, generator=g), dim=-1).values
    return RayIntervals(vals=edges), cdfs


@pytest.mark.parametrize("stratified", [False, True])
def test_importance_sampling_gives_n_plus_one_sorted_edges_inside_the_input_range(stratified):
    intervals, cdfs = _random_intervals_and_cdfs(32, 12, seed=2)
    out, samples = importance_sampling(intervals, cdfs, 7, stratified=stratified)
    assert out.vals.shape == (32, 8) and samples.vals.shape == (32, 7)
    assert torch.all(out.vals[:, 1:] >= out.vals[:, :-1])
    assert torch.all(out.vals[:, :1] >= intervals.vals[:, :1]) and torch.all(out.vals[:, -1:] <= intervals.vals[:, -1:])
    # Every sample lies inside its own new interval.
    assert torch.all(samples.vals >= out.vals[:, :-1]) and torch.all(samples.vals <= out.vals[:, 1:])
    assert torch.isfinite(out.vals).all() and out.vals.grad_fn is None


def test_importance_sampling_matches_a_float64_brute_force_inverse_cdf_on_random_inputs():
    """Per ray, a plain loop: the CDF levels of the strata centres, the bin each falls in, linear interpolation
    inside it; edges at the midpoints between samples, the outer ones half a spacing out, clipped to the ray."""
    g = torch.Generator().manual_seed(11)
    edges = torch.sort(torch.rand(24, 9, generator=g, dtype=torch.float64) * 5 + 1, dim=-1).values
    cdfs = torch.sort(torch.rand(24, 9, generator=g, dtype=torch.float64), dim=-1).values
    n = 6
    out, samples = importance_sampling(RayIntervals(vals=edges), cdfs, n)
    assert samples.vals.dtype == torch.float64
    for r in range(24):
        e, c = edges[r].tolist(), cdfs[r].tolist()
        want = []
        for i in range(n):
            u = c[0] + (i + 0.5) / n * (c[-1] - c[0])
            j = next(j for j in range(len(c) - 1) if c[j] <= u <= c[j + 1] and c[j + 1] > c[j])
            want.append(e[j] + (u - c[j]) / (c[j + 1] - c[j]) * (e[j + 1] - e[j]))
        want_edges = ([max(e[0], want[0] - (want[1] - want[0]) / 2)]
                      + [(a + b) / 2 for a, b in zip(want[:-1], want[1:])]
                      + [min(e[-1], want[-1] + (want[-1] - want[-2]) / 2)])
        torch.testing.assert_close(samples.vals[r], torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-12)
        torch.testing.assert_close(out.vals[r], torch.tensor(want_edges, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("stratified", [False, True])
def test_importance_sampling_of_one_interval_per_ray_matches_the_general_search(stratified):
    """A single interval per ray (a proposal sampler's first level) skips the search: the same samples and edges as
    the same rays given packed, which search."""
    g = torch.Generator().manual_seed(12)
    edges = torch.sort(torch.rand(32, 2, generator=g) * 4 + 1, dim=-1).values
    cdfs = torch.sort(torch.rand(32, 2, generator=g), dim=-1).values
    cdfs[5] = 0.3  # a flat CDF: samples at the interval's middle
    packed = RayIntervals(vals=edges.reshape(-1), packed_info=torch.stack([torch.arange(32) * 2,
                                                                          torch.full((32,), 2)], -1))
    fast = importance_sampling(RayIntervals(vals=edges), cdfs, 7, stratified,
                               generator=torch.Generator().manual_seed(3))
    searched = importance_sampling(packed, cdfs.reshape(-1), 7, stratified, generator=torch.Generator().manual_seed(3))
    for a, b in zip(fast, searched):
        torch.testing.assert_close(a.vals, b.vals, rtol=0, atol=1e-6)
    torch.testing.assert_close(fast[1].vals[5], torch.full((7,), float(edges[5].mean())))


def test_importance_sampling_reproduces_nerfaccs_documented_example():
    intervals = RayIntervals(vals=torch.tensor([0.0, 1.0, 0.0, 1.0, 2.0]), packed_info=torch.tensor([[0, 2], [2, 3]]))
    out, samples = importance_sampling(intervals, torch.tensor([0.0, 0.5, 0.0, 0.5, 1.0]), 2)
    torch.testing.assert_close(out.vals, torch.tensor([[0.0, 0.5, 1.0], [0.0, 1.0, 2.0]]))
    torch.testing.assert_close(samples.vals, torch.tensor([[0.25, 0.75], [0.5, 1.5]]))


def test_importance_sampling_puts_every_sample_in_the_bin_holding_all_the_mass():
    edges = torch.linspace(0.0, 1.0, 11).expand(4, -1)
    cdfs = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]).expand(4, -1)  # bin [0.3, 0.4]
    for stratified in (False, True):
        _, samples = importance_sampling(RayIntervals(vals=edges), cdfs, 16, stratified=stratified)
        assert torch.all(samples.vals >= 0.3 - 1e-6) and torch.all(samples.vals <= 0.4 + 1e-6)


def test_importance_sampling_is_deterministic_without_stratification_and_random_with_it():
    intervals, cdfs = _random_intervals_and_cdfs(16, 10, seed=3)
    a, sa = importance_sampling(intervals, cdfs, 9)
    b, sb = importance_sampling(intervals, cdfs, 9)
    assert torch.equal(a.vals, b.vals) and torch.equal(sa.vals, sb.vals)
    c, _ = importance_sampling(intervals, cdfs, 9, stratified=True, generator=torch.Generator().manual_seed(0))
    d, _ = importance_sampling(intervals, cdfs, 9, stratified=True, generator=torch.Generator().manual_seed(1))
    e, _ = importance_sampling(intervals, cdfs, 9, stratified=True, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(c.vals, d.vals) and torch.equal(c.vals, e.vals)


def test_stratified_importance_samples_follow_the_pdf():
    n_rays, n = 4000, 8
    edges = torch.linspace(2.0, 4.0, 6).expand(n_rays, -1)
    pdf = torch.tensor([0.1, 0.3, 0.0, 0.4, 0.2])
    cdfs = torch.cat([torch.zeros(1), torch.cumsum(pdf, 0)]).expand(n_rays, -1)
    _, samples = importance_sampling(RayIntervals(vals=edges), cdfs, n, stratified=True,
                                     generator=torch.Generator().manual_seed(0))
    bins = torch.bucketize(samples.vals.reshape(-1), edges[0, 1:-1].contiguous(), right=True)
    freq = torch.bincount(bins, minlength=5).float() / bins.numel()
    torch.testing.assert_close(freq, pdf, atol=0.01, rtol=0.0)
    # Also uniform inside a bin: half of bin 3's samples fall in its lower half.
    in_bin3 = samples.vals[(samples.vals >= 3.2) & (samples.vals < 3.6)]
    assert (in_bin3 < 3.4).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_packed_importance_sampling_equals_batched_for_equal_counts():
    intervals, cdfs = _random_intervals_and_cdfs(5, 7, seed=4)
    batched, b_samples = importance_sampling(intervals, cdfs, 4)
    packed_in = RayIntervals(vals=intervals.vals.reshape(-1),
                             packed_info=torch.stack([torch.arange(5) * 7, torch.full((5,), 7)], -1))
    packed, p_samples = importance_sampling(packed_in, cdfs.reshape(-1), torch.full((5,), 4))
    torch.testing.assert_close(packed.vals, batched.vals.reshape(-1))
    torch.testing.assert_close(p_samples.vals, b_samples.vals.reshape(-1))
    assert packed.packed_info.tolist() == [[5 * r, 5] for r in range(5)]
    assert packed.ray_indices.tolist() == [r for r in range(5) for _ in range(5)]
    assert packed.is_left.tolist() == ([True] * 4 + [False]) * 5
    assert packed.is_right.tolist() == ([False] + [True] * 4) * 5
    assert p_samples.packed_info.tolist() == [[4 * r, 4] for r in range(5)]
    # t_starts / t_ends taken through the masks line up with the batched intervals.
    torch.testing.assert_close(packed.vals[packed.is_left], batched.vals[:, :-1].reshape(-1))
    torch.testing.assert_close(packed.vals[packed.is_right], batched.vals[:, 1:].reshape(-1))


def test_packed_importance_sampling_with_varying_counts_matches_each_ray_alone():
    g = torch.Generator().manual_seed(5)
    edge_counts, new_counts = [4, 9, 2, 6], [3, 0, 1, 5]
    edge_rows = [torch.sort(torch.rand(k, generator=g) * 3, dim=-1).values for k in edge_counts]
    cdf_rows = [torch.sort(torch.rand(k, generator=g), dim=-1).values for k in edge_counts]
    vals, info = _packed(edge_rows)
    out, samples = importance_sampling(RayIntervals(vals=vals, packed_info=info), torch.cat(cdf_rows),
                                       torch.tensor(new_counts))
    assert out.packed_info[:, 1].tolist() == [4, 0, 2, 6] and samples.packed_info[:, 1].tolist() == new_counts
    for r, n in enumerate(new_counts):
        if n == 0:
            continue
        alone, alone_s = importance_sampling(RayIntervals(vals=edge_rows[r][None]), cdf_rows[r][None], n)
        start, count = out.packed_info[r].tolist()
        torch.testing.assert_close(out.vals[start:start + count], alone.vals[0])
        s_start, s_count = samples.packed_info[r].tolist()
        torch.testing.assert_close(samples.vals[s_start:s_start + s_count], alone_s.vals[0])
    # A single new interval spans the whole ray.
    start = out.packed_info[2, 0].item()
    torch.testing.assert_close(out.vals[start:start + 2], edge_rows[2])


@pytest.mark.parametrize("per_ray_counts", [False, True, "long"])
def test_packed_importance_sampling_with_a_few_long_rays_matches_each_ray_alone(per_ray_counts, monkeypatch):
    """Many short rays and two long ones (one padded block would hold ~40x the edges, so rays go in groups of
    similar length): each ray's samples and edges are those of the ray alone, with 4 new intervals per ray,
    0-4 ("True"), or as many as each ray has edges ("long": the outputs are as uneven as the inputs)."""
    from nerfkit.sampling import pdf

    g = torch.Generator().manual_seed(6)
    edge_counts = torch.randint(2, 6, (80,), generator=g).tolist() + [400, 300]
    new_counts = (edge_counts if per_ray_counts == "long" else torch.randint(0, 5, (82,), generator=g).tolist()
                  if per_ray_counts else [4] * 82)
    edge_rows = [torch.sort(torch.rand(k, generator=g) * 3, dim=-1).values for k in edge_counts]
    cdf_rows = [torch.sort(torch.rand(k, generator=g), dim=-1).values for k in edge_counts]
    vals, info = _packed(edge_rows)
    groups = []
    real = pdf._length_groups
    monkeypatch.setattr(pdf, "_length_groups", lambda *a: groups.append(real(*a)) or groups[-1])
    out, samples = importance_sampling(RayIntervals(vals=vals, packed_info=info), torch.cat(cdf_rows),
                                       torch.tensor(new_counts) if per_ray_counts else 4)
    assert groups[0] is not None and len(groups[0]) >= 3  # grouped by length
    for r, n in enumerate(new_counts):
        if n == 0:
            continue
        alone, alone_s = importance_sampling(RayIntervals(vals=edge_rows[r][None]), cdf_rows[r][None], n)
        if per_ray_counts:
            start, count = out.packed_info[r].tolist()
            s_start, s_count = samples.packed_info[r].tolist()
            got_edges, got_samples = out.vals[start:start + count], samples.vals[s_start:s_start + s_count]
        else:
            got_edges, got_samples = out.vals[r], samples.vals[r]
        torch.testing.assert_close(got_edges, alone.vals[0])
        torch.testing.assert_close(got_samples, alone_s.vals[0])


def test_importance_sampling_with_flat_or_zero_cdf_stays_finite():
    edges = torch.tensor([[0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0]])
    cdfs = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.7, 0.7, 0.7, 0.7]])
    for stratified in (False, True):
        out, samples = importance_sampling(RayIntervals(vals=edges), cdfs, 5, stratified=stratified)
        assert torch.isfinite(out.vals).all() and torch.isfinite(samples.vals).all()
        assert torch.all(out.vals >= 0.0) and torch.all(out.vals <= 3.0)
        assert torch.all(out.vals[:, 1:] >= out.vals[:, :-1])


# --------------------------------------------------------------------------------------------------------------
# PropNetEstimator
# --------------------------------------------------------------------------------------------------------------

def test_prop_net_sampling_concentrates_final_samples_at_the_density_bump():
    est = PropNetEstimator()
    bump = _gaussian_bump(3.0, 0.15, 40.0)
    t_starts, t_ends = est.sampling([bump, bump], [64, 32], 32, n_rays=10, near_plane=1.0, far_plane=6.0,
                                    stratified=True, generator=torch.Generator().manual_seed(0))
    assert t_starts.shape == (10, 32) and t_ends.shape == (10, 32)
    mids = (t_starts + t_ends) / 2
    assert ((mids - 3.0).abs() < 0.5).float().mean().item() > 0.8
    assert not est.prop_cache  # requires_grad=False caches nothing


@pytest.mark.parametrize("sampling_type", ["uniform", "lindisp"])
def test_prop_net_sampling_stays_within_near_and_far(sampling_type):
    est = PropNetEstimator()
    g = torch.Generator().manual_seed(0)

    def noisy(t_starts, t_ends):
        return torch.rand(t_starts.shape, generator=g) * 2.0

    t_starts, t_ends = est.sampling([noisy, noisy], [32, 16], 24, n_rays=20, near_plane=0.5, far_plane=8.0,
                                    sampling_type=sampling_type, stratified=True)
    assert t_starts.min().item() >= 0.5 and t_ends.max().item() <= 8.0
    assert torch.all(t_ends >= t_starts)
    assert torch.equal(t_starts[:, 1:], t_ends[:, :-1])  # consecutive intervals


def test_prop_net_without_proposals_gives_the_even_uniform_or_lindisp_grid():
    est = PropNetEstimator()
    t_starts, t_ends = est.sampling([], [], 4, n_rays=2, near_plane=1.0, far_plane=5.0, sampling_type="uniform")
    torch.testing.assert_close(t_starts[0], torch.tensor([1.0, 2.0, 3.0, 4.0]))
    torch.testing.assert_close(t_ends[1], torch.tensor([2.0, 3.0, 4.0, 5.0]))
    t_starts, t_ends = est.sampling([], [], 4, n_rays=2, near_plane=1.0, far_plane=5.0, sampling_type="lindisp")
    disparity = 1.0 / torch.cat([t_starts[0], t_ends[0, -1:]])
    torch.testing.assert_close(disparity, torch.linspace(1.0, 0.2, 5))
    with pytest.raises(ValueError):
        est.sampling([], [], 4, n_rays=2, near_plane=1.0, far_plane=5.0, sampling_type="log")


def test_prop_net_requires_grad_caches_levels_and_loss_reaches_proposal_parameters():
    torch.manual_seed(0)
    prop_net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Softplus(), torch.nn.Linear(8, 1),
                                   torch.nn.Softplus())

    def prop_fn(t_starts, t_ends):
        return prop_net(((t_starts + t_ends) / 2)[..., None])[..., 0]

    est = PropNetEstimator()
    t_starts, t_ends = est.sampling([prop_fn, prop_fn], [16, 8], 8, n_rays=6, near_plane=1.0, far_plane=4.0,
                                    stratified=True, requires_grad=True)
    assert len(est.prop_cache) == 3  # two proposal levels + the final intervals
    assert est.prop_cache[0][1].requires_grad and est.prop_cache[-1][1] is None
    assert not t_starts.requires_grad
    trans, _ = render_transmittance_from_density(t_starts, t_ends, _gaussian_bump(2.5, 0.1, 50.0)(t_starts, t_ends))
    loss = est.compute_loss(trans, loss_scaler=2.0)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    grads = [p.grad for p in prop_net.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum().item() for g in grads) > 0
    assert not est.prop_cache  # consumed


def test_interlevel_loss_is_zero_when_the_proposal_matches_and_positive_when_it_does_not():
    est = PropNetEstimator()
    proposal = _gaussian_bump(3.0, 0.2, 10.0)
    losses = {}
    for name, final in [("same", proposal), ("sharper_shifted", _gaussian_bump(3.2, 0.05, 60.0)),
                        ("flat", lambda a, b: torch.full_like(a, 0.3))]:
        t_starts, t_ends = est.sampling([proposal], [64], 32, n_rays=8, near_plane=1.0, far_plane=6.0,
                                        stratified=True, requires_grad=True)
        trans, _ = render_transmittance_from_density(t_starts, t_ends, final(t_starts, t_ends))
        losses[name] = est.compute_loss(trans).item()
    assert losses["same"] < 1e-6
    assert losses["sharper_shifted"] > 1e-3 and losses["flat"] > 1e-3


def test_interlevel_loss_packed_equals_batched():
    intervals, cdfs = _random_intervals_and_cdfs(4, 9, seed=6)
    prop, _ = importance_sampling(intervals, cdfs, 6)
    prop_cdfs = torch.sort(torch.rand(4, 7, generator=torch.Generator().manual_seed(7)), dim=-1).values
    final_b, _ = importance_sampling(intervals, cdfs, 5)
    final_p, _ = importance_sampling(RayIntervals(vals=intervals.vals.reshape(-1),
                                                  packed_info=torch.stack([torch.arange(4) * 9,
                                                                           torch.full((4,), 9)], -1)),
                                     cdfs.reshape(-1), torch.full((4,), 5))
    final_cdfs = torch.sort(torch.rand(4, 6, generator=torch.Generator().manual_seed(8)), dim=-1).values
    loss_b = _interlevel_loss(final_b, final_cdfs, prop, prop_cdfs)
    loss_p = _interlevel_loss(final_p, final_cdfs.reshape(-1), prop, prop_cdfs)
    assert loss_b.shape == (4, 5) and loss_b.sum() > 0
    torch.testing.assert_close(loss_p, loss_b.reshape(-1))


def test_compute_loss_with_an_empty_cache_is_zero():
    est = PropNetEstimator()
    loss = est.compute_loss(torch.rand(3, 4))
    assert isinstance(loss, torch.Tensor) and loss.item() == 0.0


def test_update_every_n_steps_steps_the_optimizer_only_when_asked():
    torch.manual_seed(0)
    density = torch.nn.Parameter(torch.tensor(0.1))

    def prop_fn(t_starts, t_ends):
        return density.abs().expand_as(t_starts) * torch.ones_like(t_starts)

    opt = torch.optim.SGD([density], lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    est = PropNetEstimator(opt, sched)
    t_starts, t_ends = est.sampling([prop_fn], [16], 8, n_rays=4, near_plane=1.0, far_plane=4.0,
                                    requires_grad=True)
    trans, _ = render_transmittance_from_density(t_starts, t_ends, _gaussian_bump(2.0, 0.1, 50.0)(t_starts, t_ends))
    before = density.item()
    loss = est.update_every_n_steps(trans, requires_grad=True)
    assert isinstance(loss, float) and loss > 0 and density.item() != before and not est.prop_cache
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    before = density.item()
    assert est.update_every_n_steps(trans, requires_grad=False) == 0.0
    assert density.item() == before and opt.param_groups[0]["lr"] == pytest.approx(0.25)
    with pytest.raises(RuntimeError):
        PropNetEstimator().update_every_n_steps(trans, requires_grad=True)


# --------------------------------------------------------------------------------------------------------------
# get_proposal_requires_grad_fn
# --------------------------------------------------------------------------------------------------------------

def test_proposal_requires_grad_schedule_updates_every_step_early_then_every_target_plus_one():
    fn = get_proposal_requires_grad_fn(target=5.0, num_steps=1000)
    flags = [fn(step) for step in range(3000)]
    assert flags[0] is False  # nothing has happened since the (non-existent) last update
    assert all(flags[1:200])  # the allowed gap is still below one step
    assert not all(flags[200:400])  # the gap has grown past one step
    updates = [s for s in range(2000, 3000) if flags[s]]
    gaps = {b - a for a, b in zip(updates, updates[1:])}
    assert gaps == {6}  # more than `target` = 5 steps must pass between updates
    # Halfway through the warm-up the gap is about target / 2.
    mid = [s for s in range(480, 520) if flags[s]]
    assert {b - a for a, b in zip(mid, mid[1:])} <= {3, 4}
