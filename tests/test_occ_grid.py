import math

import pytest
import torch

from nerfkit.estimators import OccGridEstimator
from nerfkit.sampling import traverse_grids
from nerfkit.sampling.grid import march_steps


def brute_force_occupied(x, binaries, aabbs):
    """Occupancy of one point: the lowest level whose box holds it decides (plain Python, float64)."""
    for lvl in range(binaries.shape[0]):
        lo, hi = aabbs[lvl, :3].tolist(), aabbs[lvl, 3:].tolist()
        res = binaries.shape[1:]
        idx = [math.floor((x[a] - lo[a]) / (hi[a] - lo[a]) * res[a]) for a in range(3)]
        if all(0 <= idx[a] < res[a] for a in range(3)):
            return bool(binaries[lvl, idx[0], idx[1], idx[2]])
    return False


def brute_force_march(o, d, binaries, aabbs, near, far, step, cone):
    """nerfacc's marching rule written as a loop over steps [t, t + max(cone * t, step)] from the near plane,
    kept where the midpoint is in an occupied cell, inside the union of the boxes and [near, far)."""
    t_lo, t_hi = math.inf, -math.inf
    for lvl in range(aabbs.shape[0]):
        ts = []
        for a in range(3):
            lo, hi = aabbs[lvl, a].item(), aabbs[lvl, 3 + a].item()
            if d[a] == 0:
                if not lo <= o[a] <= hi:
                    ts = None
                    break
                continue
            ta, tb = (lo - o[a]) / d[a], (hi - o[a]) / d[a]
            ts.append((min(ta, tb), max(ta, tb)))
        if ts is None or not ts:
            continue
        enter, leave = max(a for a, _ in ts), min(b for _, b in ts)
        if leave > enter:
            t_lo, t_hi = min(t_lo, enter), max(t_hi, leave)
    start, end = max(t_lo, near), min(t_hi, far)
    out = []
    t = near  # steps start at the near plane; a step belongs where its midpoint is
    while True:
        dt = max(cone * t, step)
        mid = t + dt / 2
        if mid >= end:
            break
        if mid >= start and brute_force_occupied([o[a] + d[a] * mid for a in range(3)], binaries, aabbs):
            out.append((t, t + dt))
        t += dt
    return out


def random_rays(n, generator, dtype=torch.float64):
    origins = (torch.rand(n, 3, generator=generator, dtype=dtype) - 0.5) * 6
    dirs = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator, dtype=dtype), dim=-1)
    return origins, dirs


@pytest.mark.parametrize("cone", [0.0, 0.02])
@pytest.mark.parametrize("levels", [1, 2])
def test_traverse_grids_matches_a_brute_force_march(cone, levels):
    g = torch.Generator().manual_seed(levels + int(cone * 100))
    res = 6
    binaries = torch.rand(levels, res, res, res, generator=g) > 0.6
    half = 2.0 ** torch.arange(levels, dtype=torch.float64)[:, None]
    aabbs = torch.cat([-half.expand(-1, 3), half.expand(-1, 3)], dim=-1) + 0.1
    rays_o, rays_d = random_rays(24, g)
    near = torch.rand(24, generator=g, dtype=torch.float64) * 0.5
    far = near + 2 + torch.rand(24, generator=g, dtype=torch.float64) * 6
    step = 0.07
    intervals, samples, _ = traverse_grids(rays_o, rays_d, binaries, aabbs, near, far, step, cone)
    t0 = intervals.vals[intervals.is_left]
    t1 = intervals.vals[intervals.is_right]
    torch.testing.assert_close(samples.vals, (t0 + t1) / 2)
    assert samples.ray_indices.dtype == torch.int64
    total = 0
    for r in range(24):
        expected = brute_force_march(rays_o[r].tolist(), rays_d[r].tolist(), binaries, aabbs, near[r].item(),
                                     far[r].item(), step, cone)
        mine = samples.ray_indices == r
        start, count = samples.packed_info[r].tolist()
        assert count == len(expected), f"ray {r}"
        assert mine.nonzero()[:, 0].tolist() == list(range(start, start + count))
        if expected:
            torch.testing.assert_close(t0[mine], torch.tensor([a for a, _ in expected], dtype=torch.float64))
            torch.testing.assert_close(t1[mine], torch.tensor([b for _, b in expected], dtype=torch.float64))
        total += count
    assert total > 20  # the random grids do keep samples


def test_march_steps_switches_from_constant_to_growing_steps():
    ray, t0, t1 = march_steps(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([3.0]), step_size=0.1,
                              cone_angle=0.05)
    widths = t1 - t0
    # constant 0.1 until t = step / cone = 2, then 5% of t
    torch.testing.assert_close(widths[t0 < 1.95], torch.full_like(widths[t0 < 1.95], 0.1))
    grown = t0 >= 1.99
    torch.testing.assert_close(widths[grown], t0[grown] * 0.05)
    assert t0[0].item() == 0.0 and ((t0 + t1) / 2)[-1].item() < 3.0 <= t1[-1].item() + widths[-1].item() / 2
    torch.testing.assert_close(t0[1:], t1[:-1])


def test_march_steps_skip_to_the_segment_in_closed_form():
    # The anchor is far before the segment: the steps inside match those of a march from the anchor.
    anchor, start, end = torch.tensor([0.0]), torch.tensor([40.0]), torch.tensor([41.0])
    _, t0, t1 = march_steps(anchor, start, end, step_size=0.3, cone_angle=0.01)
    _, f0, f1 = march_steps(anchor, anchor, end, step_size=0.3, cone_angle=0.01)
    inside = (f0 + f1) / 2 >= 40.0
    torch.testing.assert_close(t0, f0[inside])
    torch.testing.assert_close(t1, f1[inside])


@pytest.mark.parametrize("cone", [0.0, 0.02])
def test_occupied_steps_are_the_samples_of_traverse_grids(cone):
    from nerfkit.sampling import occupied_steps

    g = torch.Generator().manual_seed(5)
    binaries = torch.rand(2, 12, 12, 12, generator=g) > 0.7
    aabbs = torch.tensor([[-1.0, -1, -1, 1, 1, 1], [-2.0, -2, -2, 2, 2, 2]])
    rays_o, rays_d = random_rays(300, g)
    near = torch.rand(300, generator=g, dtype=torch.float64)
    intervals, samples, _ = traverse_grids(rays_o, rays_d, binaries, aabbs, near, None, 0.02, cone)
    ray_indices, t_starts, t_ends, packed_info = occupied_steps(rays_o, rays_d, binaries, aabbs, near, None, 0.02,
                                                                cone)
    assert ray_indices.numel() > 100
    assert torch.equal(ray_indices, samples.ray_indices) and torch.equal(packed_info, samples.packed_info)
    assert torch.equal(t_starts, intervals.vals[intervals.is_left])
    assert torch.equal(t_ends, intervals.vals[intervals.is_right])
    with pytest.raises(ValueError, match="step_size"):
        occupied_steps(rays_o, rays_d, binaries, aabbs, step_size=0.0)


def test_traverse_grids_handles_empty_results():
    binaries = torch.ones(1, 4, 4, 4, dtype=torch.bool)
    aabbs = torch.tensor([[-1.0, -1, -1, 1, 1, 1]])
    # every ray misses the box
    rays_o = torch.tensor([[5.0, 5, 5], [0, 3, 0]])
    rays_d = torch.tensor([[0.0, 0, 1], [1, 0, 0]])
    intervals, samples, _ = traverse_grids(rays_o, rays_d, binaries, aabbs, step_size=0.1)
    assert samples.vals.shape == (0,) and intervals.vals.shape == (0,)
    assert samples.packed_info.tolist() == [[0, 0], [0, 0]]
    # every cell empty
    _, samples, _ = traverse_grids(torch.tensor([[0.0, 0, 3]]), torch.tensor([[0.0, 0, -1]]),
                                   torch.zeros(1, 4, 4, 4, dtype=torch.bool), aabbs, step_size=0.1)
    assert samples.vals.numel() == 0
    # far < near
    _, samples, _ = traverse_grids(torch.tensor([[0.0, 0, 3]]), torch.tensor([[0.0, 0, -1]]), binaries, aabbs,
                                   near_planes=torch.tensor([3.0]), far_planes=torch.tensor([2.5]), step_size=0.1)
    assert samples.vals.numel() == 0
    # no rays at all
    _, samples, term = traverse_grids(torch.zeros(0, 3), torch.zeros(0, 3), binaries, aabbs, step_size=0.1)
    assert samples.vals.shape == (0,) and samples.packed_info.shape == (0, 2) and term.shape == (0,)


def test_rays_starting_inside_the_box_start_at_the_near_plane():
    binaries = torch.ones(1, 4, 4, 4, dtype=torch.bool)
    aabbs = torch.tensor([[-1.0, -1, -1, 1, 1, 1]])
    _, samples, _ = traverse_grids(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0]]), binaries, aabbs,
                                   near_planes=torch.tensor([0.05]), step_size=0.1)
    assert samples.vals[0].item() == pytest.approx(0.1)  # first interval [0.05, 0.15]
    assert samples.vals[-1].item() == pytest.approx(0.9)  # the next midpoint, 1.0, is outside the box
    assert samples.packed_info[0, 1].item() == 9


def test_samples_never_pass_far_plane_or_lie_in_empty_cells():
    g = torch.Generator().manual_seed(3)
    binaries = torch.rand(1, 8, 8, 8, generator=g) > 0.5
    aabbs = torch.tensor([[-1.0, -1, -1, 1, 1, 1]])
    rays_o, rays_d = random_rays(200, g, dtype=torch.float32)
    far = torch.rand(200, generator=g) * 4
    intervals, samples, _ = traverse_grids(rays_o, rays_d, binaries, aabbs, far_planes=far, step_size=0.05)
    t1 = intervals.vals[intervals.is_right]
    assert (samples.vals < far[samples.ray_indices]).all()
    assert (t1 <= far[samples.ray_indices] + 0.025 + 1e-6).all()  # a step reaches at most half a step beyond
    mids = rays_o[samples.ray_indices] + rays_d[samples.ray_indices] * samples.vals[:, None]
    occupied = [brute_force_occupied(p, binaries, aabbs) for p in mids.tolist()]
    assert all(occupied) and len(occupied) > 0


def test_traverse_steps_limit_caps_samples_and_reports_where_marching_stopped():
    binaries = torch.ones(1, 4, 4, 4, dtype=torch.bool)
    aabbs = torch.tensor([[-1.0, -1, -1, 1, 1, 1]])
    rays_o = torch.tensor([[0.0, 0, 3], [0, 0, 3]])
    rays_d = torch.tensor([[0.0, 0, -1], [0, 0, -1]])
    mask = torch.tensor([True, False])
    intervals, samples, term = traverse_grids(rays_o, rays_d, binaries, aabbs, step_size=0.25,
                                              traverse_steps_limit=3, rays_mask=mask)
    assert samples.packed_info.tolist() == [[0, 3], [3, 0]]
    assert term[0].item() == pytest.approx(2.75)  # the end of the third step [2.5, 2.75]


def sphere_occupancy(x):
    return (x.norm(dim=-1) < 0.5).float()


def trained_estimator(levels=1):
    est = OccGridEstimator([-1.0, -1, -1, 1, 1, 1], resolution=16, levels=levels)
    est.train()
    for step in range(0, 64, 16):
        est.update_every_n_steps(step, sphere_occupancy, warmup_steps=32, n=16)
    return est


def test_occupancy_update_finds_the_occupied_region():
    est = trained_estimator()
    centres = OccGridEstimator([-1.0, -1, -1, 1, 1, 1], 16).grid_coords.float()
    centres = -1 + (centres + 0.5) / 16 * 2
    inside = centres.norm(dim=-1) < 0.5 - 0.11  # inside the sphere by more than a half-diagonal
    outside = centres.norm(dim=-1) > 0.5 + 0.11  # beyond the sphere by more than a cell's half-diagonal
    flat = est.binaries[0].reshape(-1)
    assert flat[inside].all() and not flat[outside].any()


def test_sampling_stays_in_the_occupied_region_and_early_stop_prunes():
    est = trained_estimator()
    rays_o = torch.tensor([[0.0, 0, 3], [0.9, 0.9, 3]])
    rays_d = torch.tensor([[0.0, 0, -1], [0, 0, -1]])
    ray_indices, t_starts, t_ends = est.sampling(rays_o, rays_d, render_step_size=0.02)
    assert (ray_indices == 0).all()  # the second ray passes beside the sphere
    assert t_starts.min() >= 2.5 - 0.13 and t_ends.max() <= 3.5 + 0.13
    n_all = ray_indices.numel()
    # An opaque field: only the first couple of samples survive early termination.
    ray_indices, t_starts, _ = est.sampling(rays_o, rays_d, render_step_size=0.02,
                                            sigma_fn=lambda t0, t1, r: torch.full_like(t0, 500.0))
    assert 1 <= ray_indices.numel() <= 3 < n_all
    # alpha threshold: a faint field is pruned entirely
    ray_indices, _, _ = est.sampling(rays_o, rays_d, render_step_size=0.02, alpha_thre=0.01,
                                     alpha_fn=lambda t0, t1, r: torch.full_like(t0, 1e-3))
    assert ray_indices.numel() == 0


def test_sampling_with_indices_says_which_of_the_queried_samples_it_kept():
    """The kept samples are the queried ones at ``kept``, and the same as :meth:`sampling`'s; no query, no
    index."""
    est = trained_estimator()
    rays_o = torch.tensor([[0.0, 0, 3], [0.2, 0.1, 3], [0.9, 0.9, 3]])
    rays_d = torch.tensor([[0.0, 0, -1], [0, 0, -1], [0, 0, -1]])
    seen = {}

    def sigma_fn(t0, t1, r):
        seen.update(t0=t0, t1=t1, r=r)
        return torch.where(t0 > 2.8, 300.0, 0.5)  # faint, then opaque: early stopping drops the rest

    r, t0, t1, kept = est.sampling_with_indices(rays_o, rays_d, sigma_fn=sigma_fn, render_step_size=0.02)
    assert kept.dtype == torch.int64 and 0 < kept.numel() < seen["t0"].numel()
    assert torch.equal(r, seen["r"][kept]) and torch.equal(t0, seen["t0"][kept])
    assert torch.equal(t1, seen["t1"][kept])
    same = est.sampling(rays_o, rays_d, sigma_fn=sigma_fn, render_step_size=0.02)
    assert all(torch.equal(a, b) for a, b in zip(same, (r, t0, t1)))
    *_, kept = est.sampling_with_indices(rays_o, rays_d, render_step_size=0.02)
    assert kept is None


def test_stratified_sampling_shifts_the_steps_by_less_than_a_step():
    est = OccGridEstimator([-1.0, -1, -1, 1, 1, 1], resolution=8)
    rays_o, rays_d = torch.tensor([[0.0, 0, 3]]), torch.tensor([[0.0, 0, -1]])
    _, t_fixed, _ = est.sampling(rays_o, rays_d, render_step_size=0.1)
    g = torch.Generator().manual_seed(0)
    _, t_strat, _ = est.sampling(rays_o, rays_d, render_step_size=0.1, stratified=True, generator=g)
    shift = (t_strat[0] - t_fixed[0]).item()
    assert 0 < abs(shift) < 0.1 and abs(t_strat.numel() - t_fixed.numel()) <= 1
    torch.testing.assert_close(t_strat[1:] - t_strat[:-1], torch.full((t_strat.numel() - 1,), 0.1))


def test_per_ray_t_min_t_max_bound_the_samples():
    est = OccGridEstimator([-1.0, -1, -1, 1, 1, 1], resolution=8)
    rays_o = torch.tensor([[0.0, 0, 3], [0.0, 0, 3]])
    rays_d = torch.tensor([[0.0, 0, -1], [0, 0, -1]])
    ray_indices, t_starts, t_ends = est.sampling(rays_o, rays_d, render_step_size=0.1,
                                                 t_min=torch.tensor([2.5, 3.0]), t_max=torch.tensor([3.0, 3.5]))
    assert t_starts[ray_indices == 0].min().item() == pytest.approx(2.5)
    assert t_ends[ray_indices == 0].max().item() == pytest.approx(3.0)
    assert t_starts[ray_indices == 1].min().item() == pytest.approx(3.0)


def test_multilevel_grid_marks_cells_outside_the_roi(tmp_path):
    def occ(x):
        return ((x - torch.tensor([1.5, 0, 0])).norm(dim=-1) < 0.3).float()  # outside level 0's box

    est = OccGridEstimator([-1.0, -1, -1, 1, 1, 1], resolution=16, levels=2)
    est.train()
    est.update_every_n_steps(0, occ, n=1)
    assert not est.binaries[0].any() and est.binaries[1].any()
    ray_indices, t_starts, t_ends = est.sampling(torch.tensor([[1.5, 0, 3]]), torch.tensor([[0.0, 0, -1]]),
                                                 render_step_size=0.05)
    mids = 3 - (t_starts + t_ends) / 2
    assert ray_indices.numel() > 0 and (mids.abs() < 0.3 + 0.25).all()


def test_estimator_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    est = trained_estimator(levels=2)
    torch.save({"est": est.state_dict()}, tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    fresh = OccGridEstimator([-1.0, -1, -1, 1, 1, 1], resolution=16, levels=2)
    fresh.load_state_dict(state["est"])
    assert torch.equal(fresh.binaries, est.binaries) and torch.equal(fresh.occs, est.occs)


def test_update_outside_training_mode_is_refused():
    est = OccGridEstimator([-1.0, -1, -1, 1, 1, 1], resolution=4)
    est.eval()
    with pytest.raises(RuntimeError, match="training"):
        est.update_every_n_steps(0, sphere_occupancy)


def test_invisible_cells_are_never_occupied():
    est = OccGridEstimator([-1.0, -1, -1, 1, 1, 1], resolution=8)
    # One OpenGL camera at z = 3 looking down -z with a narrow field of view: it sees only the centre column.
    c2w = torch.tensor([[[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3]]])
    K = torch.tensor([[100.0, 0, 10], [0, 100.0, 10], [0, 0, 1]])
    est.mark_invisible_cells(K, c2w, width=20, height=20, opengl=True)
    occs = est.occs.view(8, 8, 8)
    assert (occs[3:5, 3:5, :] >= 0).all()  # the column under the camera is seen
    assert (occs[0, 0, :] < 0).all()  # a far corner column is not
    est.train()
    invisible = est.occs < 0
    assert invisible.sum() > 100
    # through warm-up (every visible cell) and well beyond it (uniform draws over the whole grid plus occupied
    # cells): an invisible cell is never drawn, so it stays at -1 and unoccupied
    for step in range(0, 64):
        est.update_every_n_steps(step, lambda x: torch.ones(x.shape[0]), warmup_steps=4, n=1)
        assert not est.binaries.view(-1)[invisible].any(), step
    assert torch.equal(est.occs < 0, invisible) and (est.occs[invisible] == -1).all()
    assert est.binaries[0, 4, 4].all() and est.binaries.view(-1)[~invisible].all()


def test_invisible_cells_near_plane_and_per_camera_intrinsics():
    """Two OpenGL cameras on the z axis facing each other, each with its own K (n, 3, 3): camera A (z = 3) with a
    wide view, camera B (z = -3) narrow. A's near plane 2.5 puts the box's top slab (z > 0.5) before it: those
    cells are marked even where B sees them; with near plane 0 only what neither camera sees is marked."""
    wide = [[20.0, 0, 50], [0, 20.0, 50], [0, 0, 1]]  # 100 x 100 px, field of view ~136 deg
    narrow = [[400.0, 0, 50], [0, 400.0, 50], [0, 0, 1]]  # ~14 deg

    def marked(near, K=(wide, narrow)):
        est = OccGridEstimator([-1.0, -1, -1, 1, 1, 1], resolution=8)
        c2w = torch.tensor([[[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3]],  # A: looks down -z
                            [[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, -3]]])  # B: turned about x, looks up +z
        est.mark_invisible_cells(torch.tensor(K), c2w, width=100, height=100, near_plane=near, opengl=True)
        return (est.occs < 0).view(8, 8, 8)

    assert not marked(0.0).any()  # A sees the whole box
    # each camera has its own K: both narrow leaves the outer columns unseen, B wide sees all again
    assert marked(0.0, (narrow, narrow))[0, 0].all() and not marked(0.0, (narrow, narrow))[3:5, 3:5].any()
    assert not marked(0.0, (narrow, wide)).any()
    with_near = marked(2.5)
    centres = -1 + (OccGridEstimator([-1.0, -1, -1, 1, 1, 1], 8).grid_coords.float() + 0.5) / 8 * 2
    radius = (3 * (2 / 8) ** 2) ** 0.5 / 2
    # whole cell within A's near plane, a distance along its (unit-length) rays; all project inside A's image
    too_near = ((centres - torch.tensor([0.0, 0, 3])).norm(dim=-1) + radius < 2.5).view(8, 8, 8)
    assert 0 < int(too_near.sum()) < 100 and too_near[3:5, 3:5].any()  # incl. the central column B sees
    assert not too_near[0, 0].any()  # off-axis cells at the same depth lie farther than the near plane
    assert torch.equal(with_near, too_near)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="roi_aabb"):
        OccGridEstimator([1.0, 1, 1, -1, -1, -1])
    with pytest.raises(ValueError, match="resolution"):
        OccGridEstimator([-1.0, -1, -1, 1, 1, 1], resolution=0)
    est = OccGridEstimator([-1.0, -1, -1, 1, 1, 1], resolution=4)
    with pytest.raises(ValueError, match="sigma_fn"):
        est.sampling(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0]]), render_step_size=0.1,
                     sigma_fn=lambda t0, t1, r: t0[:1])
    with pytest.raises(ValueError, match="step_size"):
        traverse_grids(torch.zeros(1, 3), torch.ones(1, 3), est.binaries, est.aabbs, step_size=0.0)


@pytest.mark.parametrize("levels, compiled", [(1, False), (3, False), (3, True)])
def test_block_skipping_keeps_exactly_the_steps_of_the_full_march(levels, compiled, monkeypatch):
    """The block march (torch reference, and the fused loops of nerfkit.kernels.grid_compiled) keeps exactly the
    steps of the step-by-step march, with the same values."""
    from nerfkit.kernels import grid_compiled
    from nerfkit.sampling.grid import grid_occupancy_at

    calls = []
    for name in ("block_pass", "block_steps"):
        monkeypatch.setattr(grid_compiled, name, lambda *a, _f=getattr(grid_compiled, name), _n=name:
                            calls.append((_n, a[0].shape[0])) or _f(*a))

    g = torch.Generator().manual_seed(7 + levels)
    binaries = torch.rand(levels, 16, 16, 16, generator=g) > 0.97  # sparse: most blocks are skipped
    centre = torch.rand(levels, 3, generator=g) * 0.4 - 0.2  # overlapping, not nested, boxes
    half = (torch.rand(levels, 3, generator=g) + 0.5)
    aabbs = torch.cat([centre - half, centre + half], dim=-1)
    rays_o, rays_d = random_rays(500, g, dtype=torch.float32)
    rays_d = rays_d * (0.5 + torch.rand(500, 1, generator=g))  # non-unit directions too
    near = torch.rand(500, generator=g)
    intervals, samples, _ = traverse_grids(rays_o, rays_d, binaries, aabbs, near_planes=near, step_size=0.01,
                                           compiled=compiled)
    if compiled:
        if not grid_compiled.available():
            pytest.skip("torch.compile cannot build C++ here (it warned); the reference path is tested above")
        # both loops ran, on more blocks than the reference threshold
        assert [n for n, _ in calls] == ["block_pass", "block_steps"], calls
        assert min(size for _, size in calls) >= grid_compiled.MIN_BLOCKS
    else:
        assert calls == []
    # the full march, step by step
    t_mins, t_maxs, hits = nerfkit_ray_aabb(rays_o, rays_d, aabbs)
    t_start = torch.where(hits, t_mins, torch.full_like(t_mins, math.inf)).amin(-1).maximum(near)
    t_end = torch.where(hits, t_maxs, torch.full_like(t_maxs, -math.inf)).amax(-1)
    active = torch.isfinite(t_start) & torch.isfinite(t_end) & (t_end > t_start)
    r, t0, t1 = march_steps(near, torch.where(active, t_start, near), torch.where(active, t_end, near), 0.01)
    x = rays_o[r] + rays_d[r] * ((t0 + t1) / 2)[:, None]
    keep = grid_occupancy_at(x, binaries, aabbs)
    assert keep.sum() > 50 and keep.float().mean() < 0.2
    assert torch.equal(samples.ray_indices, r[keep])
    assert torch.equal(intervals.vals[intervals.is_left], t0[keep])
    assert torch.equal(intervals.vals[intervals.is_right], t1[keep])


def test_grid_occupancy_of_far_away_and_nan_points_is_false():
    """Cell indices are 32-bit: points far outside every box (beyond 2^31 cells) and NaN are unoccupied, not
    wrapped into some cell."""
    from nerfkit.sampling.grid import grid_occupancy_at

    binaries = torch.ones(2, 8, 8, 8, dtype=torch.bool)
    aabbs = torch.tensor([[-1.0, -1, -1, 1, 1, 1], [-2.0, -2, -2, 2, 2, 2]])
    x = torch.tensor([[0.5, 0.5, 0.5], [1.5, 0.0, 0.0], [3e9, 0.0, 0.0], [-3e9, 0.0, 0.0], [1e30, 1e30, 1e30],
                      [math.nan, 0.0, 0.0]])
    assert grid_occupancy_at(x, binaries, aabbs).tolist() == [True, True, False, False, False, False]
    rays_o = torch.tensor([[-5.0, 0.1, 0.1], [3e9, 0.0, 0.0]])
    rays_d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    _, samples, _ = traverse_grids(rays_o, rays_d, binaries, aabbs, step_size=0.1)
    assert samples.ray_indices.dtype == torch.int64 and samples.ray_indices.tolist() == [0] * 40


def test_compiled_march_falls_back_to_the_reference_with_one_warning(monkeypatch):
    import warnings

    from nerfkit.kernels import compiled, grid_compiled

    def broken(fn, **kwargs):
        def call(*args):
            raise torch._dynamo.exc.TorchDynamoException("no C++ compiler found")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(grid_compiled, "_PASS", compiled.CompiledLoop(grid_compiled._block_pass, "the compiled grid march"))
    g = torch.Generator().manual_seed(3)
    binaries = torch.rand(1, 16, 16, 16, generator=g) > 0.9
    aabbs = torch.tensor([[-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]])
    rays_o, rays_d = random_rays(2000, g, dtype=torch.float32)  # blocks enough for the compiled loops
    with pytest.warns(RuntimeWarning, match="compiled grid march is unavailable.*no C\\+\\+ compiler"):
        _, samples, _ = traverse_grids(rays_o, rays_d, binaries, aabbs, step_size=0.01, compiled=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        _, again, _ = traverse_grids(rays_o, rays_d, binaries, aabbs, step_size=0.01, compiled=True)
    _, reference, _ = traverse_grids(rays_o, rays_d, binaries, aabbs, step_size=0.01)
    assert samples.ray_indices.numel() > 0 and not grid_compiled.available()
    assert torch.equal(samples.ray_indices, reference.ray_indices) and torch.equal(samples.vals, reference.vals)
    assert torch.equal(again.vals, reference.vals)


def nerfkit_ray_aabb(rays_o, rays_d, aabbs):
    from nerfkit.sampling import ray_aabb_intersect

    return ray_aabb_intersect(rays_o, rays_d, aabbs)


@pytest.mark.parametrize("split", [False, True], ids=["forward", "density-then-colour"])
def test_rendering_in_rounds_matches_single_pass_rendering(split):
    """Rendering in rounds (inference) gives single-pass rendering's images; with a field that splits its forward
    pass, only the samples that stay visible are coloured."""
    from nerfkit.methods.occgrid import OccGridConfig, OccGridSampler

    coloured = []

    class Blob(torch.nn.Module):  # a soft ball with a colour that varies in space
        def query_density(self, x):
            return 30.0 * torch.sigmoid((0.5 - x.norm(dim=-1)) * 20)

        def forward(self, x, d):
            return torch.sigmoid(x * 3 + d), self.query_density(x)

    class SplitBlob(Blob):
        def density_and_features(self, x):
            return self.query_density(x), x * 3

        def color(self, features, d):
            coloured.append(features.shape[0])
            return torch.sigmoid(features + d)

    sampler = OccGridSampler(OccGridConfig(resolution=16, samples_per_round=4, early_stop_eps=1e-4),
                             torch.tensor([-1.0, -1, -1, 1, 1, 1]), near=0.5, far=6.0)
    sampler.train()
    sampler.update(0, Blob().query_density)
    sampler.eval()
    g = torch.Generator().manual_seed(0)
    rays_o = torch.tensor([0.0, 0, 3]) + torch.randn(64, 3, generator=g) * 0.3
    rays_d = torch.nn.functional.normalize(torch.tensor([0.0, 0, -1]) + torch.randn(64, 3, generator=g) * 0.2, dim=-1)
    bkgd = torch.ones(3)
    with torch.no_grad():
        rounds = sampler.render(SplitBlob() if split else Blob(), rays_o, rays_d, bkgd)
        n_coloured = sum(coloured)
        # A memory budget smaller than a round (and than the field's share of it): the same images.
        sampler.cfg.render_max_samples = 37
        for key, value in sampler.render(SplitBlob() if split else Blob(), rays_o, rays_d, bkgd).items():
            torch.testing.assert_close(value, rounds[key], atol=1e-6, rtol=0, msg=key)
        sampler.cfg.samples_per_round = 0
        single = sampler.render(Blob(), rays_o, rays_d, bkgd)
    torch.testing.assert_close(rounds["rgb"], single["rgb"], atol=2e-4, rtol=0)
    torch.testing.assert_close(rounds["opacity"], single["opacity"], atol=2e-4, rtol=0)
    assert rounds["opacity"].max() > 0.99 and rounds["opacity"].min() < 0.01  # hits and misses both present
    if split:  # the samples marched past the surfaces cost their density only
        assert 0 < n_coloured < int(rounds["n_samples"]) * 0.8, (n_coloured, int(rounds["n_samples"]))


def test_marching_budget_arithmetic_is_64_bit():
    """Ray groups are sized with int64 counts: totals beyond 2^31 candidate steps split correctly."""
    from nerfkit.sampling.grid import _chunk_bounds

    counts = torch.tensor([2 ** 30, 2 ** 30, 2 ** 30, 5, 2 ** 31 + 7], dtype=torch.long)
    assert _chunk_bounds(counts, 2 ** 31) == [(0, 2), (2, 4), (4, 5)]
    assert _chunk_bounds(counts[:2], 2 ** 32) == [(0, 2)]


def test_cell_coordinates_are_the_grid_rows():
    """The update computes each drawn cell's coordinates arithmetically: the same as the grid's own rows."""
    est = OccGridEstimator(torch.tensor([0.0, 0.0, 0.0, 1.0, 2.0, 3.0]), resolution=(5, 6, 7), levels=2)
    idx = torch.randint(est.cells_per_lvl, (300,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(est._cell_coords(idx), est.grid_coords[idx])


def test_update_keeps_the_largest_draw_of_a_cell_drawn_twice():
    """A cell drawn twice in one update keeps the larger of its two values, whichever is written last."""
    est = OccGridEstimator(torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]), resolution=4)
    est.train()
    cells = torch.tensor([5, 9, 5])
    values = iter([torch.tensor([0.7, 0.2, 0.3]), torch.tensor([0.1, 0.2, 0.9])])
    for expected in (0.7, 0.9):
        est._uniform_and_occupied_cells = lambda n, generator: [cells]
        est._update(1000, lambda x: next(values), ema_decay=1.0, warmup_steps=0)
        assert est.occs[5].item() == pytest.approx(expected) and est.occs[9].item() == pytest.approx(0.2)
